"""Draw samples from a checkpoint written by train.py, with its Polyak-averaged weights.

    python3 sample.py -o save --n 16 --seed 1            # save/sample_fast_seed1.png + .npz
    python3 sample.py --checkpoint save/ckpt-4 --label 3 --out cats.png

The model configuration is stored in the checkpoint, so no architecture flags are needed. The
same --seed gives the same images.

A model family may add its own flags and outputs (temperatures, interpolation sheets, ...)
through its Family (trainer/families/): add_sample_arguments and sample_main. Flags of a family
other than the checkpoint's are refused.
"""
import os
import re
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from trainer.startup import quiet_tensorflow_import  # noqa: E402

quiet_tensorflow_import()

from trainer import flags  # noqa: E402

if __name__ == "__main__":  # --help and flag mistakes answer before TensorFlow loads
    flags.parse_sample_args(sys.argv[1:])

from trainer import checkpoint, export, families, precision  # noqa: E402


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
    if kind in families.names():  # checked before the model is built
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
    args, given_by_family = flags.parse_sample_args(argv)
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
