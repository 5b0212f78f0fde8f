"""Throughput of PixelCNN++ training steps and log-likelihood evaluation, with and without XLA.

For each configuration (the default 53.7M-parameter model, a mid-sized one, and the default
without dropout, which shows what dropout costs) this measures, in one process, images/s of
  * a training step: loss with dropout, gradients, the trainer's Adam update (trainer/optim.py);
  * log-likelihood evaluation: per-image NLL without dropout;
once as a plain tf.function and once with jit_compile=True, and prints the XLA/plain ratios;
with --precisions fp32,bf16 also under the bf16 policy (trainer/precision.py; its own model with
the same weights), with the bf16/fp32 ratios.
When tensorflow_probability and tf_keras import, TFP's tfd.PixelCNN at its paper configuration
(5 resnets, 3 hierarchies, 160 filters, 10 mixtures, dropout 0.5) is timed alongside (with bf16
among --precisions, also under tf_keras's mixed_bfloat16 policy, or one line says why it fails).
All steps are compiled first, then timed in --rounds interleaved rounds (medians and the per-round
ours/TFP ratios are printed), so a change of machine load affects every candidate alike.
Peak resident memory of the process is printed at the end. --memory instead compares peak
memory fairly: ours (default configuration, graph mode, as the trainer runs it) and TFP each run
the same steps in a fresh process of their own, and their peak RSS are printed side by side.

    python scripts/bench_pixelcnn.py --iterations 5 --batch_size 8
    python scripts/bench_pixelcnn.py --memory
    python scripts/bench_pixelcnn.py --configs default --jit 0 --precisions fp32,bf16
"""
import argparse
import os
import re
import resource
import subprocess
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from pixel_cnn_pp.model import PixelCNNConfig, PixelCNNPP, to_model_input  # noqa: E402
from trainer import optim, precision  # noqa: E402

CONFIGS = {
    "default": dict(nr_resnet=5, nr_filters=160, nr_logistic_mix=10),
    "mid": dict(nr_resnet=2, nr_filters=64, nr_logistic_mix=10),
    "nodropout": dict(nr_resnet=5, nr_filters=160, nr_logistic_mix=10, dropout_p=0.0),  # dropout's cost
}


def make_train_step(loss_fn, variables, jit_compile, learning_rate=1e-3):
    """A tf.function step: mean loss, gradients, the trainer's Adam update (openai/pixel-cnn's)."""
    optimizer = optim.Adam(variables, learning_rate)

    @tf.function(jit_compile=jit_compile)
    def train_step(x, seed):
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean(loss_fn(x, seed))
        optimizer.apply(tape.gradient(loss, variables), variables)
        return loss

    return train_step


def images_per_second(fn, args_for_step, batch_size, iterations):
    """Timed images/s of `iterations` calls fn(*args_for_step(k))."""
    start = time.perf_counter()
    for k in range(iterations):
        fn(*args_for_step(k)).numpy()
    return batch_size * iterations / (time.perf_counter() - start)


def mode_name(jit, policy):
    return ("xla" if jit else "graph") + ("" if policy == "fp32" else f"-{policy}")


def ours_steps(name, batch_size, jit_modes, policies=("fp32",)):
    """{(name, mode): (train_step, log_likelihood, x)} for one of our configurations, a model
    per precision policy (the same initial weights)."""
    config = PixelCNNConfig(image_shape=(32, 32, 3), **CONFIGS[name])
    rng = np.random.default_rng(0)
    x = to_model_input(rng.integers(0, 256, (batch_size, 32, 32, 3), dtype=np.uint8))
    steps = {}
    for policy in policies:
        tf.random.set_seed(0)
        model = precision.apply(PixelCNNPP(config), policy)
        model.initialize(x, seed=[0, 0])
        print(f"[{name} {policy}] nr_resnet={config.nr_resnet} nr_filters={config.nr_filters} "
              f"nr_logistic_mix={config.nr_logistic_mix} dropout_p={config.dropout_p} "
              f"params={model.num_parameters():,}")
        for jit in jit_modes:
            train_step = make_train_step(
                lambda images, seed, model=model: model.loss(images, training=True, seed=seed),
                model.trainable_variables, jit)
            log_likelihood = tf.function(lambda images, model=model: model.loss(images),
                                         jit_compile=jit)
            steps[name, mode_name(jit, policy)] = (train_step, log_likelihood, x)
    return steps


def tfp_steps(batch_size, mixed_bfloat16=False):
    """{("tfp", "graph"): (train_step, log_likelihood, x)} for tfd.PixelCNN, or {} without TFP;
    with mixed_bfloat16 also ("tfp", "graph-bf16") under tf_keras's mixed_bfloat16 policy when
    TFP's layers run under it (if not, one line says why)."""
    try:
        import tensorflow_probability as tfp
        import tf_keras  # (TFP's PixelCNN is built from tf_keras layers)
    except ImportError as error:
        print(f"[tfp] skipped: {error}. Install tensorflow-probability and tf-keras to compare.")
        return {}
    rng = np.random.default_rng(0)
    x = tf.constant(rng.integers(0, 256, (batch_size, 32, 32, 3)).astype(np.float32))
    steps = {}
    for mode, policy in (("graph", "float32"), ("graph-bf16", "mixed_bfloat16")):
        if policy != "float32" and not mixed_bfloat16:
            continue
        tf_keras.mixed_precision.set_global_policy(policy)
        try:
            dist = tfp.distributions.PixelCNN(image_shape=(32, 32, 3), num_resnet=5,
                                              num_hierarchies=3, num_filters=160,
                                              num_logistic_mix=10, dropout_p=0.5)
            dist.log_prob(x)  # builds the network's variables
        except (TypeError, ValueError) as error:
            lines = [line.strip() for line in str(error).splitlines() if line.strip()]
            print(f"[tfp {policy}] does not run: {' '.join(lines[:2])}")
            continue
        finally:
            tf_keras.mixed_precision.set_global_policy("float32")
        variables = dist.network.trainable_variables
        params = sum(int(v.shape.num_elements()) for v in variables)
        print(f"[tfp {policy}] tfd.PixelCNN paper configuration params={params:,} (no XLA)")
        train_step = make_train_step(
            lambda images, seed, dist=dist: -dist.log_prob(images, training=True), variables, False)
        log_likelihood = tf.function(lambda images, dist=dist: dist.log_prob(images))
        steps["tfp", mode] = (train_step, log_likelihood, x)
    return steps


def bench(args, names, jit_modes):
    """Every step is traced/compiled by `warmup` untimed calls and called once more after all are
    compiled; then all are timed in `rounds` interleaved rounds, so drifting machine load hits them
    alike; medians and per-round ratios."""
    steps = {}
    if not args.skip_ours:
        for name in names:
            steps.update(ours_steps(name, args.batch_size, jit_modes, args.precisions))
    if not args.skip_tfp:
        steps.update(tfp_steps(args.batch_size, mixed_bfloat16="bf16" in args.precisions))
    calls = {}
    for key, (train_step, log_likelihood, x) in steps.items():
        train = (train_step, lambda k, x=x: (x, tf.constant([k, 0])))
        evaluate = (log_likelihood, lambda k, x=x: (x,))
        started = time.perf_counter()
        for k in range(args.warmup):
            train[0](*train[1](k)).numpy()
            evaluate[0](*evaluate[1](k)).numpy()
        print(f"  {key[0]} {key[1]}: first {args.warmup} train + log-likelihood calls (tracing, "
              f"compiling) {time.perf_counter() - started:.1f} s", flush=True)
        calls[key] = (train, evaluate)
    # One more untimed call of each, now that all are compiled: the first call after compiling
    # another model ran 5-10% slow (cold caches and allocator), which skewed round 1.
    for train, evaluate in calls.values():
        for fn, step_args in (train, evaluate):
            fn(*step_args(0)).numpy()
    rates = {key: [] for key in calls}
    for r in range(args.rounds):
        for key, (train, evaluate) in calls.items():
            rates[key].append([images_per_second(fn, step_args, args.batch_size, args.iterations)
                               for fn, step_args in (train, evaluate)])
            print(f"  round {r + 1} {key[0]:7} {key[1]:5}  train {rates[key][-1][0]:8.2f} img/s   "
                  f"log-likelihood {rates[key][-1][1]:8.2f} img/s", flush=True)
    print(f"median over {args.rounds} round(s), batch {args.batch_size}:")
    for key, values in rates.items():
        print(f"  {key[0]:7} {key[1]:5}  train {np.median([v[0] for v in values]):8.2f} img/s   "
              f"log-likelihood {np.median([v[1] for v in values]):8.2f} img/s")
    for name in names:
        if (name, "graph") in rates and (name, "xla") in rates:
            print(f"  {name} XLA / graph: train x{median_ratio(rates, (name, 'xla'), (name, 'graph'), 0):.2f}, "
                  f"log-likelihood x{median_ratio(rates, (name, 'xla'), (name, 'graph'), 1):.2f}")
    for name in names:
        for policy in args.precisions[1:]:
            low, high = (name, mode_name(False, policy)), (name, "graph")
            if low in rates and high in rates:
                per_round = [a[0] / b[0] for a, b in zip(rates[low], rates[high])]
                print(f"  {name} {policy} / fp32 (graph): train x{np.median(per_round):.2f} "
                      f"(rounds {', '.join(f'{v:.2f}' for v in per_round)}), log-likelihood "
                      f"x{median_ratio(rates, low, high, 1):.2f}")
            if low in rates and ("tfp", "graph") in rates:
                print(f"  ours ({name}, {policy}) / TFP: train "
                      f"x{median_ratio(rates, low, ('tfp', 'graph'), 0):.2f}, log-likelihood "
                      f"x{median_ratio(rates, low, ('tfp', 'graph'), 1):.2f}")
    if ("tfp", "graph-bf16") in rates and ("tfp", "graph") in rates:
        low, high = ("tfp", "graph-bf16"), ("tfp", "graph")
        print(f"  TFP mixed_bfloat16 / float32: train x{median_ratio(rates, low, high, 0):.2f}, "
              f"log-likelihood x{median_ratio(rates, low, high, 1):.2f}")
    if ("default", "graph") in rates and ("tfp", "graph") in rates:
        per_round = [o[0] / t[0] for o, t in zip(rates["default", "graph"], rates["tfp", "graph"])]
        print(f"  ours (default, graph) / TFP: train x{np.median(per_round):.2f} (rounds "
              f"{', '.join(f'{v:.2f}' for v in per_round)}), log-likelihood "
              f"x{median_ratio(rates, ('default', 'graph'), ('tfp', 'graph'), 1):.2f}")


def median_ratio(rates, numerator, denominator, column):
    return np.median([a[column] / b[column] for a, b in zip(rates[numerator], rates[denominator])])


def peak_rss_mib():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # ru_maxrss is KiB on Linux


def compare_memory(args):
    """Peak RSS of ours (default, graph mode) and of TFP, each alone in a fresh process."""
    common = [sys.executable, os.path.abspath(__file__), "--batch_size", str(args.batch_size),
              "--iterations", str(args.iterations), "--warmup", str(args.warmup), "--rounds", "1"]
    runs = {"ours (default, graph mode)": ["--configs", "default", "--jit", "0", "--skip_tfp"],
            "TFP tfd.PixelCNN (paper configuration)": ["--skip_ours"]}
    peaks = {}
    for name, extra in runs.items():
        print(f"\n== {name}: {' '.join(extra)}", flush=True)
        output = subprocess.run(common + extra, stdout=subprocess.PIPE, text=True, check=True).stdout
        print(output.strip())
        if "[tfp] skipped" in output:  # no TFP: nothing to compare with
            return
        peaks[name] = float(re.search(r"peak RSS: ([\d,.]+) MiB", output).group(1).replace(",", ""))
    (ours_name, ours), (tfp_name, tfp) = peaks.items()
    print(f"\npeak RSS, each alone: {ours_name} {ours:,.0f} MiB, {tfp_name} {tfp:,.0f} MiB; "
          f"ratio ours/TFP {ours / tfp:.2f}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--batch_size", type=int, default=8)
    parser.add_argument("--iterations", type=int, default=5, help="timed calls per measurement")
    parser.add_argument("--warmup", type=int, default=2, help="untimed calls first (tracing, compiling)")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved timing rounds")
    parser.add_argument("--configs", default="default,mid", help=f"comma list of {sorted(CONFIGS)}")
    parser.add_argument("--jit", choices=["0", "1", "both"], default="both",
                        help="our models in graph mode (0), with XLA (1) or both")
    parser.add_argument("--precisions", default="fp32",
                        help="comma list of precision policies for our models, fp32 first "
                             "(e.g. fp32,bf16)")
    parser.add_argument("--skip_tfp", action="store_true", help="do not time tfd.PixelCNN")
    parser.add_argument("--skip_ours", action="store_true", help="time tfd.PixelCNN alone")
    parser.add_argument("--memory", action="store_true",
                        help="peak memory of ours and of TFP, each in a fresh process")
    args = parser.parse_args()
    names = args.configs.split(",")
    args.precisions = args.precisions.split(",")
    if args.precisions[0] != "fp32" or not set(args.precisions) <= set(precision.POLICIES):
        parser.error(f"--precisions: a comma list of {sorted(precision.POLICIES)} starting "
                     f"with fp32")
    unknown = [n for n in names if n not in CONFIGS]
    if unknown or min(args.batch_size, args.iterations, args.warmup, args.rounds) < 1:
        parser.error(f"unknown configs {unknown}; choose from {sorted(CONFIGS)}" if unknown
                     else "batch_size, iterations, warmup and rounds must be >= 1")
    if args.skip_ours and args.skip_tfp:
        parser.error("--skip_ours and --skip_tfp together leave nothing to measure")
    if args.memory:
        compare_memory(args)
        return
    print(f"TensorFlow {tf.__version__}, devices: {[d.name for d in tf.config.list_logical_devices()]}")
    jit_modes = {"0": (False,), "1": (True,), "both": (False, True)}[args.jit]
    bench(args, names, jit_modes)
    print(f"\npeak RSS: {peak_rss_mib():,.0f} MiB")


if __name__ == "__main__":
    main()
