"""Speed of the cached sampler (fast_generation.sample_fast) against the naive one.

For each batch size: the wall time of one full forward pass over the batch, the naive sampler's
time estimated as H*W forward passes (and checked by timing its first few pixels), the fast
sampler's wall time, the speed-up naive / fast and fast / forward. All numbers come from this run
on this machine; the model is randomly initialised plus data-dependent init (speed does not depend
on training). Example (default PixelCNN++, 32x32x3, F=160, R=5, M=10):

    python scripts/bench_fast_sampler.py --batch_sizes 1,16
    python scripts/bench_fast_sampler.py --batch_sizes 4 --nr_filters 32 --nr_resnet 1   # quick
    python scripts/bench_fast_sampler.py --batch_sizes 16 --precisions fp32,bf16 --naive_pixels 0
With several --precisions every batch size is measured once per policy (trainer/precision.py;
a model per policy with the same weights), interleaved, and the fast samplers' time ratio printed.
"""
import argparse
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import tensorflow as tf  # noqa: E402

from fast_generation import sample_fast  # noqa: E402
from pixel_cnn_pp import nn  # noqa: E402
from pixel_cnn_pp.model import PixelCNNConfig, PixelCNNPP  # noqa: E402
from trainer import precision  # noqa: E402

# Fast PixelCNN++ README chart (PrajitR/fast-pixel-cnn, Tesla K40): speed-up by batch size
ORIGINAL_SPEEDUPS = {1: 2, 2: 4, 4: 6, 8: 10, 16: 18, 32: 33, 64: 61, 128: 109, 256: 183}


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch_sizes", default="1,4,16,64",
                        help="comma-separated batch sizes (default: 1,4,16,64)")
    parser.add_argument("--image_size", default="32",
                        help="H or HxW, multiples of 4 (default: 32)")
    parser.add_argument("--channels", type=int, default=3, choices=(1, 3))
    parser.add_argument("--nr_resnet", type=int, default=5)
    parser.add_argument("--nr_filters", type=int, default=160)
    parser.add_argument("--nr_logistic_mix", type=int, default=10)
    parser.add_argument("--resnet_nonlinearity", default="concat_elu",
                        choices=("concat_elu", "elu", "relu"))
    parser.add_argument("--naive_pixels", type=int, default=2,
                        help="pixels of the naive sampler to time, to check the H*W x forward "
                             "estimate (0: skip)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--precisions", default="fp32",
                        help="comma list of precision policies, e.g. fp32,bf16")
    args = parser.parse_args(argv)
    args.precisions = args.precisions.split(",")
    if not set(args.precisions) <= set(precision.POLICIES):
        parser.error(f"--precisions: a comma list of {sorted(precision.POLICIES)}")
    try:
        args.batch_sizes = [int(b) for b in args.batch_sizes.split(",")]
        sizes = [int(s) for s in args.image_size.lower().split("x")]
    except ValueError:
        parser.error(f"--batch_sizes {args.batch_sizes!r} / --image_size {args.image_size!r}: "
                     f"expected integers like 1,16 and 32 or 8x12")
    if min(args.batch_sizes) < 1 or len(sizes) not in (1, 2):
        parser.error("--batch_sizes must be positive; --image_size is H or HxW")
    args.image_shape = (sizes[0], sizes[-1], args.channels)
    return args


def timed(function, *args):
    start = time.perf_counter()
    result = function(*args)
    if isinstance(result, tf.Tensor):
        result.numpy()  # wait for the computation
    return time.perf_counter() - start


def naive_pixel_seconds(model, images, seed, num_pixels):
    """Seconds per pixel of the naive sampler's loop (pixel_cnn_pp.model.sample_naive): a full
    forward pass, then the pixel drawn from its output, for the first `num_pixels` pixels."""
    height, width, _ = model.config.image_shape

    @tf.function
    def first_pixels(x):
        for index in range(num_pixels):
            row, col = divmod(index, width)
            l = model(x)[:, row:row + 1, col:col + 1, :]
            pixel = model.sample_from_output(l, nn.pixel_seed(seed, row, col))
            at_pixel = tf.reshape(tf.one_hot(index, height * width, on_value=True,
                                             off_value=False), [1, height, width, 1])
            x = tf.where(at_pixel, pixel, x)
        return x

    timed(first_pixels, images)  # trace and warm up
    return timed(first_pixels, images) / num_pixels


def main(argv=None):
    args = parse_args(argv)
    try:
        config = PixelCNNConfig(image_shape=args.image_shape, nr_resnet=args.nr_resnet,
                                nr_filters=args.nr_filters, nr_logistic_mix=args.nr_logistic_mix,
                                resnet_nonlinearity=args.resnet_nonlinearity)
    except ValueError as error:
        sys.exit(f"bench_fast_sampler.py: {error}")
    height, width, _ = config.image_shape
    models = {}
    for policy in args.precisions:  # the same weights under every policy
        tf.random.set_seed(args.seed)
        models[policy] = precision.apply(PixelCNNPP(config), policy)
        models[policy].initialize(tf.random.uniform((16,) + config.image_shape, -1.0, 1.0,
                                                    seed=args.seed), seed=[args.seed, 0])
    print(f"PixelCNN++ {height}x{width}x{config.image_shape[2]}, F={config.nr_filters}, "
          f"R={config.nr_resnet}, M={config.nr_logistic_mix}, {config.resnet_nonlinearity}, "
          f"{models[args.precisions[0]].num_parameters():,} parameters; {os.cpu_count()} CPU "
          f"cores, TF {tf.__version__}", flush=True)
    header = (f"{'batch':>5} {'policy':>6} {'forward s':>10} {'naive s (HW x fwd)':>19} "
              f"{'naive s/pixel':>14} {'fast s':>8} {'fast 1st call s':>16} {'speed-up':>9} "
              f"{'fast/fwd':>9} {'original':>9}")
    print(header, flush=True)
    for batch in args.batch_sizes:
        images = tf.random.uniform((batch,) + config.image_shape, -1.0, 1.0, seed=batch)
        fast = {}
        for policy, model in models.items():
            forward = tf.function(lambda x, model=model: model(x))
            timed(forward, images)  # trace
            forward_seconds = min(timed(forward, images) for _ in range(2))
            naive_seconds = height * width * forward_seconds
            per_pixel = (naive_pixel_seconds(model, images, [args.seed, 1], args.naive_pixels)
                         if args.naive_pixels else float("nan"))
            first_call = timed(sample_fast, model, batch, [args.seed, 2])  # trace + run
            fast[policy] = fast_seconds = timed(sample_fast, model, batch, [args.seed, 2])
            original = ORIGINAL_SPEEDUPS.get(batch)
            print(f"{batch:>5} {policy:>6} {forward_seconds:>10.3f} {naive_seconds:>19.1f} "
                  f"{per_pixel:>14.3f} {fast_seconds:>8.2f} {first_call:>16.2f} "
                  f"{naive_seconds / fast_seconds:>8.0f}x {fast_seconds / forward_seconds:>8.2f}x "
                  f"{'' if original is None else str(original) + 'x':>9}", flush=True)
        for policy in args.precisions[1:]:
            print(f"{batch:>5} fast {args.precisions[0]} / {policy} time: "
                  f"x{fast[args.precisions[0]] / fast[policy]:.2f}", flush=True)
    print("\nspeed-up = naive / fast, naive = H*W x one forward pass over the batch (the naive "
          "s/pixel column times the first pixels of the naive loop to check it); fast/fwd = fast "
          "sampling time in forward passes; 'fast 1st call' includes tracing (once per model: "
          "later batch sizes reuse it). original = the Fast PixelCNN++ README chart (K40 GPU). "
          "The CPU may be shared with other work: compare numbers within one run.")


if __name__ == "__main__":
    main()
