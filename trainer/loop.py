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
are summed into one vector in split order). After every save_interval-th epoch and the last: a
checkpoint, then samples (PNG + raw npz). A checkpoint holds everything a resume needs: weights,
averages, optimizer moments and step (the learning rate is a function of the step), the epoch and
the position in it. Mid-epoch checkpoints are written every --save_steps steps, after
--save_minutes minutes, and when a signal asks the run to stop (request_stop: the current step
finishes, the checkpoint is written, Stopped is raised). The shuffle order of an epoch depends on
(seed, epoch) only and the data layer skips the batches already trained, so a resumed run
continues with exactly the batches the interrupted one would have seen; evaluation and samples
stay on their epoch schedule. With several processes, rank 0's weights are broadcast after the
init and after a resume, every process agrees each step on whether to save or stop (so all stop
at the same step), and only rank 0 prints, logs, samples and writes the checkpoint.
"""
import json
import math
import os
import shutil
import tempfile
import time

import numpy as np
import tensorflow as tf

import data
from data.pixels import bits_per_dim
from data.progress import progress
from trainer import checkpoint as ckpt
from trainer import dist, precision, run_dir
from trainer import images as image_files
from trainer.ema import ExponentialMovingAverage


class ConfigError(Exception):
    """Flags that cannot work together. The message is one line."""


class NonFiniteLossError(Exception):
    """Training diverged. The message is one line."""


class Stopped(Exception):
    """A signal asked the run to stop; it saved a checkpoint first. The message is one line."""


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
    """The family's model configuration for these flags and data, as a checkpoint stores it
    (JSON: tuples become lists), so it compares equal with a stored one; ConfigError when
    impossible."""
    try:
        return json.loads(json.dumps(family.model_config(args, info)))
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


def checkpoint_objects(model, ema, epoch, loss_scale, optimizers):
    """The trackable objects a run's checkpoint holds, under their checkpoint keys."""
    return dict(model=model, ema=ema, epoch=epoch, loss_scale=loss_scale, **optimizers)


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
        self.info = data.info(args.data_set, args.data_dir, args.image_size,
                              cache_dir=args.cache_dir)
        data.prepare(args.data_set, args.data_dir, args.image_size, cache_dir=args.cache_dir)
        self.model_config = checked_model_config(family, args, self.info)
        self.replicas = dist.Replicas(strategy, args.batch_size, self.processes)
        self.process_batch = self.replicas.process_batch
        self.global_batch = self.replicas.global_batch
        self.steps_per_epoch = checked_steps_per_epoch(
            self.info, self.global_batch,
            f"{args.batch_size} x {self.replicas.local_replicas} devices x "
            f"{self.processes.size} processes")
        if self.processes.size > 1:  # file-sharded streams: every process takes as many steps
            # as the smallest shard allows
            smallest = min(len(self.shard_positions("train", rank))
                           for rank in range(self.processes.size))
            self.steps_per_epoch = min(self.steps_per_epoch, smallest // self.process_batch)
            if self.steps_per_epoch == 0:
                raise ConfigError(f"a process's shard of the train split of {args.data_set!r} "
                                  f"has {smallest} images, fewer than one process batch "
                                  f"({self.process_batch}); lower --batch_size or --nr_gpu")
        self.ema_decay = family.ema_decay(args, self.steps_per_epoch)

        tf.random.set_seed(args.seed)  # the initial weights
        with strategy.scope():
            self.model = family.build(self.model_config)
            self.optimizers = family.make_optimizers(args, self.model, self.steps_per_epoch)
            self.epoch = tf.Variable(0, dtype=tf.int64, trainable=False, name="epoch")
            self.loss_scale = precision.LossScale()  # enabled by start() for fp16
        self.iterations = family.iterations(self.optimizers)
        self.ema = None  # built by start(): after the data-dependent init on a fresh run
        self.checkpoint = None
        self.progress = {}  # the position in the epoch a resumed run continues from
        self.stop_reason = None  # set by request_stop
        self.last_save = time.time()
        self.train_step = tf.function(self._train_step_function, autograph=False)
        self.eval_step = tf.function(self._eval_step_function, autograph=False)

    def num_parameters(self):
        return sum(int(np.prod(variable.shape)) for variable in self.model.trainable_variables)

    # -- start: fresh or resumed --------------------------------------------------------------

    def start(self, resume, checkpoint=None, notify=print):
        """Fresh run (data-dependent init, then the averages) or resume from `checkpoint` (a
        prefix), else the newest checkpoint in save_dir that restores completely (notify(line)
        says which damaged ones were skipped). Refuses to start fresh in a save_dir that holds
        any trace of a run. Returns a line saying which."""
        save_dir = self.args.save_dir
        if resume:
            try:
                paths = ckpt.candidates(save_dir, checkpoint)
            except ckpt.CheckpointError as error:
                raise ckpt.CheckpointError(f"{error}, or drop --load_params to start a new "
                                           f"run") from None
            self._set_precision(paths[0])
            self._build_ema()
            self._build_checkpoint()
            path, self.progress = ckpt.restore_newest(paths, self._restore, notify)
            self._broadcast_state()
            batches = self.progress.get("batches", 0)
            return (f"resumed from {path}: epoch {int(self.epoch.numpy())}"
                    f"{f' (batch {batches} of {self.steps_per_epoch})' if batches else ''}, "
                    f"step {int(self.iterations.numpy())}")
        run_dir.refuse_new_run_over(save_dir)
        self._set_precision(None)
        self._data_dependent_init()
        self._build_ema()
        self._build_checkpoint()
        self._broadcast_state()
        return f"new run: data-dependent init on {self.args.init_batch_size} train images"

    def _set_precision(self, checkpoint_path):
        """Apply --precision, by default the policy of the run at `checkpoint_path` (a resume or
        an evaluation), else fp32 (trainer.precision); it is recorded in the run's flags."""
        stored = None
        if checkpoint_path is not None and self.args.precision is None:
            try:
                stored = ckpt.read_run_config(checkpoint_path)["flags"].get("precision")
            except (ckpt.CheckpointError, KeyError):
                stored = None  # the restore names what is wrong with the checkpoint
        policy = self.args.precision or stored or precision.DEFAULT_POLICY
        precision.check_devices(policy)
        precision.apply(self.model, policy)
        self.loss_scale.enabled = policy == "fp16"
        self.args.precision = policy

    def _restore(self, path):
        """Every value of checkpoint `path` (which must hold this family and model config);
        returns its position in the epoch."""
        self._check_stored_config(path)
        return self.checkpoint.restore(path)

    def _check_stored_config(self, path):
        stored = ckpt.read_run_config(path)
        if stored.get("model") != self.family.name:
            raise ckpt.CheckpointError(f"{path} holds a {stored.get('model')!r} model, not "
                                       f"{self.family.name!r}; pass --model {stored.get('model')}")
        current = json.loads(json.dumps(self.model_config))  # as stored: tuples become lists
        if stored["model_config"] != current:
            changed = sorted(key for key in set(stored["model_config"]) | set(current)
                             if stored["model_config"].get(key) != current.get(key))
            details = ", ".join(f"{key}={stored['model_config'].get(key)} (now "
                                f"{current.get(key)})" for key in changed)
            raise ckpt.CheckpointError(f"{path} was trained with {details}; pass the same "
                                       f"model flags to resume")

    def _data_dependent_init(self):
        """The family's init pass on init_batch_size training images, run once in
        cross-replica context so every replica receives the same values. Every process inits
        on the same (unsharded) batch; _broadcast_state then makes rank 0's values exact
        everywhere, as openai/glow's broadcast after its init."""
        init_batch = data.load(self.args.data_set, self.args.data_dir, "train",
                               image_size=self.args.image_size, cache_dir=self.args.cache_dir,
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
        self.checkpoint = ckpt.RunCheckpoint(
            self.args.save_dir, config, max_to_keep=self.args.keep_checkpoints,
            **checkpoint_objects(self.model, self.ema, self.epoch, self.loss_scale,
                                 self.optimizers))

    def _broadcast_state(self):
        """Rank 0's weights, averages, optimizer state and counters on every process."""
        if self.processes.size == 1:
            return
        state, seen = [], set()
        optimizer_variables = [v for optimizer in self.optimizers.values()
                               for v in optimizer.variables]
        for variable in (*self.model.variables, *self.ema.shadows, *optimizer_variables,
                         *self.loss_scale.variables, self.epoch):
            if variable.ref() not in seen:
                seen.add(variable.ref())
                state.append(variable)
        self.processes.broadcast_variables(self.strategy, state)

    def save_checkpoint(self, epoch, progress=None):
        """Rank 0 writes the checkpoint after epoch `epoch`, or with `progress` (the position
        in the epoch, trainer.checkpoint) one in the middle of it, to save_dir (returns its
        path). Under MultiWorkerMirroredStrategy the other workers write theirs to their scratch
        directory and delete it (returns None); under Horovod they write nothing."""
        self.last_save = time.time()
        chief = self.processes.is_chief
        if not (chief or self.processes.every_process_saves):
            return None
        if not chief:  # a scratch directory that lives only as long as this save
            self.checkpoint.save_dir = tempfile.mkdtemp(
                prefix=f"rank{self.processes.rank}_checkpoint_")
        try:
            if progress is None:
                path = self.checkpoint.save(epoch)
            else:
                path = self.checkpoint.save_mid_epoch(epoch, int(self.iterations.numpy()),
                                                      progress)
        finally:
            if not chief:
                shutil.rmtree(self.checkpoint.save_dir, ignore_errors=True)
        return path if chief else None

    # -- mid-epoch checkpoints and stops --------------------------------------------------------

    def request_stop(self, reason):
        """Stop after the current step with a checkpoint (a signal handler calls this)."""
        self.stop_reason = reason

    def _agreed(self, stop, save):
        """(stop, save) as every process sees them: true if true on any process."""
        if self.processes.size == 1:
            return stop, save
        votes = self.processes.sum_over_processes(np.array([stop, save], np.float32))
        return bool(votes[0]), bool(votes[1])

    def _saves_at_epoch_end(self, epoch):
        return (epoch + 1) % self.args.save_interval == 0 or epoch == self.args.max_epochs - 1

    def after_step(self, epoch, batches, totals):
        """After `batches` batches of `epoch` (losses summed in `totals`): a mid-epoch
        checkpoint when --save_steps or --save_minutes says one is due or a stop was asked,
        then Stopped for a stop. Every process takes the same decision at the same step."""
        args, step = self.args, int(self.iterations.numpy())
        due = bool(args.save_steps and step % args.save_steps == 0) or bool(
            args.save_minutes and time.time() - self.last_save >= 60 * args.save_minutes)
        stop, due = self._agreed(self.stop_reason is not None, due)
        if due and not stop and batches == self.steps_per_epoch and \
                self._saves_at_epoch_end(epoch):
            return  # the epoch-end checkpoint follows
        if stop or due:
            path = self.save_checkpoint(epoch, {"batches": batches, "totals": totals})
            self._stop_if_asked(stop, path, f"epoch {epoch}, step {step}")

    def _stop_if_asked(self, stop, path, where):
        if stop:
            raise Stopped(f"stopped by {self.stop_reason or 'another process'} at {where}: "
                          f"saved {path or 'by rank 0'}; resume with: python3 train.py -o "
                          f"{self.args.save_dir} -r")

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

    def train_batches(self, epoch, skip=0):
        """This process's batches of one shuffled epoch: its shard of the train split, in
        steps_per_epoch batches of process_batch images, without the first `skip` (trained
        before a mid-epoch checkpoint)."""
        batches = data.load(self.args.data_set, self.args.data_dir, "train",
                            image_size=self.args.image_size, cache_dir=self.args.cache_dir,
                            batch_size=self.process_batch,
                            shuffle=True, seed=self.args.seed, epoch=epoch, drop_remainder=True,
                            num_shards=self.processes.size, shard_index=self.processes.rank,
                            skip_batches=skip)
        # every process takes the same number of steps (the smallest shard's)
        return batches.take(self.steps_per_epoch - skip)

    def test_batches(self):
        """This process's shard of the test split in split order, batches of process_batch
        (the last one partial), and the split positions of its images."""
        size, rank = self.processes.size, self.processes.rank
        batches = data.load(self.args.data_set, self.args.data_dir, "test",
                            image_size=self.args.image_size, cache_dir=self.args.cache_dir,
                            batch_size=self.process_batch, num_shards=size, shard_index=rank)
        return batches, self.shard_positions("test", rank)

    def shard_positions(self, split, rank):
        """The split positions of the examples process `rank` reads (data.shard_positions)."""
        return data.shard_positions(self.args.data_set, self.args.data_dir, split,
                                    self.processes.size, rank, image_size=self.args.image_size,
                                    cache_dir=self.args.cache_dir)

    def train_epoch(self, epoch, logger=None):
        """One pass over this process's shard of the shuffled train split; returns the mean of
        every scalar the family's step reports. Each step is also handed to `logger` (rank 0's
        trainer.logger.Logger, which writes every log_interval-th)."""
        done, totals = self.progress.get("batches", 0), dict(self.progress.get("totals", {}))
        self.progress, count = {}, done  # a resumed epoch starts after its trained batches
        bar = progress(self.train_batches(epoch, skip=done), total=self.steps_per_epoch - done,
                       desc=f"epoch {epoch} train", unit="steps",
                       disable=not self.processes.is_chief)
        tick = time.perf_counter()
        for count, (images, labels) in enumerate(bar, start=done + 1):
            losses = {name: float(value)
                      for name, value in self.train_step(images, labels).items()}
            if not all(math.isfinite(value) for value in losses.values()):
                raise NonFiniteLossError(
                    f"non-finite training loss {losses} at epoch {epoch}, step "
                    f"{int(self.iterations.numpy())}; stopped without saving (the last checkpoint "
                    f"in {self.args.save_dir!r} is untouched); lower "
                    f"{self.family.learning_rate_flags}")
            if self.loss_scale.collapsed():
                raise NonFiniteLossError(
                    f"the fp16 loss scale fell below {precision.MIN_SCALE:g} at epoch {epoch}, "
                    f"step {int(self.iterations.numpy())}: the gradients overflow float16 at any "
                    f"scale; stopped without saving (the last checkpoint in "
                    f"{self.args.save_dir!r} is untouched); use --precision bf16 or fp32")
            for name, value in losses.items():
                totals[name] = totals.get(name, 0.0) + value
            if logger is not None:
                now = time.perf_counter()
                logger.train_step(int(self.iterations.numpy()), losses, self.global_batch,
                                  now - tick, self._learning_rates)
                tick = now
            bar.set_postfix({name: f"{value:.4f}" for name, value in losses.items()})
            self.after_step(epoch, count, totals)
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
                                       desc="test", unit="batches",
                                       disable=not self.processes.is_chief):
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
        as one PNG (grid or sheet, rows labelled when they mean something) + raw npz."""
        batches = [self.family.training_samples(
                       self.model, self.ema, self.args,
                       seed=[self.args.seed, epoch * self.args.num_samples + k])
                   for k in progress(range(self.args.num_samples), desc="sampling", unit="batches")]
        name = self.family.sample_file_name
        prefix = os.path.join(self.args.save_dir, f"{self.args.data_set}_{name}{epoch}")
        images = np.concatenate(batches)
        row_labels = self.family.sheet_row_labels(self.model, self.args)
        grid = image_files.save_samples(
            prefix, images, min_width=self.args.sheet_width,
            row_labels=row_labels * len(batches) if row_labels and images.ndim == 5 else None)
        logger.image(name, grid, int(self.iterations.numpy()))

    def _save_samples_keeping_state(self, epoch, logger):
        """save_samples, after which the model holds the values it had before: drawing samples
        must not change the state the checkpoint just written holds (BigGAN's standing
        statistics are model variables), or a resumed run would differ from an uninterrupted
        one."""
        before = [variable.numpy() for variable in self.model.variables]
        self.save_samples(epoch, logger)
        for variable, value in zip(self.model.variables, before):
            if not np.array_equal(variable.numpy(), value):
                dist.assign_on_every_device(variable, value)

    def fit(self, logger):
        """Train from the current epoch to max_epochs, logging to `logger` (trainer.logger;
        None on processes other than rank 0, which log nothing)."""
        args = self.args
        self.last_save = time.time()
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
            path, saved = None, self._saves_at_epoch_end(epoch)
            if saved:  # the checkpoint first: samples may fail
                path = self.save_checkpoint(epoch)
                if chief:
                    logger.message(f"saved {path}")
                    logger.write_curves()
                if args.num_samples and chief:
                    self._save_samples_keeping_state(epoch, logger)
            stop, _ = self._agreed(self.stop_reason is not None, False)
            if stop and epoch + 1 < args.max_epochs:
                if not saved:
                    path = self.save_checkpoint(epoch)
                self._stop_if_asked(True, path, f"the end of epoch {epoch}")
