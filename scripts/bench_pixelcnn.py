"""Throughput of PixelCNN++ training steps and log-likelihood evaluation, with and without XLA.

For each configuration (the default 53.7M-parameter model and a mid-sized one) this measures,
in one process, images/s of
  * a training step: loss with dropout, gradients, an Adam update (hand-written, as the trainer's);
  * log-likelihood evaluation: per-image NLL without dropout;
once as a plain tf.function and once with jit_compile=True, and prints the XLA/plain ratios.
When tensorflow_probability and tf_keras import, TFP's tfd.PixelCNN at its paper configuration
(5 resnets, 3 hierarchies, 160 filters, 10 mixtures, dropout 0.5) is timed alongside.
Peak resident memory of the process is printed at the end. --memory instead compares peak
memory fairly: ours (default configuration, graph mode, as the trainer runs it) and TFP each run
the same steps in a fresh process of their own, and their peak RSS are printed side by side.

    python scripts/bench_pixelcnn.py --iterations 5 --batch_size 8
    python scripts/bench_pixelcnn.py --memory
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

CONFIGS = {
    "default": dict(nr_resnet=5, nr_filters=160, nr_logistic_mix=10),
    "mid": dict(nr_resnet=2, nr_filters=64, nr_logistic_mix=10),
}


def make_train_step(loss_fn, variables, jit_compile, learning_rate=1e-3, beta1=0.95, beta2=0.9995):
    """A tf.function step: mean loss, gradients, Adam update (openai/pixel-cnn moments)."""
    first = [tf.Variable(tf.zeros_like(v), trainable=False) for v in variables]
    second = [tf.Variable(tf.zeros_like(v), trainable=False) for v in variables]
    step = tf.Variable(0.0, trainable=False)

    @tf.function(jit_compile=jit_compile)
    def train_step(x, seed):
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean(loss_fn(x, seed))
        step.assign_add(1.0)
        for v, m, s, g in zip(variables, first, second, tape.gradient(loss, variables)):
            m.assign(beta1 * m + (1 - beta1) * g)
            s.assign(beta2 * s + (1 - beta2) * tf.square(g))
            v.assign_sub(learning_rate * (m / (1 - beta1 ** step)) / tf.sqrt(s / (1 - beta2 ** step) + 1e-8))
        return loss

    return train_step


def images_per_second(fn, args_for_step, batch_size, warmup, iterations):
    """Runs fn warmup times (compilation included there), then times `iterations` calls."""
    start = time.perf_counter()
    for k in range(warmup):
        fn(*args_for_step(k)).numpy()
    first_calls = time.perf_counter() - start
    start = time.perf_counter()
    for k in range(iterations):
        fn(*args_for_step(warmup + k)).numpy()
    return batch_size * iterations / (time.perf_counter() - start), first_calls


def bench_ours(name, batch_size, warmup, iterations, jit_modes):
    config = PixelCNNConfig(image_shape=(32, 32, 3), **CONFIGS[name])
    model = PixelCNNPP(config)
    rng = np.random.default_rng(0)
    x = to_model_input(rng.integers(0, 256, (batch_size, 32, 32, 3), dtype=np.uint8))
    model.initialize(x, seed=[0, 0])
    print(f"\n[{name}] nr_resnet={config.nr_resnet} nr_filters={config.nr_filters} "
          f"nr_logistic_mix={config.nr_logistic_mix} params={model.num_parameters():,} batch={batch_size}")
    results = {}
    for jit in jit_modes:
        train_step = make_train_step(lambda images, seed: model.loss(images, training=True, seed=seed),
                                     model.trainable_variables, jit)
        log_likelihood = tf.function(lambda images: model.loss(images), jit_compile=jit)
        train, train_first = images_per_second(
            train_step, lambda k: (x, tf.constant([k, 0])), batch_size, warmup, iterations)
        evaluate, eval_first = images_per_second(
            log_likelihood, lambda k: (x,), batch_size, warmup, iterations)
        results[jit] = (train, evaluate)
        print(f"  jit_compile={jit!s:5}  train {train:8.2f} img/s   log-likelihood {evaluate:8.2f} img/s"
              f"   (first {warmup} calls incl. compile: train {train_first:.1f}s, eval {eval_first:.1f}s)")
    if len(results) == 2:
        print(f"  ratio XLA/plain: train {results[True][0] / results[False][0]:.2f}x, "
              f"log-likelihood {results[True][1] / results[False][1]:.2f}x")
    return results


def bench_tfp(batch_size, warmup, iterations, ours):
    try:
        import tensorflow_probability as tfp
        import tf_keras  # noqa: F401  (TFP's PixelCNN is built from tf_keras layers)
    except ImportError as error:
        print(f"\n[tfp] skipped: {error}. Install tensorflow-probability and tf-keras to compare.")
        return
    dist = tfp.distributions.PixelCNN(image_shape=(32, 32, 3), num_resnet=5, num_hierarchies=3,
                                      num_filters=160, num_logistic_mix=10, dropout_p=0.5)
    rng = np.random.default_rng(0)
    x = tf.constant(rng.integers(0, 256, (batch_size, 32, 32, 3)).astype(np.float32))
    dist.log_prob(x)  # builds the network's variables
    variables = dist.network.trainable_variables
    params = sum(int(v.shape.num_elements()) for v in variables)
    print(f"\n[tfp] tfd.PixelCNN paper configuration params={params:,} batch={batch_size} (no XLA)")
    train_step = make_train_step(lambda images, seed: -dist.log_prob(images, training=True), variables, False)
    log_likelihood = tf.function(lambda images: dist.log_prob(images))
    train, _ = images_per_second(train_step, lambda k: (x, tf.constant([k, 0])), batch_size, warmup, iterations)
    evaluate, _ = images_per_second(log_likelihood, lambda k: (x,), batch_size, warmup, iterations)
    print(f"  train {train:8.2f} img/s   log-likelihood {evaluate:8.2f} img/s")
    if ours is None or False not in ours:
        return
    print(f"  ratio ours(default, plain)/tfp: train {ours[False][0] / train:.2f}x, "
          f"log-likelihood {ours[False][1] / evaluate:.2f}x")


def peak_rss_mib():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # ru_maxrss is KiB on Linux


def compare_memory(args):
    """Peak RSS of ours (default, graph mode) and of TFP, each alone in a fresh process."""
    common = [sys.executable, os.path.abspath(__file__), "--batch_size", str(args.batch_size),
              "--iterations", str(args.iterations), "--warmup", str(args.warmup)]
    runs = {"ours (default, graph mode)": ["--configs", "default", "--jit", "0", "--skip_tfp"],
            "TFP tfd.PixelCNN (paper configuration)": ["--skip_ours"]}
    peaks = {}
    for name, extra in runs.items():
        print(f"\n== {name}: {' '.join(extra)}", flush=True)
        output = subprocess.run(common + extra, stdout=subprocess.PIPE, text=True, check=True).stdout
        print(output.strip())
        if "[tfp] skipped" in output:
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
    parser.add_argument("--configs", default="default,mid", help=f"comma list of {sorted(CONFIGS)}")
    parser.add_argument("--jit", choices=["0", "1", "both"], default="both",
                        help="our models in graph mode (0), with XLA (1) or both")
    parser.add_argument("--skip_tfp", action="store_true", help="do not time tfd.PixelCNN")
    parser.add_argument("--skip_ours", action="store_true", help="time tfd.PixelCNN alone")
    parser.add_argument("--memory", action="store_true",
                        help="peak memory of ours and of TFP, each in a fresh process")
    args = parser.parse_args()
    names = args.configs.split(",")
    unknown = [n for n in names if n not in CONFIGS]
    if unknown or args.batch_size < 1 or args.iterations < 1 or args.warmup < 1:
        parser.error(f"unknown configs {unknown}; choose from {sorted(CONFIGS)}" if unknown
                     else "batch_size, iterations and warmup must be >= 1")
    if args.skip_ours and args.skip_tfp:
        parser.error("--skip_ours and --skip_tfp together leave nothing to measure")
    if args.memory:
        compare_memory(args)
        return
    print(f"TensorFlow {tf.__version__}, devices: {[d.name for d in tf.config.list_logical_devices()]}")
    jit_modes = {"0": (False,), "1": (True,), "both": (False, True)}[args.jit]
    results = {} if args.skip_ours else {
        name: bench_ours(name, args.batch_size, args.warmup, args.iterations, jit_modes)
        for name in names}
    if not args.skip_tfp:
        bench_tfp(args.batch_size, args.warmup, args.iterations, results.get("default"))
    print(f"\npeak RSS: {peak_rss_mib():,.0f} MiB")


if __name__ == "__main__":
    main()
