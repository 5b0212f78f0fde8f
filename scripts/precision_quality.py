"""Does bfloat16 train as well as float32? Trains the same runs (same seed, data and steps) with
--precision fp32 and bf16 through train.py; for --seed_runs families fp32 with another seed too
(the run-to-run noise), and for --rounding_runs families fp32 with the same seed on TensorFlow's
Eigen kernels instead of oneDNN's (TF_ENABLE_ONEDNN_OPTS=0: the same computation, rounded
differently, so how far rounding alone moves a curve); prints the per-epoch test bits/dim
(BigGAN: losses) side by side with their largest differences, and draws the learning curves to
a PNG.

    python3 scripts/precision_quality.py --seed_runs pixelcnn,glow,biggan --rounding_runs pixelcnn \
        --second_pairs pixelcnn --out docs/precision_quality.png

--second_pairs repeats the comparison from seed 2: bf16 (and, for --rounding_runs families, fp32
on the Eigen kernels) against fp32 with seed 2, so that each difference is measured twice.

Runs are written under --work and kept: a run that was stopped is resumed where it stopped by
running the script again, a finished run trains on to the epochs RUNS asks for (a resume is
exact, so that equals a longer run from the start), and others are only read. On 2 CPU cores
the PixelCNN++ runs take hours, Glow's and BigGAN's minutes.
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
                 "--nr_logistic_mix", "10", "-x", "6", "-t", "3"],
    "glow": ["--model", "glow", "-d", "real32"],
    "biggan": ["--model", "biggan", "-d", "real32"],
}
# run name: (precision, seed, environment); fp32-seed2 measures the run-to-run noise bf16 is
# compared with, fp32-eigen what float32 rounding alone does to the same run; the -seed2 runs
# of bf16 and Eigen are a second such pair, compared with fp32-seed2
EIGEN = {"TF_ENABLE_ONEDNN_OPTS": "0"}
VARIANTS = {"fp32": ("fp32", 1, {}), "bf16": ("bf16", 1, {}), "fp32-seed2": ("fp32", 2, {}),
            "fp32-eigen": ("fp32", 1, EIGEN), "bf16-seed2": ("bf16", 2, {}),
            "fp32-eigen-seed2": ("fp32", 2, EIGEN)}


def reference(variant):
    """The run a variant is compared with: fp32 with the variant's seed (fp32 itself for
    fp32-seed2, the seed-to-seed difference)."""
    return "fp32-seed2" if variant.endswith("-seed2") and variant != "fp32-seed2" else "fp32"


def train(family, variant, work, data_dir):
    """The epoch records of the run, after training it (or resuming it where it stopped)."""
    save_dir = os.path.join(work, f"{family}_{variant}")
    log = os.path.join(save_dir, "log.jsonl")
    command = [sys.executable, os.path.join(REPO_ROOT, "train.py"), "-o", save_dir]
    policy, seed, environment = VARIANTS[variant]
    if not os.path.exists(log):
        command += [*RUNS[family], "-i", data_dir, "--precision", policy, "-s", str(seed),
                    "-ns", "0"]
    else:
        records = read_log(log)
        flags = RUNS[family]
        max_epochs = int(flags[flags.index("-x") + 1]) if "-x" in flags else next(
            record["config"]["max_epochs"] for record in records if "config" in record)
        if sum("epoch" in record for record in records) < max_epochs:
            # with the run's own flags; a finished run trains on if RUNS asks for more epochs
            command += ["-r", "-x", str(max_epochs)]
        else:
            command = None
    if command:
        print(" ".join([*(f"{name}={value}" for name, value in environment.items()), *command]),
              flush=True)
        subprocess.run(command, check=True, stdout=subprocess.DEVNULL,
                       env={**os.environ, **environment})
    return [record for record in read_log(log) if "epoch" in record]


def compare(family, epochs):
    """Print one line per epoch with every run's metrics, then the largest and the mean
    difference over the epochs of each run against its reference (fp32 with its seed; fp32 for
    fp32-seed2, the run-to-run noise)."""
    metric = "test_bits_per_dim" if "test_bits_per_dim" in epochs["fp32"][0] else "G_loss"
    names = [metric] + (["D_loss"] if metric == "G_loss" else [])
    for rows in zip(*epochs.values()):
        cells = ", ".join(f"{name} {variant} {row[name]:.4f}" for name in names
                          for variant, row in zip(epochs, rows))
        print(f"{family} epoch {rows[0]['epoch']}: {cells}")
    for other in list(epochs)[1:]:
        for name in names:
            gaps = [abs(a[name] - b[name]) for a, b in zip(epochs[reference(other)], epochs[other])]
            print(f"{family}: |{reference(other)} - {other}| of {name} over the epochs: largest "
                  f"{max(gaps):.4f}, mean {sum(gaps) / len(gaps):.4f}")


def curves(family, epochs):
    """One plot per family, a curve per run and metric against the step: test/bits_per_dim
    <run> (an epoch's test score), train/G_loss <run> and train/D_loss <run> (BigGAN's epoch
    means)."""
    records = []
    for variant, rows in epochs.items():
        for row in rows:
            if "test_bits_per_dim" in row:
                records.append({"epoch": row["epoch"], "step": row["step"],
                                f"test_bits_per_dim {variant}": row["test_bits_per_dim"]})
            else:
                records.append({"step": row["step"], **{f"train/{name} {variant}": row[name]
                                                        for name in ("G_loss", "D_loss")}})
    image = draw_curves(records, size=(800, 300))
    pen = ImageDraw.Draw(image)
    title = f"{family}: {' vs '.join(epochs)}"
    pen.text((image.width - 5 - pen.textlength(title), 3), title, fill=(0, 0, 0))
    return image


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--families", default=",".join(RUNS))
    parser.add_argument("--work", default="precision_runs", help="run directories")
    parser.add_argument("-i", "--data_dir", default="datasets")
    parser.add_argument("--out", default=None, help="PNG of the learning curves")
    parser.add_argument("--seed_runs", default="glow,biggan",
                        help="families that also train fp32 with seed 2, the run-to-run noise "
                             "(PixelCNN++'s runs take hours, so not by default)")
    parser.add_argument("--rounding_runs", default="",
                        help="families that also train fp32 on the Eigen kernels, the same run "
                             "rounded differently (e.g. pixelcnn)")
    parser.add_argument("--second_pairs", default="",
                        help="families (among --seed_runs) that also train bf16, and for "
                             "--rounding_runs fp32 on the Eigen kernels, with seed 2")
    args = parser.parse_args()
    seed, rounding, second = (set(families.split(",")) - {""} for families in
                              (args.seed_runs, args.rounding_runs, args.second_pairs))
    if not second <= seed:
        parser.error("--second_pairs: every family in it must be in --seed_runs too (its second "
                     "pair is compared with fp32 seed 2)")
    plots = []
    for family in args.families.split(","):
        variants = ["fp32", "bf16"] + [
            variant for variant, wanted in (
                ("fp32-seed2", family in seed), ("fp32-eigen", family in rounding),
                ("bf16-seed2", family in second),
                ("fp32-eigen-seed2", family in second and family in rounding))
            if wanted]
        epochs = {variant: train(family, variant, args.work, args.data_dir)
                  for variant in variants}
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
