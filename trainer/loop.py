"""The training loop of every model family (trainer.families): devices, steps, evaluation,
samples, checkpoints, exact resume and logs, around the family's model and update.

One step: each process reads a batch of its own data shard (--batch_size per device) and the
family's train_step runs on it (trainer.families.base). The default step minimises
    loss = sum over the replica's images of bits/dim / global batch
on every replica, so the sum over replicas and processes is the mean bits/dim of the global batch
(the single-device loss): one step of P processes with batch B equals one step of one process
with batch P*B. The gradients are summed over replicas and processes (trainer.dist.Replicas), the
optimizer and then the Polyak average are applied identically everywhere. Noise is stateless:
each step has a step seed (seed, step), the same on every replica, and each replica a replica
seed (the step seed folded with its global replica id); a family draws per-replica noise
(PixelCNN++ dropout) from the latter and per-image noise (Glow dequantisation, BigGAN's z) from
the former, and a resumed run draws the same noise.

Every epoch: the mean of each loss the step returns and, for likelihood models, test bits/dim
over every test image (Polyak averages, no dropout; each process scores its shard and the results
are summed into one vector in split order). After every save_interval-th epoch and the last:
samples (PNG + raw npz) and then a checkpoint, which holds everything a resume needs: weights,
averages, optimizer moments and step (the learning rate is a function of the step) and the epoch.
The
shuffle order of an epoch depends on (seed, epoch) only, and checkpoints are written at epoch
ends, so a resumed run continues with exactly the batches the interrupted one would have seen.
With several processes, rank 0's weights are broadcast after the init and after a resume, and only
rank 0 prints, logs, samples and writes the checkpoint.
"""
import math
import os
import shutil
import tempfile
import time

import numpy as np
import tensorflow as tf
import data
from data.pipeline import shard_indices
from data.pixels import bits_per_dim
from trainer import checkpoint as ckpt
from trainer import dist
from trainer import images as image_files
from trainer.ema import ExponentialMovingAverage
from trainer.logger import progress


class ConfigError(Exception):
    """Flags that cannot work together. The message is one line."""


class NonFiniteLossError(Exception):
    """Training diverged. The message is one line."""


def step_seed(seed, step):
    """The stateless seed of global step `step`, the same on every replica and process."""
    return tf.stack([tf.constant(seed, tf.int64), tf.cast(step, tf.int64)])


def pad_batch(images, labels, size):
    """Pad a partial batch with zero images up to `size` (their results are discarded)."""
    missing = size - len(images)
    if missing == 0:
        return images, labels
    return (np.concatenate([images, np.zeros((missing,) + images.shape[1:], images.dtype)]),
            np.concatenate([labels, np.zeros([missing], labels.dtype)]))


def checked_model_config(family, args, info):
    """The family's model configuration for these flags and data; ConfigError when impossible."""
    try:
        return family.model_config(args, info)
    except ValueError as error:
        raise ConfigError(str(error)) from None


def checked_steps_per_epoch(info, global_batch, batch_of):
    """Whole global batches in the train split; ConfigError when there is not even one.
    `batch_of` says what the global batch is made of, for the message."""
    steps = info.split_sizes["train"] // global_batch
    if steps == 0:
        raise ConfigError(f"the train split of {info.name!r} has {info.split_sizes['train']} "
                          f"images, fewer than one global batch ({batch_of}); lower "
                          f"--batch_size or --nr_gpu")
    return steps


def run_config(family, args, model_config, ema_decay):
    """What a checkpoint stores about its run: enough to rebuild the model without flags."""
    return {"model": family.name, "model_config": model_config, "data_set": args.data_set,
            "ema_decay": ema_decay, "flags": dict(sorted(vars(args).items()))}



class Trainer:
    """Builds the model, optimizers, averages and checkpoint of a run for its family; `fit()`
    trains, `evaluate()` scores the test set (likelihood families)."""

    def __init__(self, family, args, strategy, processes=None):
        """`strategy`: this process's devices; `processes`: the process group from
        trainer.dist.setup (default: this process alone)."""
        self.family, self.args, self.strategy = family, args, strategy
        self.processes = processes or dist.SingleProcess()
        if self.processes.size > 1 and not family.multi_process:
            raise dist.DeviceError(f"--model {family.name} trains in one process only; launch it "
                                   f"without horovodrun or TF_CONFIG")
        if args.eval_only and not family.has_likelihood:
            raise ConfigError(f"--eval_only: {family.name} has no likelihood to evaluate; sample "
                              f"it with sample.py instead")
        self.info = data.info(args.data_set, args.data_dir, args.image_size)
        self.model_config = checked_model_config(family, args, self.info)
        self.replicas = dist.Replicas(strategy, args.batch_size, self.processes)
        self.process_batch = self.replicas.process_batch
        self.global_batch = self.replicas.global_batch
        self.steps_per_epoch = checked_steps_per_epoch(
            self.info, self.global_batch,
            f"{args.batch_size} x {self.replicas.local_replicas} devices x "
            f"{self.processes.size} processes")
        self.ema_decay = family.ema_decay(args, self.steps_per_epoch)

        tf.random.set_seed(args.seed)  # the initial weights
        with strategy.scope():
            self.model = family.build(self.model_config)
            self.optimizers = family.make_optimizers(args, self.model, self.steps_per_epoch)
            self.epoch = tf.Variable(0, dtype=tf.int64, trainable=False, name="epoch")
        self.iterations = family.iterations(self.optimizers)
        self.ema = None  # built by start(): after the data-dependent init on a fresh run
        self.checkpoint = None
        self.scratch_dir = None  # a non-chief worker's private checkpoint directory
        self.train_step = tf.function(self._train_step_function, autograph=False)
        self.eval_step = tf.function(self._eval_step_function, autograph=False)

    def num_parameters(self):
        return sum(int(np.prod(variable.shape)) for variable in self.model.trainable_variables)

    # -- start: fresh or resumed --------------------------------------------------------------

    def start(self, resume):
        """Fresh run (data-dependent init, then the averages) or resume from the newest
        checkpoint in save_dir. Refuses to start fresh over an existing checkpoint. Returns a
        line saying which."""
        save_dir = self.args.save_dir
        existing = ckpt.latest_checkpoint(save_dir)
        if resume:
            if existing is None:
                raise ckpt.CheckpointError(f"no checkpoint in {save_dir!r} to resume or evaluate; "
                                           f"check --save_dir, or drop --load_params to start a "
                                           f"new run")
            self._check_stored_config(existing)
            self._build_ema()
            self._build_checkpoint()
            self.checkpoint.restore(existing)
            self._broadcast_state()
            return (f"resumed from {existing}: epoch {int(self.epoch.numpy())}, "
                    f"step {int(self.iterations.numpy())}")
        if existing is not None:
            raise ckpt.CheckpointError(f"{save_dir!r} already holds checkpoint {existing}; "
                                       f"pass --load_params to resume it or choose another "
                                       f"--save_dir")
        self._data_dependent_init()
        self._build_ema()
        self._build_checkpoint()
        self._broadcast_state()
        return f"new run: data-dependent init on {self.args.init_batch_size} train images"

    def _check_stored_config(self, path):
        stored = ckpt.read_run_config(path)
        if stored.get("model") != self.family.name:
            raise ckpt.CheckpointError(f"{path} holds a {stored.get('model')!r} model, not "
                                       f"{self.family.name!r}; pass --model {stored.get('model')}")
        if stored["model_config"] != self.model_config:
            changed = sorted(key for key in set(stored["model_config"]) | set(self.model_config)
                             if stored["model_config"].get(key) != self.model_config.get(key))
            details = ", ".join(f"{key}={stored['model_config'].get(key)} (now "
                                f"{self.model_config.get(key)})" for key in changed)
            raise ckpt.CheckpointError(f"{path} was trained with {details}; pass the same "
                                       f"model flags to resume")

    def _data_dependent_init(self):
        """The family's init pass on init_batch_size training images, run once in
        cross-replica context so every replica receives the same values. Every process inits
        on the same (unsharded) batch; _broadcast_state then makes rank 0's values exact
        everywhere, as openai/glow's broadcast after its init."""
        init_batch = data.load(self.args.data_set, self.args.data_dir, "train",
                               image_size=self.args.image_size,
                               batch_size=self.args.init_batch_size, shuffle=True,
                               seed=self.args.seed, epoch=0, prefetch=False)
        images, labels = next(iter(init_batch))
        with self.strategy.scope():
            self.family.initialize(self.model, images, labels, seed=[self.args.seed, 0])

    def _build_ema(self):
        with self.strategy.scope():
            self.ema = ExponentialMovingAverage(self.family.averaged_variables(self.model),
                                                self.ema_decay)

    def _build_checkpoint(self):
        config = run_config(self.family, self.args, self.model_config, self.ema_decay)
        save_dir = self.args.save_dir
        if not self.processes.is_chief:
            self.scratch_dir = tempfile.mkdtemp(prefix=f"rank{self.processes.rank}_checkpoint_")
            save_dir = self.scratch_dir
        self.checkpoint = ckpt.RunCheckpoint(save_dir, config, model=self.model, ema=self.ema,
                                             epoch=self.epoch, **self.optimizers)

    def _broadcast_state(self):
        """Rank 0's weights, averages, optimizer state and counters on every process."""
        if self.processes.size == 1:
            return
        state, seen = [], set()
        optimizer_variables = [v for optimizer in self.optimizers.values()
                               for v in optimizer.variables]
        for variable in (*self.model.variables, *self.ema.shadows, *optimizer_variables,
                         self.epoch):
            if variable.ref() not in seen:
                seen.add(variable.ref())
                state.append(variable)
        self.processes.broadcast_variables(self.strategy, state)

    def save_checkpoint(self, epoch):
        """Rank 0 writes checkpoint `epoch` to save_dir (returns its path). Under
        MultiWorkerMirroredStrategy the other workers write theirs to their scratch directory
        and delete it (returns None); under Horovod they write nothing."""
        if self.processes.is_chief:
            return self.checkpoint.save(epoch)
        if self.processes.every_process_saves:
            self.checkpoint.save(epoch)
            shutil.rmtree(self.scratch_dir, ignore_errors=True)
        return None

    # -- steps ------------------------------------------------------------------------------

    def _train_step_function(self, images, labels):
        """The family's update on a process batch; returns its losses (global batch means)."""
        with self.strategy.scope():
            return self.family.train_step(self, images, labels,
                                          step_seed(self.args.seed, self.iterations + 1))

    def _eval_step_function(self, images, labels):
        """Per-image nats [process batch] of a (padded) process batch with the Polyak weights."""
        def replica_nats(images, labels):
            return self.family.nats(self.model, self.replicas.slice(images),
                                    self.replicas.slice(labels), ema=self.ema)

        per_replica = self.strategy.run(replica_nats, args=(images, labels))
        return tf.concat(self.strategy.experimental_local_results(per_replica), axis=0)

    # -- epochs -----------------------------------------------------------------------------

    def train_batches(self, epoch):
        """This process's batches of one shuffled epoch: its shard of the train split, in
        steps_per_epoch batches of process_batch images."""
        batches = data.load(self.args.data_set, self.args.data_dir, "train",
                            image_size=self.args.image_size, batch_size=self.process_batch,
                            shuffle=True, seed=self.args.seed, epoch=epoch, drop_remainder=True,
                            num_shards=self.processes.size, shard_index=self.processes.rank)
        # shards differ by at most one image: every process takes the same number of steps
        return batches.take(self.steps_per_epoch)

    def test_batches(self):
        """This process's shard of the test split in split order, batches of process_batch
        (the last one partial), and the split positions of its images."""
        size, rank = self.processes.size, self.processes.rank
        batches = data.load(self.args.data_set, self.args.data_dir, "test",
                            image_size=self.args.image_size, batch_size=self.process_batch,
                            num_shards=size, shard_index=rank)
        return batches, shard_indices(self.info.split_sizes["test"], size, rank)

    def train_epoch(self, epoch, logger=None):
        """One pass over this process's shard of the shuffled train split; returns the mean of
        every scalar the family's step reports. Each step is also handed to `logger` (rank 0's
        trainer.logger.Logger, which writes every log_interval-th)."""
        totals = {}
        bar = progress(self.train_batches(epoch), total=self.steps_per_epoch,
                       desc=f"epoch {epoch} train", disable=not self.processes.is_chief)
        tick = time.perf_counter()
        for count, (images, labels) in enumerate(bar, start=1):
            losses = {name: float(value)
                      for name, value in self.train_step(images, labels).items()}
            if not all(math.isfinite(value) for value in losses.values()):
                raise NonFiniteLossError(
                    f"non-finite training loss {losses} at epoch {epoch}, step "
                    f"{int(self.iterations.numpy())}; stopped without saving (the last checkpoint "
                    f"in {self.args.save_dir!r} is untouched); lower "
                    f"{self.family.learning_rate_flags}")
            for name, value in losses.items():
                totals[name] = totals.get(name, 0.0) + value
            if logger is not None:
                now = time.perf_counter()
                logger.train_step(int(self.iterations.numpy()), losses, self.global_batch,
                                  now - tick, self._learning_rates)
                tick = now
            bar.set_postfix({name: f"{value:.4f}" for name, value in losses.items()})
        return {name: total / count for name, total in totals.items()}

    def evaluate(self):
        """Per-image test NLL in nats (Polyak weights, no dropout) over every test image, in
        the split's order, on every process. Each process scores its shard (the last partial
        batch padded, the padding discarded) and writes its results at its images' positions
        of a zero vector; the sum of these vectors over processes holds every image once."""
        batches, positions = self.test_batches()
        results = []
        for images, labels in progress(batches,
                                       total=math.ceil(len(positions) / self.process_batch),
                                       desc="test", disable=not self.processes.is_chief):
            count = len(images)
            images, labels = pad_batch(images.numpy(), labels.numpy(), self.process_batch)
            results.append(self.eval_step(images, labels).numpy()[:count])
        nats = np.zeros([self.info.split_sizes["test"]], np.float32)
        nats[positions] = np.concatenate(results)
        return self.processes.sum_over_processes(nats)

    def _learning_rates(self, step):
        return self.family.learning_rates(self.optimizers, step)

    def test_bits_per_dim(self, nats):
        return float(bits_per_dim(np.mean(nats.astype(np.float64)), self.info.image_shape))

    def save_samples(self, epoch, logger):
        """num_samples batches of the family's training samples, seeded by (seed, epoch, batch),
        as one PNG (grid or sheet) + raw npz."""
        batches = [self.family.training_samples(
                       self.model, self.ema, self.args,
                       seed=[self.args.seed, epoch * self.args.num_samples + k])
                   for k in progress(range(self.args.num_samples), desc="sampling")]
        name = self.family.sample_file_name
        prefix = os.path.join(self.args.save_dir, f"{self.args.data_set}_{name}{epoch}")
        grid = image_files.save_samples(prefix, np.concatenate(batches))
        logger.image(name, grid, int(self.iterations.numpy()))

    def fit(self, logger):
        """Train from the current epoch to max_epochs, logging to `logger` (trainer.logger;
        None on processes other than rank 0, which log nothing)."""
        args = self.args
        for epoch in range(int(self.epoch.numpy()), args.max_epochs):
            started = time.time()
            scalars = self.train_epoch(epoch, logger)
            if self.family.has_likelihood:
                test_bpd = self.test_bits_per_dim(self.evaluate())
                if not math.isfinite(test_bpd):
                    raise NonFiniteLossError(
                        f"non-finite test bits/dim at epoch {epoch}; stopped without saving (the "
                        f"last checkpoint in {args.save_dir!r} is untouched); lower "
                        f"{self.family.learning_rate_flags}")
                scalars["test_bits_per_dim"] = test_bpd
            self.epoch.assign(epoch + 1)
            step = int(self.iterations.numpy())
            scalars.update(self._learning_rates(step))
            chief = self.processes.is_chief
            if chief:
                logger.epoch(epoch, step, time.time() - started, scalars)
            if (epoch + 1) % args.save_interval == 0 or epoch == args.max_epochs - 1:
                if args.num_samples and chief:
                    self.save_samples(epoch, logger)
                path = self.save_checkpoint(epoch)
                if chief:
                    logger.message(f"saved {path}")
                    logger.write_curves()
