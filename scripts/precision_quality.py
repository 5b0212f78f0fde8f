"""Does bfloat16 train as well as float32? Trains the same runs (same seed, data and steps) with
--precision fp32 and bf16 through train.py, prints the per-epoch test bits/dim (BigGAN: losses)
side by side with their largest difference, and draws the learning curves to a PNG.

    python3 scripts/precision_quality.py --out docs/precision_quality.png

Runs are written under --work and kept: a run that was stopped is resumed where it stopped by
running the script again, and finished runs are only read. On 2 CPU cores the PixelCNN++ runs
take hours, Glow's and BigGAN's minutes.
"""
import argparse
import os
import subprocess
import sys

from PIL import Image, ImageDraw

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO_ROOT)

from trainer.logger import draw_curves, read_log  # noqa: E402

# a PixelCNN++ large enough for bf16 to matter, Glow's and BigGAN's small real32 profiles
RUNS = {
    "pixelcnn": ["-d", "real32", "--nr_resnet", "2", "--nr_filters", "64",
                 "--nr_logistic_mix", "10", "-x", "3", "-t", "3"],
    "glow": ["--model", "glow", "-d", "real32"],
    "biggan": ["--model", "biggan", "-d", "real32"],
}
PRECISIONS = ("fp32", "bf16")


def train(family, policy, work, data_dir):
    """The epoch records of the run, after training it (or resuming it where it stopped)."""
    save_dir = os.path.join(work, f"{family}_{policy}")
    log = os.path.join(save_dir, "log.jsonl")
    command = [sys.executable, os.path.join(REPO_ROOT, "train.py"), "-o", save_dir]
    if not os.path.exists(log):
        command += [*RUNS[family], "-i", data_dir, "--precision", policy, "-ns", "0"]
    else:
        records = read_log(log)
        max_epochs = next(record["config"]["max_epochs"] for record in records
                          if "config" in record)
        if sum("epoch" in record for record in records) < max_epochs:
            command += ["-r"]  # with the run's own flags
        else:
            command = None
    if command:
        print(" ".join(command), flush=True)
        subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
    return [record for record in read_log(log) if "epoch" in record]


def compare(family, epochs):
    """Print one line per epoch: each policy's metrics; returns the largest difference of the
    first metric."""
    metric = "test_bits_per_dim" if "test_bits_per_dim" in epochs["fp32"][0] else "G_loss"
    names = [metric] + (["D_loss"] if metric == "G_loss" else [])
    largest = 0.0
    for fp32, bf16 in zip(epochs["fp32"], epochs["bf16"]):
        cells = ", ".join(f"{name} fp32 {fp32[name]:.4f} bf16 {bf16[name]:.4f}"
                          for name in names)
        largest = max(largest, abs(fp32[metric] - bf16[metric]))
        print(f"{family} epoch {fp32['epoch']}: {cells}")
    print(f"{family}: largest |fp32 - bf16| of {metric} over the epochs: {largest:.4f}")
    return largest


def curves(family, epochs):
    """One plot per family: each policy's curve as test/<metric>_<policy> against the step."""
    records = []
    for policy, rows in epochs.items():
        for row in rows:
            values = {f"test_{name}_{policy}": value for name, value in row.items()
                      if name in ("test_bits_per_dim", "G_loss", "D_loss")}
            records.append({"epoch": row["epoch"], "step": row["step"], **values})
    image = draw_curves(records, size=(800, 300))
    ImageDraw.Draw(image).text((450, 3), f"{family}: fp32 vs bf16", fill=(0, 0, 0))
    return image


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--families", default=",".join(RUNS))
    parser.add_argument("--work", default="precision_runs", help="run directories")
    parser.add_argument("-i", "--data_dir", default="datasets")
    parser.add_argument("--out", default=None, help="PNG of the learning curves")
    args = parser.parse_args()
    plots = []
    for family in args.families.split(","):
        epochs = {policy: train(family, policy, args.work, args.data_dir)
                  for policy in PRECISIONS}
        compare(family, epochs)
        plots.append(curves(family, epochs))
    if args.out:
        sheet = Image.new("RGB", (800, 300 * len(plots)), "white")
        for index, plot in enumerate(plots):
            sheet.paste(plot, (0, 300 * index))
        sheet.save(args.out)
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
