"""Where a training step spends its time, per op type, under each precision policy.

Traces --steps training steps with TensorFlow's profiler, once per policy: PixelCNN++ (loss with
dropout, gradients, the trainer's Adam update: the step scripts/bench_pixelcnn.py times) or Glow
(the step scripts/bench_glow.py times, at its default L=3, K=32, width 400, affine, LU), or, as
the "step", one call of the fast sampler on the default PixelCNN++ (32x32). Prints for
each policy the op types that take the most time, as milliseconds per step (summed over threads)
and as a share of the step, side by side, then the convolutions' and matmuls' share against
everything else (element-wise ops, data movement), which bfloat16 does not make faster on a CPU.

    python3 scripts/profile_step.py --model pixelcnn --policies fp32,bf16 --steps 2
    python3 scripts/profile_step.py --model glow --policies fp32,bf16 --steps 3
    python3 scripts/profile_step.py --model fast_sampler --batch_size 16 --steps 1
"""
import argparse
import collections
import glob
import os
import sys
import tempfile

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from tensorflow.tsl.profiler.protobuf import xplane_pb2  # noqa: E402

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO_ROOT)
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import bench_glow  # noqa: E402
from bench_pixelcnn import CONFIGS, make_train_step  # noqa: E402
from data.pixels import to_model_input  # noqa: E402
from fast_generation import sample_fast  # noqa: E402
from pixel_cnn_pp.model import PixelCNNConfig, PixelCNNPP  # noqa: E402
from trainer import precision  # noqa: E402


# events that enclose ops or run inside them (function calls, " __inference_...", are skipped too)
NOT_OPS = ("Process", "Run", "ParallelFor")


def op_times(logdir):
    """{op type: total microseconds} of the TF ops in the newest trace under logdir. Ops run on
    the executor's threads of the host plane; each event's metadata name is "name:Type"."""
    path = sorted(glob.glob(os.path.join(logdir, "plugins", "profile", "*", "*.xplane.pb")))[-1]
    space = xplane_pb2.XSpace()
    with open(path, "rb") as handle:
        space.ParseFromString(handle.read())
    totals = collections.Counter()
    for plane in space.planes:
        if not plane.name.startswith("/host:CPU"):
            continue
        names = {key: meta.name for key, meta in plane.event_metadata.items()}
        for line in plane.lines:
            for event in line.events:
                _, colon, op_type = names.get(event.metadata_id, "").rpartition(":")
                if colon and op_type not in NOT_OPS and not op_type.startswith((" ", "__")):
                    totals[op_type] += event.duration_ps / 1e6
    return totals


def pixelcnn_step(policy, batch_size):
    """A call k -> loss of the default PixelCNN++'s training step under the policy."""
    config = PixelCNNConfig(image_shape=(32, 32, 3), **CONFIGS["default"])
    x = to_model_input(np.random.default_rng(0).integers(0, 256, (batch_size, 32, 32, 3),
                                                         dtype=np.uint8))
    tf.random.set_seed(0)
    model = precision.apply(PixelCNNPP(config), policy)
    model.initialize(x, seed=[0, 0])
    step = make_train_step(lambda images, seed: model.loss(images, training=True, seed=seed),
                           model.trainable_variables, False)
    return lambda k: step(x, tf.constant([k, 0]))


def glow_step(policy, batch_size):
    """A call k -> loss of bench_glow.py's default Glow training step under the policy."""
    args = bench_glow.parse_args(["--batch_size", str(batch_size)])
    tf.random.set_seed(0)
    model = precision.apply(bench_glow.make_model(args), policy)
    step, _ = bench_glow.glow_steps(model, jit=False)
    x = bench_glow.photo_crops(batch_size, args.image_size, seed=1)
    return lambda k: step(x, tf.constant([k, 0]), tf.constant(1e-4))


def fast_sampler_call(policy, batch_size):
    """A call k -> samples of the cached sampler on the default PixelCNN++ (seed k)."""
    config = PixelCNNConfig(image_shape=(32, 32, 3), **CONFIGS["default"])
    x = to_model_input(np.random.default_rng(0).integers(0, 256, (4, 32, 32, 3), dtype=np.uint8))
    tf.random.set_seed(0)
    model = precision.apply(PixelCNNPP(config), policy)
    model.initialize(x, seed=[0, 0])
    return lambda k: sample_fast(model, batch_size, seed=[k, 0])


STEPS = {"pixelcnn": pixelcnn_step, "glow": glow_step, "fast_sampler": fast_sampler_call}


def profile(model_name, policy, batch_size, steps):
    """{op type: milliseconds per step} of `steps` profiled training steps."""
    step = STEPS[model_name](policy, batch_size)
    for k in range(2):  # trace and warm up outside the profile
        step(k).numpy()
    with tempfile.TemporaryDirectory(prefix=f"profile_{model_name}_{policy}_") as logdir:
        tf.profiler.experimental.start(logdir)
        for k in range(steps):
            step(k + 2).numpy()
        tf.profiler.experimental.stop()
        return {op: micros / steps / 1000 for op, micros in op_times(logdir).items()}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="pixelcnn", choices=sorted(STEPS))
    parser.add_argument("--policies", default="fp32,bf16")
    parser.add_argument("--batch_size", type=int, default=8)
    parser.add_argument("--steps", type=int, default=3, help="profiled steps per policy")
    parser.add_argument("--top", type=int, default=15, help="op types to list")
    args = parser.parse_args()
    policies = args.policies.split(",")
    per_policy = {policy: profile(args.model, policy, args.batch_size, args.steps)
                  for policy in policies}
    totals = {policy: sum(times.values()) for policy, times in per_policy.items()}
    first = policies[0]
    order = sorted(set().union(*per_policy.values()),
                   key=lambda op: -max(times.get(op, 0.0) for times in per_policy.values()))
    print(f"{args.model}, batch {args.batch_size}, op time per step "
          f"(sum over threads, {args.steps} profiled steps)")
    print(f"{'op type':28}" + "".join(f"{policy + ' ms':>12}{'share':>8}" for policy in policies))
    for op in order[:args.top]:
        cells = "".join(f"{per_policy[p].get(op, 0.0):12.1f}"
                        f"{per_policy[p].get(op, 0.0) / totals[p]:8.1%}" for p in policies)
        print(f"{op:28}{cells}")
    print(f"{'all ops':28}" + "".join(f"{totals[p]:12.1f}{1:8.0%}" for p in policies))
    dense = {p: sum(ms for op, ms in times.items() if "Conv2D" in op or "MatMul" in op)
             for p, times in per_policy.items()}
    print(f"{'convolutions and matmuls':28}" + "".join(
        f"{dense[p]:12.1f}{dense[p] / totals[p]:8.1%}" for p in policies))
    print(f"{'everything else':28}" + "".join(
        f"{totals[p] - dense[p]:12.1f}{1 - dense[p] / totals[p]:8.1%}" for p in policies))
    for policy in policies[1:]:
        print(f"{policy} / {first}: all ops x{totals[first] / totals[policy]:.2f}, convolutions "
              f"and matmuls x{dense[first] / dense[policy]:.2f}, everything else "
              f"x{(totals[first] - dense[first]) / (totals[policy] - dense[policy]):.2f}")


if __name__ == "__main__":
    main()
