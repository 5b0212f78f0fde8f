"""Command-line flags of train.py, defined once.

Flags the trainer needs for every family live here; each family adds its own
(`Family.add_arguments`). Flags whose best value depends on the data set (architecture, batch
size, epochs, devices) default to None and are filled from the family's profile for the data
set's kind (`Family.defaults(data_set)`): the paper setting for the paper data sets, a small CPU
setting for the embedded ones. A flag given on the command line always wins.
"""
import argparse

import data
from trainer import families
from trainer.argtypes import positive_int


def train_parser(family):
    parser = argparse.ArgumentParser(
        description="Train (or evaluate) an image model: PixelCNN++, Glow or BigGAN.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--model", default=families.DEFAULT_FAMILY, choices=families.names(),
                        help="model family")
    parser.add_argument("-i", "--data_dir", default="datasets",
                        help="data location (the image folder itself for --data_set folder)")
    parser.add_argument("-o", "--save_dir", default="save",
                        help="checkpoints, logs and samples")
    parser.add_argument("-d", "--data_set", default=data.DEFAULT_DATA_SET, choices=data.names())
    parser.add_argument("--image_size", type=positive_int, default=None,
                        help="square side for data sets that resize (folder, imagenet, celebahq)")
    parser.add_argument("-t", "--save_interval", type=positive_int, default=None,
                        help="epochs between checkpoints and sample grids")
    parser.add_argument("-r", "--load_params", action="store_true",
                        help="resume from the newest checkpoint in --save_dir")
    parser.add_argument("-b", "--batch_size", type=positive_int, default=None,
                        help="images per device and step")
    parser.add_argument("-u", "--init_batch_size", type=positive_int, default=16,
                        help="images for the data-dependent initialisation")
    parser.add_argument("-x", "--max_epochs", type=positive_int, default=None,
                        help="epochs to train")
    parser.add_argument("-g", "--nr_gpu", type=positive_int, default=None,
                        help="devices to train on data-parallel (logical CPU devices if no GPU)")
    parser.add_argument("-ns", "--num_samples", type=int, default=1,
                        help="batches of samples per save")
    parser.add_argument("--sample_batch_size", type=positive_int, default=None,
                        help="images per sample batch (unset and not in the data set's profile: "
                             "batch_size * nr_gpu, as openai/pixel-cnn)")
    parser.add_argument("-s", "--seed", type=int, default=1,
                        help="seeds the initial weights, data order, dropout and samples")
    parser.add_argument("--log_interval", type=positive_int, default=50,
                        help="steps between the training scalars (losses, learning rate, "
                             "gradient norm, img/s) written to log.jsonl and TensorBoard")
    parser.add_argument("--sheet_width", type=positive_int, default=512,
                        help="sample sheet PNGs are scaled up (nearest neighbour, a whole "
                             "factor) to at least this many pixels wide; 1: native size")
    parser.add_argument("--eval_only", action="store_true",
                        help="only evaluate the newest checkpoint in --save_dir on the test set")
    parser.add_argument("--out", default=None,
                        help="--eval_only: where to write per-image test NLL in nats (.npy; "
                             "default <save_dir>/test_nll.npy)")
    family.add_arguments(parser)
    describe_profile_defaults(parser, family)
    return parser


def describe_profile_defaults(parser, family):
    """Spell out, in --help, the per-data-set defaults of the flags that default to None."""
    profiles = {name: family.defaults(name) for name in data.names()}
    for action in parser._actions:
        values = {}
        for name, profile in profiles.items():
            if action.default is None and action.dest in profile:
                values.setdefault(profile[action.dest], []).append(name)
        if values:
            listed = "; ".join(f"{value} ({', '.join(names)})" for value, names in values.items())
            # %(default).0s prints nothing: it stops the formatter from appending "(default: None)"
            action.help = f"{action.help or ''} (default per data set: {listed})%(default).0s"


def parse_train_args(argv=None):
    """(args, Family) with every None default filled from the family's profile."""
    selector = argparse.ArgumentParser(add_help=False)
    selector.add_argument("--model", default=families.DEFAULT_FAMILY, choices=families.names())
    selected, _ = selector.parse_known_args(argv)
    family = families.get(selected.model)
    parser = train_parser(family)
    args = parser.parse_args(argv)
    for name, value in family.defaults(args.data_set).items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    if args.sample_batch_size is None:
        args.sample_batch_size = args.batch_size * args.nr_gpu
    if args.out and not args.eval_only:
        parser.error("argument --out: only used with --eval_only")
    if args.num_samples < 0:
        parser.error(f"argument -ns/--num_samples: must be >= 0, got {args.num_samples}")
    return args, family
