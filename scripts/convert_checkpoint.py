"""Convert a TF1 checkpoint of openai/pixel-cnn or openai/glow into a run of this project.

    python3 scripts/convert_checkpoint.py pixelcnn params_cifar.ckpt -o pxpp -d cifar -i datasets
    python3 train.py -o pxpp --eval_only -d cifar -i datasets      # 2.92 bits/dim on the test set
    python3 sample.py -o pxpp

The architecture is read from the checkpoint's names and shapes. Every other flag is train.py's
(data set, --image_size, Glow's --n_bits_x, ...): the run is stored as if train.py had trained it
with them, so evaluate, fine-tune (-r) and sample it with the same flags. See trainer/convert.py.
"""
import argparse
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from trainer.startup import quiet_tensorflow_import  # noqa: E402

quiet_tensorflow_import()

from trainer import convert  # noqa: E402


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n")[0], allow_abbrev=False,
        epilog="Any further flags are train.py's (e.g. -d cifar -i DIR, --image_size, "
               "--n_bits_x, --weight_y, --resnet_nonlinearity); they must agree with the "
               "checkpoint's shapes.")
    parser.add_argument("model", choices=sorted(convert.ORIGINALS),
                        help="pixelcnn: openai/pixel-cnn; glow: openai/glow")
    parser.add_argument("source", metavar="SRC_PREFIX",
                        help="the TF1 checkpoint prefix (e.g. params_cifar.ckpt)")
    parser.add_argument("-o", "--save_dir", required=True,
                        help="a new (or empty) directory for the converted run")
    parser.add_argument("--raw_averages", action="store_true",
                        help="store the raw weights as the Polyak averages, which evaluation and "
                             "sampling use (openai/glow evaluated and sampled with its raw "
                             "weights); default: the checkpoint's ExponentialMovingAverage "
                             "shadows")
    return parser.parse_known_args(argv)


def main(argv=None):
    args, train_flags = parse_args(argv)
    try:
        lines = convert.convert(args.model, args.source, args.save_dir, train_flags,
                                args.raw_averages)
    except convert.ConvertError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
