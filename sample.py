"""Draw samples from a checkpoint written by train.py, with its Polyak-averaged weights.

    python3 sample.py -o save --n 16 --seed 1            # save/sample_fast_seed1.png + .npz
    python3 sample.py --checkpoint save/ckpt-4 --label 3 --out cats.png

The model configuration is stored in the checkpoint, so no architecture flags are needed. The
same --seed gives the same images.

A model family may add its own flags and outputs (temperatures, interpolation sheets, ...)
through its Family (trainer/families/): add_sample_arguments and sample_main. Flags of a family
other than the checkpoint's are refused.
"""
import argparse
import os
import re
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from trainer.startup import quiet_tensorflow_import  # noqa: E402

quiet_tensorflow_import()

from trainer import checkpoint, export, families, flags, precision  # noqa: E402
from trainer.argtypes import PRECISIONS  # noqa: E402


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("-o", "--save_dir", default="save",
                        help="the newest checkpoint in here that restores completely")
    parser.add_argument("-c", "--checkpoint", default=None,
                        help="a checkpoint prefix such as save/ckpt-4, or a run directory (its "
                             "newest checkpoint); overrides --save_dir")
    parser.add_argument("--model", default=None, choices=families.names(),
                        help="refuse checkpoints of any other model family")
    parser.add_argument("--n", type=flags.positive_int, default=16, help="number of images")
    parser.add_argument("-s", "--seed", type=int, default=1,
                        help="seeds the samples: the same seed gives the same images")
    parser.add_argument("--label", type=int, default=None,
                        help="class of every image (class-conditional models; default: cycle "
                             "through the classes)")
    parser.add_argument("--sampler", default=None,
                        help="the checkpoint family's sampler, one of " + "; ".join(
                            f"{name}: " + ", ".join(
                                sampler + (" (default)" if sampler == family.default_sampler
                                           else "") for sampler in sorted(family.samplers))
                            for name, family in sorted(families.FAMILIES.items())) +
                             " (PixelCNN++: fast is the cached sampler, naive a full forward "
                             "pass per pixel)")
    parser.add_argument("--out", default=None,
                        help="PNG path; the raw uint8 images go beside it as .npz (default: "
                             "beside the checkpoint, named after what it holds, e.g. "
                             "sample_<sampler>_seed<seed>.png)")
    parser.add_argument("--force", action="store_true",
                        help="overwrite existing output files (refused otherwise)")
    parser.add_argument("--sheet_width", type=flags.positive_int, default=512,
                        help="the PNG sheet is scaled up (nearest neighbour, a whole factor) to "
                             "at least this many pixels wide; 1: native size")
    parser.add_argument("--seed_b", type=int, default=None,
                        help="interpolation: the second end's seed (families that interpolate)")
    parser.add_argument("--label_b", type=int, default=None,
                        help="interpolation: the second end's class (class-conditional models)")
    parser.add_argument("--steps", type=flags.positive_int, default=8,
                        help="interpolation: images from one end to the other, both included")
    parser.add_argument("--precision", choices=PRECISIONS, default=None,
                        help="compute dtype of the network while sampling or in the export: "
                             "fp32, bf16 or fp16 (default: the run's)")
    flags.add_cache_dir_argument(parser)
    parser.add_argument("--export", default=None, metavar="DIR",
                        help="write a hub-style SavedModel (z, y, truncation -> images in [-1, 1]) "
                             "to DIR instead of sampling; see trainer/export.py")
    family_flags = {}
    for name in families.names():
        group = parser.add_argument_group(f"--model {name} only")
        families.get(name).add_sample_arguments(group)
        family_flags[name] = [action.dest for action in group._group_actions]
    args = parser.parse_args(argv)
    return args, {name: {dest: getattr(args, dest) for dest in dests
                         if getattr(args, dest) != parser.get_default(dest)}
                  for name, dests in family_flags.items()}


def check_family_flags(kind, given_by_family):
    """Refuse flags that belong to another model family than the checkpoint's."""
    for name, given in given_by_family.items():
        if name != kind and given:
            flag = "--" + sorted(given)[0]
            raise checkpoint.CheckpointError(f"{flag} is a --model {name} flag; the checkpoint "
                                             f"holds a {kind!r} model")


def load(args, given_by_family, path):
    """(family, model, ema, stored configuration) of checkpoint `path`, once the flags are
    known to fit its model family."""
    stored = checkpoint.read_run_config(path)
    kind = stored.get("model")
    if args.model and kind != args.model:
        raise checkpoint.CheckpointError(f"{path} holds a {kind!r} model, not "
                                         f"{args.model!r}")
    if kind in families.FAMILIES:  # checked before the model is built
        family = families.get(kind)
        check_family_flags(kind, given_by_family)
        args.sampler = args.sampler or family.default_sampler
        if args.sampler not in family.samplers:
            raise checkpoint.CheckpointError(f"--sampler {args.sampler}: {kind} offers "
                                             f"{', '.join(sorted(family.samplers))}")
    return families.restore(path)


def checked_out_directory(path):
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory) or not os.access(directory, os.W_OK):
        raise checkpoint.CheckpointError(f"--out {path}: directory {directory} does not exist "
                                         f"or is not writable; create it or pass another path")


def checkpoint_directory_or_prefix(args):
    """--checkpoint DIR means that run directory's newest checkpoint (as --save_dir DIR); a
    prefix that does not exist is refused with a list of the checkpoints beside it."""
    if args.checkpoint is None:
        return
    if os.path.isdir(args.checkpoint):
        args.save_dir, args.checkpoint = args.checkpoint, None
    elif not os.path.exists(args.checkpoint + ".index"):
        directory = os.path.dirname(args.checkpoint) or "."
        names = sorted((name[:-len(".index")] for name in (
            os.listdir(directory) if os.path.isdir(directory) else []) if name.endswith(".index")),
            key=lambda name: [int(part) if part.isdigit() else part
                              for part in re.split(r"(\d+)", name)])
        found = ", ".join(os.path.join(directory, name) for name in names) or "none"
        raise checkpoint.CheckpointError(f"no checkpoint at {args.checkpoint}; checkpoints in "
                                         f"{directory}: {found}")


def checked_outputs(prefix, force):
    """Refuse to overwrite an earlier output unless --force."""
    for path in (prefix + ".png", prefix + ".npz"):
        if os.path.exists(path) and not force:
            raise families.SampleError(f"{path} exists; pass --force to overwrite it or --out "
                                       f"to write elsewhere")


def main(argv=None):
    args, given_by_family = parse_args(argv)
    try:
        checkpoint_directory_or_prefix(args)
        if args.out:
            checked_out_directory(args.out)
        # the newest checkpoint that restores, or the one --checkpoint names
        path, (family, model, ema, stored) = checkpoint.restore_newest(
            checkpoint.candidates(args.save_dir, args.checkpoint),
            lambda path: load(args, given_by_family, path),
            notify=lambda line: print(line, file=sys.stderr))
        args.checkpoint = path  # the checkpoint restored (a family may cache files beside it)
        policy = args.precision or stored["flags"].get("precision") or precision.DEFAULT_POLICY
        precision.check_devices(policy)
        precision.apply(model, policy)
        if args.export:
            export.export(family.export_module(model, ema, args), args.export)
            print(f"wrote SavedModel {args.export} (from {path})")
            return 0
        out = args.out or os.path.join(os.path.dirname(path), family.output_name(args) + ".png")
        prefix = out[:-len(".png")] if out.endswith(".png") else out
        checked_outputs(prefix, args.force)
        written = family.sample_main(args, model, ema, stored, prefix)
    except (checkpoint.CheckpointError, families.SampleError, export.ExportError,
            precision.PrecisionError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(f"wrote {', '.join(written)} ({args.n} images from {path}, sampler {args.sampler}, "
          f"seed {args.seed})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
