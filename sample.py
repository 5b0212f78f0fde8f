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
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from trainer.startup import quiet_tensorflow_import  # noqa: E402

quiet_tensorflow_import()

from trainer import checkpoint, export, families, flags  # noqa: E402


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("-o", "--save_dir", default="save", help="newest checkpoint in here")
    parser.add_argument("--checkpoint", default=None,
                        help="a checkpoint prefix such as save/ckpt-4 (overrides --save_dir)")
    parser.add_argument("--model", default=None, choices=families.names(),
                        help="refuse checkpoints of any other model family")
    parser.add_argument("--n", type=flags.positive_int, default=16, help="number of images")
    parser.add_argument("-s", "--seed", type=int, default=1)
    parser.add_argument("--label", type=int, default=None,
                        help="class of every image (class-conditional models; default: cycle "
                             "through the classes)")
    parser.add_argument("--sampler", default=None,
                        help="one of the model family's samplers (default: the family's default, "
                             "fast for PixelCNN++: the cached sampler; naive: "
                             "a full forward pass per pixel, same images)")
    parser.add_argument("--out", default=None,
                        help="PNG path; the raw uint8 images go beside it as .npz (default "
                             "<checkpoint dir>/sample_<sampler>_seed<seed>.png)")
    parser.add_argument("--seed_b", type=int, default=None,
                        help="interpolation: the second end's seed (families that interpolate)")
    parser.add_argument("--label_b", type=int, default=None,
                        help="interpolation: the second end's class (class-conditional models)")
    parser.add_argument("--steps", type=flags.positive_int, default=8,
                        help="interpolation: images from one end to the other, both included")
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


def main(argv=None):
    args, given_by_family = parse_args(argv)
    try:
        path = checkpoint.find_checkpoint(args.save_dir, args.checkpoint)
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
        family, model, ema, stored = families.restore(path)
        if args.export:
            export.export(family.export_module(model, ema, args), args.export)
            print(f"wrote SavedModel {args.export} (from {path})")
            return 0
        out = args.out or os.path.join(os.path.dirname(path),
                                       f"sample_{args.sampler}_seed{args.seed}.png")
        prefix = out[:-len(".png")] if out.endswith(".png") else out
        written = family.sample_main(args, model, ema, stored, prefix)
    except (checkpoint.CheckpointError, families.SampleError, export.ExportError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(f"wrote {', '.join(written)} ({args.n} images from {path}, sampler {args.sampler}, "
          f"seed {args.seed})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
