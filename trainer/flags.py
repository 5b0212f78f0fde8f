"""Command-line flags of train.py and sample.py, defined once, parsed without importing TensorFlow
(so --help and a mistyped flag answer at once).

Flags the trainer needs for every family live here; each family adds its own
(`FamilyFlags.add_arguments`, `add_sample_arguments`). Flags whose best value depends on the data
set (architecture, batch size, epochs, devices) default to None and are filled from the family's
profile for the data set's kind (`FamilyFlags.defaults(data_set)`): the paper setting for the
paper data sets, a small CPU setting for the embedded ones. A flag given on the command line
always wins.
"""
import argparse

import data
from trainer import families
from trainer.argtypes import PRECISIONS, positive_int
from trainer.families.profiles import kind_of_data_set


INIT_BATCH_SIZE = 16  # openai/pixel-cnn's -u

# Flags of the originals that are not flags here: one line naming what replaces them.
# {flag: (families it applies to, None for every family; the line)}
ORIGINAL_FLAGS = {
    "--problem": (None, "openai/glow's --problem is -d/--data_set here: cifar10 -> -d cifar, "
                        "imagenet-oord -> -d imagenet, celeba -> -d celebahq"),
    "--n_train": (None, "openai/glow's --n_train (images per epoch) has no counterpart: an epoch "
                        "here is the whole train split"),
    "--n_test": (None, "openai/glow's --n_test has no counterpart: every epoch scores the whole "
                       "test split"),
    "--n_batch_test": (None, "openai/glow's --n_batch_test (unused there) has no counterpart: "
                             "evaluation takes -b/--batch_size images per device"),
    "--restore_path": (None, "openai/glow's --restore_path is -r/--load_params here (the newest "
                             "checkpoint in -o/--save_dir, or --checkpoint PREFIX)"),
    "--inference": (None, "openai/glow's --inference is sample.py here: sample.py -o SAVE_DIR "
                          "--encode test writes the test split's latents"),
    "--anchor_size": (None, "openai/glow's --anchor_size has no counterpart: -b/--batch_size "
                            "and -u/--init_batch_size count images per device at the data's "
                            "own size"),
    "--epochs_full_valid": (None, "openai/glow's --epochs_full_valid has no counterpart: the "
                                  "test split is scored every epoch"),
    "--epochs_full_sample": (None, "openai/glow's --epochs_full_sample is -t/--save_interval "
                                   "here (samples and checkpoints)"),
    "-c": (("glow",), "-c/--class_conditional is --ycond for --model glow (with --weight_y for "
                      "openai/glow's classifier term)"),
    "--class_conditional": (("glow",), "--class_conditional is --ycond for --model glow"),
}
HABITS_EPILOG = ("Flags of openai/glow without a counterpart here (--problem, --n_train, "
                 "--n_test, --n_batch_test, --restore_path, --inference, ...) are answered with "
                 "the replacement; --logdir is -o/--save_dir.")


def parse_with_hints(parser, argv, family):
    """parser.parse_args(argv), with a line naming the replacement for an original's flag."""
    args, extras = parser.parse_known_args(argv)
    for token in extras:
        applies, hint = ORIGINAL_FLAGS.get(token.split("=", 1)[0], ((), None))
        if hint and (applies is None or family.name in applies):
            parser.error(hint)
    if extras:
        parser.error(f"unrecognized arguments: {' '.join(extras)}")
    return args


def add_cache_dir_argument(parser):
    """--cache_dir, shared by train.py and sample.py."""
    parser.add_argument("--cache_dir", default=None,
                        help="where decoded image folders (folder, celebahq_images) are cached as "
                             "memory-mapped arrays (default: $XDG_CACHE_HOME/pixelcnn-glow/data, "
                             "i.e. ~/.cache/pixelcnn-glow/data)")


def train_parser(family):
    others = " and ".join(f"--model {name} --help" for name in families.names()
                          if name != family.name)
    parser = argparse.ArgumentParser(
        description=f"Train (or evaluate) an image model: PixelCNN++, Glow or BigGAN. This help "
                    f"lists the shared flags and those of --model {family.name}; {others} list "
                    f"the other families' flags.",
        epilog=HABITS_EPILOG,
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--model", default=families.DEFAULT_FAMILY, choices=families.names(),
                        help="model family")
    parser.add_argument("-i", "--data_dir", default="datasets",
                        help="data location (the image folder itself for --data_set folder)")
    add_cache_dir_argument(parser)
    parser.add_argument("-o", "--save_dir", "--logdir", default="save",
                        help="checkpoints, logs and samples")
    parser.add_argument("-d", "--data_set", default=data.DEFAULT_DATA_SET, choices=data.names(),
                        help="data set (README: Data sets); the paper sets get the paper "
                             "setting, the small ones (real32, fashion_mnist, folder) a CPU one")
    parser.add_argument("--image_size", type=positive_int, default=None,
                        help="square side for data sets that resize (folder, imagenet, celebahq)")
    parser.add_argument("-t", "--save_interval", type=positive_int, default=None,
                        help="epochs between checkpoints and sample grids")
    parser.add_argument("-r", "--load_params", action="store_true",
                        help="resume from the newest checkpoint in --save_dir")
    parser.add_argument("-b", "--batch_size", type=positive_int, default=None,
                        help="images per device and step")
    parser.add_argument("-u", "--init_batch_size", type=positive_int, default=None,
                        help=f"images for the data-dependent initialisation (default "
                             f"{INIT_BATCH_SIZE} where the data set's profile sets none)")
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
    parser.add_argument("--precision", choices=PRECISIONS, default=None,
                        help="compute dtype: fp32, bf16 (bfloat16 networks, float32 likelihoods "
                             "and variables) or fp16 (float16 with dynamic loss scaling); "
                             "default: the run's when resuming or evaluating, else fp32")
    parser.add_argument("--eval_only", action="store_true",
                        help="only evaluate the newest checkpoint in --save_dir on the test set")
    parser.add_argument("--out", default=None,
                        help="--eval_only: where to write per-image test NLL in nats (.npy; "
                             "default <save_dir>/test_nll.npy)")
    add_checkpoint_arguments(parser)
    family.add_arguments(parser)
    describe_profile_defaults(parser, family)
    return parser


# --save_minutes when unset: a paper run checkpoints this often between its epoch-end
# checkpoints; the small CPU runs save at their (short) epoch ends only.
SAVE_MINUTES = {"paper": 20.0, "cpu": 0.0}


def add_checkpoint_arguments(parser):
    group = parser.add_argument_group("checkpoints and resuming")
    group.add_argument("--save_steps", type=non_negative_int, default=0,
                       help="also checkpoint every this many steps, mid-epoch too (0: off)")
    group.add_argument("--save_minutes", type=float, default=None,
                       help="also checkpoint when this many minutes passed since the last one "
                            "(0: off; default 20 on the paper data sets, 0 on the small ones)")
    group.add_argument("--keep_checkpoints", type=positive_int, default=2,
                       help="checkpoints kept in --save_dir (older ones of the run are deleted)")
    group.add_argument("--checkpoint", default=None, metavar="PREFIX",
                       help="-r / --eval_only: this checkpoint (e.g. save/ckpt-4) instead of the "
                            "newest one that restores")
    group.add_argument("--override", type=flag_names, default=None, metavar="FLAG[,FLAG]",
                       help="-r: accept these training flags differing from the run's")


def non_negative_int(text):
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {text}")
    return value


def flag_names(text):
    return [name.strip().lstrip("-") for name in text.split(",") if name.strip()]


# Numeric flags' valid ranges (any family's flag of that name): (low, high, low included,
# high included); None: unbounded.
RANGES = {"learning_rate": (0, None, False, True), "G_lr": (0, None, False, True),
          "D_lr": (0, None, False, True), "lr_decay": (0, 1, False, True),
          "dropout_p": (0, 1, True, False), "polyak_decay": (0, 1, True, False),
          "ema_decay": (0, 1, True, False), "beta1": (0, 1, True, False),
          "epochs_warmup": (0, None, True, True), "polyak_epochs": (0, None, False, True),
          "G_ortho": (0, None, True, True), "ema_start": (0, None, True, True),
          "num_D_steps": (1, None, True, True), "seed": (0, None, True, True),
          "save_minutes": (0, None, True, True), "num_samples": (0, None, True, True)}


def range_error(name, value):
    """A one-line complaint when flag `name`'s value lies outside RANGES, else None."""
    if name not in RANGES or value is None:
        return None
    low, high, low_in, high_in = RANGES[name]
    below = low is not None and (value < low or (value == low and not low_in))
    above = high is not None and (value > high or (value == high and not high_in))
    if not (below or above):
        return None
    interval = (f"{'[' if low_in else '('}{low}, {high if high is not None else 'inf'}"
                f"{']' if high_in else ')'}")
    return f"argument --{name}: must lie in {interval}, got {value}"


def given_flags(family, argv=None):
    """The names (dests) of the flags given on the command line."""
    parser = train_parser(family)
    for action in parser._actions:
        action.default = argparse.SUPPRESS
    return set(vars(parser.parse_args(argv)))


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
    args, family_flags = parse_train_flags(argv)
    return args, families.get(family_flags.name)


def parse_train_flags(argv=None):
    """(args, the family's FamilyFlags) as parse_train_args, without importing TensorFlow."""
    selector = argparse.ArgumentParser(add_help=False)
    selector.add_argument("--model", default=families.DEFAULT_FAMILY, choices=families.names())
    selected, _ = selector.parse_known_args(argv)
    family = families.flags_of(selected.model)
    parser = train_parser(family)
    args = parse_with_hints(parser, argv, family)
    for name, value in family.defaults(args.data_set, args.image_size).items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    if args.sample_batch_size is None:
        args.sample_batch_size = args.batch_size * args.nr_gpu
    if args.init_batch_size is None:
        args.init_batch_size = INIT_BATCH_SIZE
    if args.out and not args.eval_only:
        parser.error("argument --out: only used with --eval_only")
    if args.save_minutes is None:
        args.save_minutes = SAVE_MINUTES[kind_of_data_set(args.data_set)]
    for name, value in sorted(vars(args).items()):
        if range_error(name, value):
            parser.error(range_error(name, value))
    return args, family


def parse_sample_args(argv=None):
    """(args, {family: {flag: value} of the flags of that family given})."""
    parser = argparse.ArgumentParser(description="Draw samples from a checkpoint written by "
                                                 "train.py, with its Polyak-averaged weights.",
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("-o", "--save_dir", default="save",
                        help="the newest checkpoint in here that restores completely")
    parser.add_argument("-c", "--checkpoint", default=None,
                        help="a checkpoint prefix such as save/ckpt-4, or a run directory (its "
                             "newest checkpoint); overrides --save_dir")
    parser.add_argument("--model", default=None, choices=families.names(),
                        help="refuse checkpoints of any other model family")
    parser.add_argument("--n", type=positive_int, default=16, help="number of images")
    parser.add_argument("-s", "--seed", type=int, default=1,
                        help="seeds the samples: the same seed gives the same images")
    parser.add_argument("--label", type=int, default=None,
                        help="class of every image (class-conditional models; default: cycle "
                             "through the classes)")
    parser.add_argument("--sampler", default=None,
                        help="the checkpoint family's sampler, one of " + "; ".join(
                            f"{name}: " + ", ".join(
                                sampler + (" (default)" if sampler == family.default_sampler
                                           else "") for sampler in family.sampler_names)
                            for name, family in sorted(families.FLAGS.items())) +
                             " (PixelCNN++: fast is the cached sampler, naive a full forward "
                             "pass per pixel)")
    parser.add_argument("--out", default=None,
                        help="PNG path; the raw uint8 images go beside it as .npz (default: "
                             "beside the checkpoint, named after what it holds, e.g. "
                             "sample_<sampler>_seed<seed>.png)")
    parser.add_argument("--force", action="store_true",
                        help="overwrite existing output files (refused otherwise)")
    parser.add_argument("--sheet_width", type=positive_int, default=512,
                        help="the PNG sheet is scaled up (nearest neighbour, a whole factor) to "
                             "at least this many pixels wide; 1: native size")
    parser.add_argument("--seed_b", type=int, default=None,
                        help="interpolation: the second end's seed (families that interpolate)")
    parser.add_argument("--label_b", type=int, default=None,
                        help="interpolation: the second end's class (class-conditional models)")
    parser.add_argument("--steps", type=positive_int, default=8,
                        help="interpolation: images from one end to the other, both included")
    parser.add_argument("--precision", choices=PRECISIONS, default=None,
                        help="compute dtype of the network while sampling or in the export: "
                             "fp32, bf16 or fp16 (default: the run's)")
    add_cache_dir_argument(parser)
    parser.add_argument("--export", default=None, metavar="DIR",
                        help="write a hub-style SavedModel (z, y, truncation -> images in [-1, 1]) "
                             "to DIR instead of sampling; see trainer/export.py")
    family_flags = {}
    for name in families.names():
        group = parser.add_argument_group(f"--model {name} only")
        families.flags_of(name).add_sample_arguments(group)
        family_flags[name] = [action.dest for action in group._group_actions]
    args = parser.parse_args(argv)
    return args, {name: {dest: getattr(args, dest) for dest in dests
                         if getattr(args, dest) != parser.get_default(dest)}
                  for name, dests in family_flags.items()}
