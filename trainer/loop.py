"""The training loop for likelihood models, shared by every family (see trainer.families).

One step: each replica takes its slice of the global batch, computes
    loss = sum over its images of bits/dim / global batch
so the sum over replicas is the mean bits/dim of the global batch (the single-device loss), sums
the gradients over replicas, applies the optimizer and then the Polyak average. Dropout noise is
stateless, seeded by (seed, step, replica), so a resumed run draws the same masks.

Every epoch: train bits/dim (raw weights, dropout on) and test bits/dim over every test image
(Polyak averages, no dropout). After every save_interval-th epoch and the last: samples (PNG grid +
raw npz) and then a checkpoint, which holds everything a resume needs: weights, averages,
optimizer moments and step (the learning rate is a function of the step) and the epoch. The
shuffle order of an epoch depends on (seed, epoch) only, and checkpoints are written at epoch
ends, so a resumed run continues with exactly the batches the interrupted one would have seen.
"""
import math
import os
import time

import numpy as np
import tensorflow as tf
from tqdm import tqdm

import data
from trainer import checkpoint as ckpt
from trainer import images as image_files
from trainer.ema import ExponentialMovingAverage


class ConfigError(Exception):
    """Flags that cannot work together. The message is one line."""


class NonFiniteLossError(Exception):
    """Training diverged. The message is one line."""


def replica_slice(tensor, per_replica):
    """This replica's contiguous slice of a global batch."""
    replica = tf.distribute.get_replica_context().replica_id_in_sync_group
    return tensor[replica * per_replica:(replica + 1) * per_replica]


def dropout_seed(seed, step):
    """The stateless seed of one replica's dropout noise at global step `step`."""
    replica = tf.distribute.get_replica_context().replica_id_in_sync_group
    return tf.random.experimental.stateless_fold_in(
        tf.stack([tf.constant(seed, tf.int64), tf.cast(step, tf.int64)]), replica)


def pad_batch(images, labels, size):
    """Pad a partial batch with zero images up to `size` (their results are discarded)."""
    missing = size - len(images)
    if missing == 0:
        return images, labels
    return (np.concatenate([images, np.zeros((missing,) + images.shape[1:], images.dtype)]),
            np.concatenate([labels, np.zeros([missing], labels.dtype)]))


def run_config(family, args, model_config, ema_decay):
    """What a checkpoint stores about its run: enough to rebuild the model without flags."""
    return {"model": family.NAME, "model_config": model_config, "data_set": args.data_set,
            "ema_decay": ema_decay, "flags": dict(sorted(vars(args).items()))}


class Trainer:
    """Builds the model, optimizer, averages and checkpoint for a run; `fit()` trains,
    `evaluate()` scores the test set."""

    def __init__(self, family, args, strategy):
        self.family, self.args, self.strategy = family, args, strategy
        self.info = data.info(args.data_set, args.data_dir, args.image_size)
        try:
            self.model_config = family.model_config(args, self.info)
        except ValueError as error:
            raise ConfigError(str(error)) from None
        self.per_replica_batch = args.batch_size
        self.global_batch = args.batch_size * strategy.num_replicas_in_sync
        self.steps_per_epoch = self.info.split_sizes["train"] // self.global_batch
        if self.steps_per_epoch == 0:
            raise ConfigError(f"the train split of {args.data_set!r} has "
                              f"{self.info.split_sizes['train']} images, fewer than one global "
                              f"batch ({args.batch_size} x {strategy.num_replicas_in_sync} "
                              f"devices); lower --batch_size or --nr_gpu")
        self.ema_decay = family.ema_decay(args, self.steps_per_epoch)

        tf.random.set_seed(args.seed)  # the initial weights
        with strategy.scope():
            self.model = family.build(self.model_config)
            self.variables = tuple(self.model.trainable_variables)
            self.optimizer = family.make_optimizer(args, self.variables, self.steps_per_epoch)
            self.epoch = tf.Variable(0, dtype=tf.int64, trainable=False, name="epoch")
        self.ema = None  # built by start(): after the data-dependent init on a fresh run
        self.checkpoint = None
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
        cross-replica context so every replica receives the same values."""
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
        self.checkpoint = ckpt.RunCheckpoint(self.args.save_dir, config, model=self.model,
                                             ema=self.ema, optimizer=self.optimizer,
                                             epoch=self.epoch)

    # -- steps ------------------------------------------------------------------------------

    def _train_step_function(self, images, labels):
        """One optimizer + averaging step on a global batch; returns its mean bits/dim."""
        step = self.optimizer.iterations + 1
        image_shape = self.info.image_shape

        def replica_step(images, labels):
            images = replica_slice(images, self.per_replica_batch)
            labels = replica_slice(labels, self.per_replica_batch)
            with tf.GradientTape() as tape:
                nats = self.family.nats(self.model, images, labels, training=True,
                                        seed=dropout_seed(self.args.seed, step))
                bits = self.family.bits_per_dim(nats, image_shape)
                loss = tf.reduce_sum(bits) / self.global_batch
            return loss, tape.gradient(loss, self.variables)

        losses, grads = self.strategy.run(replica_step, args=(images, labels))
        grads = self.strategy.extended.batch_reduce_to(
            tf.distribute.ReduceOp.SUM, list(zip(grads, self.variables)))
        self.optimizer.apply(grads, self.variables)
        self.ema.apply()
        return self.strategy.reduce(tf.distribute.ReduceOp.SUM, losses, axis=None)

    def _eval_step_function(self, images, labels):
        """Per-image nats [global batch] of a (padded) global batch with the Polyak weights."""
        def replica_nats(images, labels):
            return self.family.nats(self.model, replica_slice(images, self.per_replica_batch),
                                    replica_slice(labels, self.per_replica_batch), ema=self.ema)

        per_replica = self.strategy.run(replica_nats, args=(images, labels))
        return tf.concat(self.strategy.experimental_local_results(per_replica), axis=0)

    # -- epochs -----------------------------------------------------------------------------

    def train_epoch(self, epoch):
        """One pass over the shuffled train split; returns the mean train bits/dim."""
        batches = data.load(self.args.data_set, self.args.data_dir, "train",
                            image_size=self.args.image_size, batch_size=self.global_batch,
                            shuffle=True, seed=self.args.seed, epoch=epoch, drop_remainder=True)
        losses = []
        bar = tqdm(batches, total=self.steps_per_epoch, desc=f"epoch {epoch} train",
                   leave=False)
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
        the split's order: the last partial batch is padded and the padding discarded."""
        batches = data.load(self.args.data_set, self.args.data_dir, "test",
                            image_size=self.args.image_size, batch_size=self.global_batch)
        total = math.ceil(self.info.split_sizes["test"] / self.global_batch)
        results = []
        for images, labels in tqdm(batches, total=total, desc="test", leave=False):
            count = len(images)
            images, labels = pad_batch(images.numpy(), labels.numpy(), self.global_batch)
            results.append(self.eval_step(images, labels).numpy()[:count])
        return np.concatenate(results)

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
        """Train from the current epoch to max_epochs, logging to `logger` (trainer.logger)."""
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
            logger.epoch(epoch, step, time.time() - started,
                         {"train_bits_per_dim": train_bpd, "test_bits_per_dim": test_bpd,
                          "learning_rate": float(self.optimizer.learning_rate(step))})
            if (epoch + 1) % args.save_interval == 0 or epoch == args.max_epochs - 1:
                if args.num_samples:
                    self.save_samples(epoch, logger)
                path = self.checkpoint.save(epoch)
                logger.message(f"saved {path}")
