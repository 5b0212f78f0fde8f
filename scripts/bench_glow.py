"""Glow speed, memory and stability benchmark (not a test; prints numbers measured in this one run).

  python scripts/bench_glow.py                         # speed (eager-graph vs XLA), TFP if installed, memory
  python scripts/bench_glow.py --only speed --steps 5  # quick look
  python scripts/bench_glow.py --only speed --modes graph --rounds 5   # ours vs TFP, graph mode
  python scripts/bench_glow.py --stability_steps 2000  # + long run at lr 1e-3 with linear warmup
  python scripts/bench_glow.py --only speed --modes graph,graph-bf16 --skip_tfp   # bf16 / fp32

Default model: 32x32x3, n_levels 3, depth 32, width 400, affine coupling, LU 1x1 conv, learntop,
batch 8, trained on random 32x32 crops of skimage's real photos (astronaut, chelsea, coffee, rocket).
Speed: training img/s (loss + gradient + the trainer's Adamax update) and log-likelihood img/s, each
as a tf.function with and without jit_compile, for this Glow and (when tensorflow_probability is
installed) TFP's tfb.Glow of the same size with the same optimizer, timed in interleaved rounds with
the median ratio printed; mode graph-bf16 is ours under the bf16 policy (trainer/precision.py: the
coupling networks in bfloat16), against ours in graph mode. Memory: peak RSS of a fresh process doing init + training steps, with and
without gradient checkpointing (each mode in its own subprocess so the peaks do not mix).
"""
import argparse
import json
import os
import resource
import subprocess
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np
import skimage.data
import tensorflow as tf

from data.progress import progress
from glow.model import Glow, GlowConfig
from trainer import optim, precision


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--image_size", type=int, default=32)
    p.add_argument("--n_levels", type=int, default=3)
    p.add_argument("--depth", type=int, default=32)
    p.add_argument("--width", type=int, default=400)
    p.add_argument("--flow_coupling", type=int, default=1)
    p.add_argument("--flow_permutation", type=int, default=3)
    p.add_argument("--batch_size", type=int, default=8)
    p.add_argument("--steps", type=int, default=20, help="timed steps per measurement")
    p.add_argument("--rounds", type=int, default=3, help="interleaved timing rounds (speed)")
    p.add_argument("--modes", default="graph,xla",
                   help="comma list of graph (tf.function), xla (jit_compile), graph-bf16 (ours "
                        "under the bf16 policy)")
    p.add_argument("--skip_tfp", action="store_true", help="do not time TFP's tfb.Glow")
    p.add_argument("--only", choices=["speed", "memory", "none"], default=None,
                   help="run only this part (none: only the stability run)")
    p.add_argument("--stability_steps", type=int, default=0, help="long run: steps at --lr with warmup")
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--warmup_steps", type=int, default=200)
    p.add_argument("--memory_child", type=int, choices=[0, 1], default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if not set(args.modes.split(",")) <= {"graph", "xla", "graph-bf16"}:
        p.error(f"--modes {args.modes!r}: a comma list of graph, xla, graph-bf16")
    return args


def photo_crops(n, size, seed):
    """n random size x size crops of real photos (uint8)."""
    photos = [skimage.data.astronaut(), skimage.data.chelsea(), skimage.data.coffee(), skimage.data.rocket()]
    rng = np.random.default_rng(seed)
    crops = []
    for _ in range(n):
        photo = photos[rng.integers(len(photos))]
        top, left = rng.integers(0, photo.shape[0] - size), rng.integers(0, photo.shape[1] - size)
        crops.append(photo[top:top + size, left:left + size])
    return np.stack(crops)


def make_model(args, gradient_checkpointing=False):
    config = GlowConfig(image_shape=(args.image_size, args.image_size, 3), n_levels=args.n_levels,
                        depth=args.depth, width=args.width, flow_permutation=args.flow_permutation,
                        flow_coupling=args.flow_coupling, learntop=True,
                        gradient_checkpointing=gradient_checkpointing)
    model = Glow(config)
    model.initialize(photo_crops(4 * args.batch_size, args.image_size, seed=0), seed=0)
    return model


class TrainerAdamax:
    """The trainer's optimizer for Glow (openai/glow's Adamax, trainer/optim.py), with the learning
    rate given per call (the stability run warms it up)."""

    def __init__(self, variables):
        self.variables = variables
        self.learning_rate = tf.Variable(0.0, trainable=False)
        self.optimizer = optim.Adamax(variables, lambda step: self.learning_rate, beta2=0.999)

    def apply(self, gradients, lr):
        self.learning_rate.assign(lr)
        self.optimizer.apply(gradients, self.variables)


def glow_steps(model, jit):
    optimizer = TrainerAdamax(model.trainable_variables)

    @tf.function(jit_compile=jit)
    def train_step(x, seed, lr):
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean(model.loss(x, seed=seed, training=True)[0])
        optimizer.apply(tape.gradient(loss, model.trainable_variables), lr)
        return loss

    @tf.function(jit_compile=jit)
    def likelihood(x, seed):
        return model.bits_per_dim(x, seed=seed)

    return train_step, likelihood


def images_per_second(fn, batches, steps):
    """Timed images/s of `steps` calls fn(i, batch) (call it once untimed first: tracing)."""
    start = time.perf_counter()
    for i in range(steps):
        out = fn(i, batches[i % len(batches)])
    float(tf.reduce_mean(out))  # wait for the last step
    return steps * batches[0].shape[0] / (time.perf_counter() - start)


def tfp_steps(args, batches):
    """TFP's tfb.Glow at the same size: (train_step(x, seed, lr), likelihood(x, seed)) builders
    per jit mode, or None when tensorflow_probability is not importable."""
    try:
        import tensorflow_probability as tfp
    except ImportError:
        print("  TFP tfb.Glow comparison skipped: tensorflow_probability is not importable")
        return None
    tfb, tfd = tfp.bijectors, tfp.distributions
    shape = (args.image_size, args.image_size, 3)
    bijector = tfb.Glow(output_shape=shape, num_glow_blocks=args.n_levels, num_steps_per_block=args.depth,
                        coupling_bijector_fn=lambda s: tfb.GlowDefaultNetwork(s, num_hidden=args.width),
                        exit_bijector_fn=tfb.GlowDefaultExitNetwork, seed=0)
    z_shape = bijector.inverse_event_shape(shape)
    flow = tfd.TransformedDistribution(tfd.Sample(tfd.Normal(0.0, 1.0), z_shape), bijector)
    n_bins, dims = 256.0, float(np.prod(shape))

    def bits(x, seed):
        x = tf.cast(x, tf.float32) / n_bins - 0.5
        x += tf.random.stateless_uniform(tf.shape(x), seed, 0.0, 1.0 / n_bins)
        return -(flow.log_prob(x) - dims * np.log(n_bins)) / (np.log(2.0) * dims)

    bits(batches[0], tf.constant([0, 0]))  # builds the variables (actnorm inits on this first call)
    params = sum(int(np.prod(v.shape)) for v in bijector.trainable_variables)
    print(f"TFP tfb.Glow: {params:,} parameters")

    def steps(jit):
        optimizer = TrainerAdamax(bijector.trainable_variables)

        @tf.function(jit_compile=jit)
        def train_step(x, seed, lr):
            with tf.GradientTape() as tape:
                loss = tf.reduce_mean(bits(x, seed))
            optimizer.apply(tape.gradient(loss, bijector.trainable_variables), lr)
            return loss

        return train_step, tf.function(bits, jit_compile=jit)

    return steps


def bench_speed(args):
    """Every (model, mode) is traced/compiled once and called once more after all are compiled, then
    timed in `rounds` interleaved rounds, so drifting machine load hits all of them alike; per-round
    ratios and their median are printed."""
    batches = [photo_crops(args.batch_size, args.image_size, seed=s) for s in range(1, 5)]
    model = make_model(args)
    print(f"glow: {model.num_parameters():,} parameters, batch {args.batch_size}, {args.steps} timed "
          f"steps x {args.rounds} rounds")
    low_precision = precision.apply(make_model(args), "bf16")  # the same initial weights
    builders = {"ours": lambda mode: glow_steps(low_precision if mode == "graph-bf16" else model,
                                                mode == "xla")}
    tfp_builder = None if args.skip_tfp else tfp_steps(args, batches)
    if tfp_builder:
        builders["tfp"] = lambda mode: tfp_builder(mode == "xla")
    lr = tf.constant(1e-4)
    calls = {}
    for name, build in builders.items():
        for mode in args.modes.split(","):
            if name == "tfp" and mode == "graph-bf16":
                continue
            train_step, likelihood = build(mode)
            train = lambda i, x, f=train_step: f(x, tf.constant([i, 0]), lr)
            ll = lambda i, x, f=likelihood: f(x, tf.constant([i, 0]))
            started = time.perf_counter()
            try:
                train(0, batches[0]), ll(0, batches[0])
            except (tf.errors.OpError, ValueError) as e:  # XLA may lack a kernel on some backends
                print(f"  {name} {mode}: failed: {str(e).splitlines()[0]}")
                continue
            print(f"  {name} {mode}: first calls (tracing/compiling) {time.perf_counter() - started:.1f} s",
                  flush=True)
            calls[name, mode] = (train, ll)
    # One more untimed call of each, now that all are compiled: the first call after compiling
    # another model ran slow (cold caches and allocator), which skewed round 1.
    for train, ll in calls.values():
        float(train(0, batches[0])), float(tf.reduce_mean(ll(0, batches[0])))
    rates = {key: [] for key in calls}
    for r in range(args.rounds):
        for key, (train, ll) in calls.items():
            rates[key].append((images_per_second(train, batches, args.steps),
                               images_per_second(ll, batches, args.steps)))
            print(f"  round {r + 1} {key[0]:4} {key[1]:5}  train {rates[key][-1][0]:7.2f} img/s   "
                  f"log-likelihood {rates[key][-1][1]:7.2f} img/s", flush=True)
    print("median over rounds:")
    for key, values in rates.items():
        print(f"  {key[0]:4} {key[1]:5}  train {np.median([v[0] for v in values]):7.2f} img/s   "
              f"log-likelihood {np.median([v[1] for v in values]):7.2f} img/s")
    if ("ours", "graph-bf16") in rates and ("ours", "graph") in rates:
        ratios = [[b[k] / f[k] for b, f in zip(rates["ours", "graph-bf16"], rates["ours", "graph"])]
                  for k in (0, 1)]
        print(f"  ours bf16 / fp32 (graph): train x{np.median(ratios[0]):.2f} (rounds "
              f"{', '.join(f'{v:.2f}' for v in ratios[0])}), log-likelihood "
              f"x{np.median(ratios[1]):.2f}")
    for mode in args.modes.split(","):
        for ours_mode in args.modes.split(","):
            if ("ours", ours_mode) in rates and ("tfp", mode) in rates:
                ratios = [[o[k] / t[k] for o, t in zip(rates["ours", ours_mode], rates["tfp", mode])]
                          for k in (0, 1)]
                print(f"  ours {ours_mode} / TFP {mode}: train x{np.median(ratios[0]):.2f} "
                      f"(rounds {', '.join(f'{v:.2f}' for v in ratios[0])}), log-likelihood "
                      f"x{np.median(ratios[1]):.2f}")


def memory_child(args, checkpointing):
    """Runs in a fresh process: peak RSS after building + init, and after a few training steps."""
    model = make_model(args, gradient_checkpointing=bool(checkpointing))
    train_step, _ = glow_steps(model, jit=False)
    built = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    x = photo_crops(args.batch_size, args.image_size, seed=1)
    for i in range(3):
        train_step(x, tf.constant([i, 0]), tf.constant(1e-4))
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"built_mib": built, "peak_mib": peak}))


def bench_memory(args):
    peaks = {}
    for checkpointing in (0, 1):
        command = [sys.executable, os.path.abspath(__file__), "--memory_child", str(checkpointing)]
        command += [f"--{k}={getattr(args, k)}" for k in ("image_size", "n_levels", "depth", "width",
                                                            "flow_coupling", "flow_permutation", "batch_size")]
        out = subprocess.run(command, capture_output=True, text=True)
        if out.returncode:
            print(f"  memory run (gradient_checkpointing={checkpointing}) failed:\n{out.stderr[-2000:]}")
            return
        peaks[checkpointing] = json.loads(out.stdout.strip().splitlines()[-1])
        p = peaks[checkpointing]
        print(f"  gradient_checkpointing={checkpointing}: peak RSS {p['peak_mib']:8.0f} MiB "
              f"(after build+init {p['built_mib']:.0f} MiB; training adds {p['peak_mib'] - p['built_mib']:.0f} MiB)")
    added = [peaks[c]["peak_mib"] - peaks[c]["built_mib"] for c in (0, 1)]
    print(f"  checkpointing / plain: peak RSS x{peaks[1]['peak_mib'] / peaks[0]['peak_mib']:.2f}, "
          f"training memory x{added[1] / max(added[0], 1.0):.2f}")


def bench_stability(args):
    """N steps at --lr with linear warmup on real photo crops; stops at the first non-finite loss or sample."""
    model = make_model(args)
    train_step, likelihood = glow_steps(model, jit=False)
    pool = photo_crops(4096, args.image_size, seed=7)
    held_out = photo_crops(64, args.image_size, seed=8)
    print(f"stability: {args.stability_steps} steps, lr {args.lr} (linear warmup {args.warmup_steps} steps)")
    rng = np.random.default_rng(0)
    bar = progress(range(args.stability_steps), desc="stability", unit="steps")
    for step in bar:
        lr = args.lr * min(1.0, (step + 1) / args.warmup_steps)
        x = pool[rng.integers(0, len(pool), args.batch_size)]
        loss = float(train_step(x, tf.constant([step, 1]), tf.constant(lr, tf.float32)))
        if not np.isfinite(loss):
            print(f"  NON-FINITE loss at step {step}")
            return
        bar.set_postfix({"bits_per_dim": f"{loss:.3f}"})
        if (step + 1) % 500 == 0 or step + 1 == args.stability_steps:
            test_bits = float(tf.reduce_mean(likelihood(held_out, tf.constant([0, 2]))))
            samples = model.reverse([e * 0.7 for e in model.encode(held_out[:8])])
            drawn = model.sample(8, temperature=0.7, seed=step)
            finite = np.all(np.isfinite(samples)) and np.all(np.isfinite(test_bits))
            bar.write(f"  step {step + 1}: train {loss:.3f} bits/dim, held-out {test_bits:.3f} bits/dim, "
                      f"T=0.7 samples finite: {finite}, sample std {np.std(drawn.numpy()):.1f}")
            if not finite:
                print("  NON-FINITE held-out bits/dim or sample")
                return
    print("  stability run finished with finite losses and samples")


def main(argv=None):
    args = parse_args(argv)
    if args.memory_child is not None:
        return memory_child(args, args.memory_child)
    print(f"TensorFlow {tf.__version__}, devices: {[d.device_type for d in tf.config.list_logical_devices()]}")
    if args.only in (None, "speed"):
        bench_speed(args)
    if args.only in (None, "memory"):
        print("memory (peak RSS of a fresh process, build + init + 3 train steps):")
        bench_memory(args)
    if args.stability_steps:
        bench_stability(args)


if __name__ == "__main__":
    main()
