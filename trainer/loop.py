"""The training loop for likelihood models, shared by every family (see trainer.families).

One step: each process reads a batch of its own data shard (--batch_size per device), each
replica takes its slice of it and computes
    loss = sum over its images of bits/dim / global batch
so the sum over replicas and processes is the mean bits/dim of the global batch (the single-device
loss): one step of P processes with batch B equals one step of one process with batch P*B. The
gradients are summed over replicas and processes (trainer.dist), the optimizer and then the
Polyak average are applied identically everywhere. Noise is stateless: each step has a step seed
(seed, step), the same on every replica, and each replica a replica seed (the step seed folded
with its global replica id); a family draws per-replica noise (PixelCNN++ dropout) from the
latter and per-image noise (Glow dequantisation) from the former, and a resumed run draws the
same noise.

Every epoch: train bits/dim (raw weights, dropout on) and test bits/dim over every test image
(Polyak averages, no dropout; each process scores its shard and the results are summed into
one vector in split order). After every save_interval-th epoch and the last: samples (PNG grid +
raw npz) and then a checkpoint, which holds everything a resume needs: weights, averages,
optimizer moments and step (the learning rate is a function of the step) and the epoch. The
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
from tqdm import tqdm

import data
from data.pipeline import shard_indices
from trainer import checkpoint as ckpt
from trainer import dist
from trainer import images as image_files
from trainer.ema import ExponentialMovingAverage


class ConfigError(Exception):
    """Flags that cannot work together. The message is one line."""


class NonFiniteLossError(Exception):
    """Training diverged. The message is one line."""


def step_seed(seed, step):
    """The stateless seed of global step `step`, the same on every replica and process."""
    return tf.stack([tf.constant(seed, tf.int64), tf.cast(step, tf.int64)])


def replica_seed(step_seed, first_global_replica=0):
    """This replica's own seed of a step; replicas are numbered across processes,
    `first_global_replica` being the strategy's replica 0."""
    replica = (tf.distribute.get_replica_context().replica_id_in_sync_group
               + first_global_replica)
    return tf.random.experimental.stateless_fold_in(step_seed, replica)


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
    return {"model": family.NAME, "model_config": model_config, "data_set": args.data_set,
            "ema_decay": ema_decay, "flags": dict(sorted(vars(args).items()))}


class Trainer:
    """Builds the model, optimizer, averages and checkpoint for a run; `fit()` trains,
    `evaluate()` scores the test set."""

    def __init__(self, family, args, strategy, processes=None):
        """`strategy`: this process's devices; `processes`: the process group from
        trainer.dist.setup (default: this process alone)."""
        self.family, self.args, self.strategy = family, args, strategy
        self.processes = processes or dist.SingleProcess()
        self.info = data.info(args.data_set, args.data_dir, args.image_size)
        self.model_config = checked_model_config(family, args, self.info)
        local_replicas = len(strategy.extended.worker_devices)
        first_replica = self.processes.rank * local_replicas
        # the strategy's replica ids are either this process's own or global (MultiWorker)
        spans = self.processes.strategy_spans_processes
        self.first_local_replica = first_replica if spans else 0
        self.first_global_replica = 0 if spans else first_replica
        self.per_replica_batch = args.batch_size
        self.process_batch = args.batch_size * local_replicas
        self.global_batch = self.process_batch * self.processes.size
        self.steps_per_epoch = checked_steps_per_epoch(
            self.info, self.global_batch, f"{args.batch_size} x {local_replicas} devices x "
                                          f"{self.processes.size} processes")
        self.ema_decay = family.ema_decay(args, self.steps_per_epoch)

        tf.random.set_seed(args.seed)  # the initial weights
        with strategy.scope():
            self.model = family.build(self.model_config)
            self.variables = tuple(self.model.trainable_variables)
            self.optimizer = family.make_optimizer(args, self.variables, self.steps_per_epoch)
            self.epoch = tf.Variable(0, dtype=tf.int64, trainable=False, name="epoch")
        self.ema = None  # built by start(): after the data-dependent init on a fresh run
        self.checkpoint = None
        self.scratch_dir = None  # a non-chief worker's private checkpoint directory
        self.train_step = tf.function(self._train_step_function, autograph=False)
        self.eval_step = tf.function(self._eval_step_function, autograph=False)

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
                    f"step {int(self.optimizer.iterations.numpy())}")
        else:
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
        if stored.get("model") != self.family.NAME:
            raise ckpt.CheckpointError(f"{path} holds a {stored.get('model')!r} model, not "
                                       f"{self.family.NAME!r}; pass --model {stored.get('model')}")
        if stored["model_config"] != self.model_config:
            changed = sorted(key for key in set(stored["model_config"]) | set(self.model_config)
                             if stored["model_config"].get(key) != self.model_config.get(key))
            details = ", ".join(f"{key}={stored['model_config'].get(key)} (now "
                                f"{self.model_config.get(key)})" for key in changed)
            raise ckpt.CheckpointError(f"{path} was trained with {details}; pass the same "
                                       f"model flags to resume")

    def _data_dependent_init(self):
        """openai/pixel-cnn's init pass on init_batch_size training images, run once in
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
            self.ema = ExponentialMovingAverage(self.variables, self.ema_decay)

    def _build_checkpoint(self):
        config = run_config(self.family, self.args, self.model_config, self.ema_decay)
        save_dir = self.args.save_dir
        if not self.processes.is_chief:
            self.scratch_dir = tempfile.mkdtemp(prefix=f"rank{self.processes.rank}_checkpoint_")
            save_dir = self.scratch_dir
        self.checkpoint = ckpt.RunCheckpoint(save_dir, config, model=self.model,
                                             ema=self.ema, optimizer=self.optimizer,
                                             epoch=self.epoch)

    def _broadcast_state(self):
        """Rank 0's weights, averages, optimizer state and counters on every process."""
        if self.processes.size == 1:
            return
        state, seen = [], set()
        for variable in (*self.model.variables, *self.ema.shadows, *self.optimizer.variables,
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
        """One optimizer + averaging step on a global batch; returns its mean bits/dim."""
        this_step_seed = step_seed(self.args.seed, self.optimizer.iterations + 1)
        image_shape = self.info.image_shape

        def replica_step(images, labels):
            images = dist.replica_slice(images, self.per_replica_batch, self.first_local_replica)
            labels = dist.replica_slice(labels, self.per_replica_batch, self.first_local_replica)
            with tf.GradientTape() as tape:
                nats = self.family.nats(
                    self.model, images, labels, training=True,
                    seed=replica_seed(this_step_seed, self.first_global_replica),
                    step_seed=this_step_seed)
                bits = self.family.bits_per_dim(nats, image_shape)
                loss = tf.reduce_sum(bits) / self.global_batch
            return loss, tape.gradient(loss, self.variables)

        loss, grads = dist.run_summed(self.strategy, replica_step, (images, labels),
                                      self.variables)
        *grads, loss = self.processes.sum_in_step([*grads, loss])
        self.optimizer.apply(grads, self.variables)
        self.ema.apply()
        return loss

    def _eval_step_function(self, images, labels):
        """Per-image nats [process batch] of a (padded) process batch with the Polyak weights."""
        def replica_nats(images, labels):
            return self.family.nats(
                self.model,
                dist.replica_slice(images, self.per_replica_batch, self.first_local_replica),
                dist.replica_slice(labels, self.per_replica_batch, self.first_local_replica),
                ema=self.ema)

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

    def train_epoch(self, epoch):
        """One pass over this process's shard of the shuffled train split; returns the mean
        train bits/dim."""
        batches = self.train_batches(epoch)
        losses = []
        bar = tqdm(batches, total=self.steps_per_epoch, desc=f"epoch {epoch} train",
                   leave=False, disable=not self.processes.is_chief)
        for images, labels in bar:
            loss = float(self.train_step(images, labels))
            if not math.isfinite(loss):
                raise NonFiniteLossError(
                    f"non-finite training loss ({loss}) at epoch {epoch}, step "
                    f"{int(self.optimizer.iterations.numpy())}; stopped without saving (the last "
                    f"checkpoint in {self.args.save_dir!r} is untouched); lower --learning_rate")
            losses.append(loss)
            bar.set_postfix(bits_per_dim=f"{loss:.4f}")
        return float(np.mean(losses))

    def evaluate(self):
        """Per-image test NLL in nats (Polyak weights, no dropout) over every test image, in
        the split's order, on every process. Each process scores its shard (the last partial
        batch padded, the padding discarded) and writes its results at its images' positions
        of a zero vector; the sum of these vectors over processes holds every image once."""
        batches, positions = self.test_batches()
        results = []
        for images, labels in tqdm(batches, total=math.ceil(len(positions) / self.process_batch),
                                   desc="test", leave=False, disable=not self.processes.is_chief):
            count = len(images)
            images, labels = pad_batch(images.numpy(), labels.numpy(), self.process_batch)
            results.append(self.eval_step(images, labels).numpy()[:count])
        nats = np.zeros([self.info.split_sizes["test"]], np.float32)
        nats[positions] = np.concatenate(results)
        return self.processes.sum_over_processes(nats)

    def test_bits_per_dim(self, nats):
        return float(self.family.bits_per_dim(np.mean(nats.astype(np.float64)),
                                              self.info.image_shape))

    def save_samples(self, epoch, logger):
        """num_samples batches of sample_batch_size images, seeded by (seed, epoch, batch);
        class-conditional models cycle through the classes."""
        sampler = self.family.SAMPLERS[self.family.DEFAULT_SAMPLER]
        num_classes = self.model_config.get("num_classes", 0)
        count = self.args.sample_batch_size
        labels = np.arange(count) % num_classes if num_classes else None
        batches = [sampler(self.model, count,
                           seed=[self.args.seed, epoch * self.args.num_samples + k],
                           labels=labels, ema=self.ema)
                   for k in tqdm(range(self.args.num_samples), desc="sampling", leave=False)]
        prefix = os.path.join(self.args.save_dir, f"{self.args.data_set}_sample{epoch}")
        grid = image_files.save_samples(prefix, np.concatenate(batches))
        logger.image("samples", grid, int(self.optimizer.iterations.numpy()))

    def fit(self, logger):
        """Train from the current epoch to max_epochs, logging to `logger` (trainer.logger;
        None on processes other than rank 0, which log nothing)."""
        args = self.args
        for epoch in range(int(self.epoch.numpy()), args.max_epochs):
            started = time.time()
            train_bpd = self.train_epoch(epoch)
            test_nats = self.evaluate()
            test_bpd = self.test_bits_per_dim(test_nats)
            if not math.isfinite(test_bpd):
                raise NonFiniteLossError(
                    f"non-finite test bits/dim at epoch {epoch}; stopped without saving (the "
                    f"last checkpoint in {args.save_dir!r} is untouched); lower --learning_rate")
            self.epoch.assign(epoch + 1)
            step = int(self.optimizer.iterations.numpy())
            chief = self.processes.is_chief
            if chief:
                logger.epoch(epoch, step, time.time() - started,
                             {"train_bits_per_dim": train_bpd, "test_bits_per_dim": test_bpd,
                              "learning_rate": float(self.optimizer.learning_rate(step))})
            if (epoch + 1) % args.save_interval == 0 or epoch == args.max_epochs - 1:
                if args.num_samples and chief:
                    self.save_samples(epoch, logger)
                path = self.save_checkpoint(epoch)
                if chief:
                    logger.message(f"saved {path}")
