"""Devices and processes: where the replicas run and how the processes of a run talk.

Within one process, as in openai/pixel-cnn, --nr_gpu N trains data-parallel on N GPUs with
--batch_size images on each (CUDA_VISIBLE_DEVICES restricts which GPUs TensorFlow sees), through
one tf.distribute.MirroredStrategy. On a machine without GPUs, N logical CPU devices stand in for
them, so the multi-device code path runs (slowly) anywhere. Logical devices can only be set up
before TensorFlow initialises its runtime; a runtime that is already initialised (e.g. by
tests/conftest.py) is accepted when it has enough of them.

Across processes (several machines, or one process per GPU), `setup` picks a process group from
how the run was launched:
  * Horovod (`horovodrun -np P python3 train.py ...` or `mpirun`; HOROVOD_RANK, or an MPI rank
    with more than one process, in the environment): one MirroredStrategy per process over its
    own --nr_gpu GPUs (local rank k takes GPUs k*nr_gpu ...), gradients summed with Horovod's
    allreduce, as openai/glow (which used one GPU per process).
  * tf.distribute.MultiWorkerMirroredStrategy (TF_CONFIG in the environment): TensorFlow's own
    collectives, for clusters without a Horovod build.
  * otherwise the single process above.
Every process reads its own shard of the data (data.load num_shards=size, shard_index=rank), so a
step sees --batch_size x nr_gpu x processes images; rank 0 (the chief) alone prints and writes.
"""
import json
import os

import numpy as np
import tensorflow as tf


class DeviceError(Exception):
    """The requested devices do not exist. The message is one line."""


def logical_cpus(count):
    """Split the CPU into `count` logical devices if TensorFlow has not initialised yet; returns
    the number of logical CPU devices the runtime has (or will have)."""
    cpu = tf.config.list_physical_devices("CPU")[0]
    configured = tf.config.get_logical_device_configuration(cpu) or []
    if len(configured) < count:
        try:
            tf.config.set_logical_device_configuration(
                cpu, [tf.config.LogicalDeviceConfiguration() for _ in range(count)])
        except RuntimeError:  # already initialised: keep what it has
            pass
    return len(tf.config.list_logical_devices("CPU"))


# One MirroredStrategy per device list for the life of the process: two strategies over the same
# devices number their collective ops alike, and steps of the second then collide with the first's
# ("Shape mismatch in the collective instance"), e.g. when train.main runs twice in one process.
_MIRRORED_STRATEGIES = {}


def mirrored_strategy(nr_gpu):
    """(strategy, description) for `nr_gpu` devices; DeviceError when they are not there. The
    same device list always gives the same strategy object."""
    if nr_gpu < 1:
        raise DeviceError(f"--nr_gpu must be at least 1, got {nr_gpu}")
    gpus = tf.config.list_physical_devices("GPU")
    if gpus:
        if nr_gpu > len(gpus):
            raise DeviceError(f"--nr_gpu {nr_gpu} asks for more GPUs than the {len(gpus)} visible "
                              f"ones (CUDA_VISIBLE_DEVICES); lower --nr_gpu")
        devices = [f"/gpu:{i}" for i in range(nr_gpu)]
        description = f"{nr_gpu} GPU(s): {', '.join(devices)}"
    else:
        available = logical_cpus(nr_gpu)
        if available < nr_gpu:
            raise DeviceError(f"--nr_gpu {nr_gpu}: no GPU visible and the TensorFlow runtime was "
                              f"already initialised with {available} logical CPU device(s); "
                              f"lower --nr_gpu")
        devices = [f"/cpu:{i}" for i in range(nr_gpu)]
        description = (f"no GPU visible: {nr_gpu} logical CPU device(s) stand in for --nr_gpu "
                       f"{nr_gpu} ({', '.join(devices)})")
    if tuple(devices) not in _MIRRORED_STRATEGIES:
        _MIRRORED_STRATEGIES[tuple(devices)] = tf.distribute.MirroredStrategy(devices)
    return _MIRRORED_STRATEGIES[tuple(devices)], description


def replica_slice(tensor, per_replica, first_local_replica=0):
    """This replica's contiguous slice of its process's batch (`first_local_replica`: the
    strategy's id of this process's first replica, nonzero when the strategy spans processes)."""
    replica = tf.distribute.get_replica_context().replica_id_in_sync_group - first_local_replica
    return tensor[replica * per_replica:(replica + 1) * per_replica]


def run_summed(strategy, replica_step, args, variables):
    """Runs replica_step(*args) -> (losses, gradients of `variables`) on every replica of
    `strategy` and returns both summed over the replicas: the losses (any nest of scalars) as
    tensors, the gradients mirrored onto each variable's devices. Call in cross-replica context."""
    losses, grads = strategy.run(replica_step, args=args)
    grads = strategy.extended.batch_reduce_to(tf.distribute.ReduceOp.SUM,
                                              list(zip(grads, variables)))
    losses = tf.nest.map_structure(
        lambda loss: strategy.reduce(tf.distribute.ReduceOp.SUM, loss, axis=None), losses)
    return losses, grads


class Replicas:
    """How a step's batch is split over the replicas of `strategy` in every process of
    `processes`: each process reads per_replica_batch x (its replicas) images, each replica takes
    its contiguous slice, and replicas are numbered across processes. A family's train step
    works through these helpers (trainer.families.base.Family.train_step)."""

    def __init__(self, strategy, per_replica_batch, processes=None):
        self.strategy = strategy
        self.processes = processes or SingleProcess()
        local_replicas = len(strategy.extended.worker_devices)
        first_replica = self.processes.rank * local_replicas
        # the strategy's replica ids are either this process's own or global (MultiWorker)
        spans = self.processes.strategy_spans_processes
        self.first_local_replica = first_replica if spans else 0
        self.first_global_replica = 0 if spans else first_replica
        self.local_replicas = local_replicas
        self.per_replica_batch = per_replica_batch
        self.process_batch = per_replica_batch * local_replicas
        self.global_batch = self.process_batch * self.processes.size

    def slice(self, tensor, per_replica=None):
        """This replica's slice of a process batch (of per_replica images each, default
        per_replica_batch). Call in replica context."""
        return replica_slice(tensor, per_replica or self.per_replica_batch,
                             self.first_local_replica)

    def seed(self, step_seed):
        """This replica's own stateless seed of a step: the step seed folded with the replica's
        global number. Call in replica context."""
        replica = (tf.distribute.get_replica_context().replica_id_in_sync_group
                   + self.first_global_replica)
        return tf.random.experimental.stateless_fold_in(step_seed, replica)

    def sum_gradients(self, replica_step, args, variables):
        """Runs replica_step(*args) -> (losses, gradients of `variables`) on every replica and
        returns both summed over every replica of every process. Call in cross-replica context
        inside the compiled step."""
        losses, grads = run_summed(self.strategy, replica_step, args, variables)
        flat_losses = tf.nest.flatten(losses)
        summed = self.processes.sum_in_step([*grads, *flat_losses])
        grads, flat_losses = summed[:len(grads)], summed[len(grads):]
        return tf.nest.pack_sequence_as(losses, flat_losses), grads


def device_copies(variable):
    """The plain per-device variables behind a mirrored variable (its own strategy's local
    results, whether or not that strategy's scope is entered), or (variable,) for a plain one."""
    strategy = getattr(variable, "distribute_strategy", None)
    return strategy.experimental_local_results(variable) if strategy else (variable,)


def per_device_values(variable, value):
    """`value` as one tensor per device copy of `variable` (the order of device_copies): each
    device's own component when `value` is mirrored like the variable (gradients reduced to the
    variables' devices), else the one tensor for every copy."""
    copies = device_copies(variable)
    strategy = getattr(variable, "distribute_strategy", None)
    values = strategy.experimental_local_results(value) if strategy else (value,)
    return values if len(values) == len(copies) else (tf.convert_to_tensor(value),) * len(copies)


def assign_on_every_device(variable, value):
    """variable.assign(value) for every device's copy of a variable (mirrored or plain), from
    cross-replica context. Same result as a mirrored variable's own assign, with a fraction of the
    tracing work (it matters for the hundreds of variables an optimizer step updates)."""
    for copy in device_copies(variable):
        copy.assign(value)


# -- process groups ----------------------------------------------------------------------------

HOROVOD_VERSION = "0.28.1"


def launch_kind(environ=os.environ):
    """'horovod', 'multi_worker' or 'single', from the environment of this process."""
    horovod = "HOROVOD_RANK" in environ or any(
        int(environ.get(size, "1")) > 1 for size in ("OMPI_COMM_WORLD_SIZE", "PMI_SIZE"))
    if horovod and "TF_CONFIG" in environ:
        raise DeviceError("both a Horovod/MPI launch and TF_CONFIG (MultiWorkerMirroredStrategy) "
                          "are in the environment; unset TF_CONFIG or launch without horovodrun")
    if horovod:
        return "horovod"
    return "multi_worker" if "TF_CONFIG" in environ else "single"


def setup(nr_gpu):
    """(strategy, process group, description of the devices) for this process, as launched."""
    kind = launch_kind()
    if kind == "horovod":
        processes = HorovodProcesses()
        select_local_gpus(processes.local_rank * nr_gpu, nr_gpu)
        strategy, devices = mirrored_strategy(nr_gpu)
    elif kind == "multi_worker":
        processes = MultiWorkerProcesses()
        select_local_gpus(0, nr_gpu, cpu_replicas=1)
        strategy = processes.strategy = tf.distribute.MultiWorkerMirroredStrategy()
        devices = f"{len(strategy.extended.worker_devices)} device(s) per worker: " + \
            ", ".join(strategy.extended.worker_devices)
    else:
        processes = SingleProcess()
        strategy, devices = mirrored_strategy(nr_gpu)
    if processes.size > 1:
        devices = f"{processes.describe()}; this process: {devices}"
    return strategy, processes, devices


def select_local_gpus(first, count, cpu_replicas=None):
    """Make GPUs first .. first+count-1 the only visible ones (before TensorFlow initialises).
    Without GPUs, `cpu_replicas` (when given) is the only device count the strategy supports."""
    gpus = tf.config.list_physical_devices("GPU")
    if not gpus:
        if cpu_replicas is not None and count != cpu_replicas:
            raise DeviceError(f"--nr_gpu {count}: without GPUs each worker runs "
                              f"{cpu_replicas} CPU replica; pass --nr_gpu {cpu_replicas}")
        return
    if first + count > len(gpus):
        raise DeviceError(f"--nr_gpu {count} per process: this process needs GPUs {first}.."
                          f"{first + count - 1} but {len(gpus)} are visible "
                          f"(CUDA_VISIBLE_DEVICES); lower --nr_gpu or start fewer processes "
                          f"per machine")
    tf.config.set_visible_devices(gpus[first:first + count], "GPU")


class SingleProcess:
    """One process: the strategy's own reduction is all there is."""
    rank, size, local_rank = 0, 1, 0
    is_chief = True
    strategy_spans_processes = False  # replica ids of the strategy are this process's own
    every_process_saves = False

    def describe(self):
        return "1 process"

    def sum_in_step(self, tensors):
        """Sum, over processes, of tensors already summed over this process's replicas (inside
        the compiled step)."""
        return tensors

    def sum_over_processes(self, array):
        """Eager sum of a numpy array over processes (every process gets the result)."""
        return array

    def barrier(self):
        """Returns once every process has called it."""
        self.sum_over_processes(np.zeros([1], np.float32))

    def broadcast_variables(self, strategy, variables):
        """Give every process the chief's values of `variables`."""


def _pack(variables):
    """Every variable's value flattened into one float64 vector (exact for float32 and for
    counters below 2**53)."""
    return tf.concat([tf.reshape(tf.cast(tf.convert_to_tensor(v), tf.float64), [-1])
                      for v in variables], axis=0)


def _unpack_into(strategy, variables, flat):
    sizes = [int(np.prod(v.shape)) for v in variables]
    with strategy.scope():
        for variable, piece in zip(variables, tf.split(flat, sizes)):
            assign_on_every_device(variable, tf.cast(tf.reshape(piece, variable.shape),
                                                     variable.dtype))


class HorovodProcesses(SingleProcess):
    """Horovod: allreduce sums gradients and metrics; broadcast from rank 0 after init/resume."""

    def __init__(self):
        try:
            import horovod.tensorflow as hvd
        except ImportError as error:
            raise DeviceError(f"launched by horovodrun/mpirun but Horovod is not importable "
                              f"({error}); install it in this environment with "
                              f"HOROVOD_WITH_TENSORFLOW=1 pip install --no-build-isolation "
                              f"horovod=={HOROVOD_VERSION} (it builds against TensorFlow 2.13, "
                              f"not the newest), or launch without horovodrun") from None
        hvd.init()
        self.hvd = hvd
        self.rank, self.size, self.local_rank = hvd.rank(), hvd.size(), hvd.local_rank()
        self.is_chief = self.rank == 0
        self._calls = 0

    def describe(self):
        return f"Horovod rank {self.rank} of {self.size} (local rank {self.local_rank})"

    def _name(self, what):
        self._calls += 1  # eager collectives need names that agree across processes
        return f"{what}_{self._calls}"

    def sum_in_step(self, tensors):
        return self.hvd.grouped_allreduce([tf.convert_to_tensor(t) for t in tensors],
                                          op=self.hvd.Sum)

    def sum_over_processes(self, array):
        return self.hvd.allreduce(tf.constant(array), op=self.hvd.Sum,
                                  name=self._name("sum_over_processes")).numpy()

    def broadcast_variables(self, strategy, variables):
        flat = self.hvd.broadcast(_pack(variables), root_rank=0,
                                  name=self._name("broadcast_variables"))
        _unpack_into(strategy, variables, flat)


class MultiWorkerProcesses(SingleProcess):
    """tf.distribute.MultiWorkerMirroredStrategy from TF_CONFIG: the strategy's replicas span
    every worker, so its reductions already sum over processes. As the TensorFlow guide asks,
    every worker writes checkpoints, the non-chief ones to a scratch directory they delete."""
    strategy_spans_processes = True
    every_process_saves = True

    def __init__(self):
        self.strategy = None  # set by setup() once this process's GPUs are chosen
        try:
            config = json.loads(os.environ["TF_CONFIG"])
            cluster, task = config.get("cluster", {}), config.get("task", {})
        except (ValueError, AttributeError) as error:
            raise DeviceError(f"TF_CONFIG is not a JSON object with 'cluster' and 'task' "
                              f"({error}); fix or unset it") from None
        # the chief (if the cluster names one) is rank 0, then the workers in order
        ranks = [("chief", i) for i in range(len(cluster.get("chief", [])))] + \
                [("worker", i) for i in range(len(cluster.get("worker", [])))]
        me = (task.get("type"), int(task.get("index", 0)))
        if me not in ranks:
            raise DeviceError(f"TF_CONFIG task {me} is not a chief or worker of its cluster; "
                              f"fix TF_CONFIG")
        self.rank, self.size, self.local_rank = ranks.index(me), len(ranks), 0
        self.is_chief = self.rank == 0

    def describe(self):
        return f"MultiWorkerMirroredStrategy worker {self.rank} of {self.size}"

    def sum_over_processes(self, array):
        value = tf.constant(array)
        local_replicas = len(self.strategy.extended.worker_devices)
        first = self.rank * local_replicas

        def share():  # one replica per process contributes its array
            replica = tf.distribute.get_replica_context().replica_id_in_sync_group
            return value * tf.cast(tf.equal(replica, first), value.dtype)

        return self.strategy.reduce(tf.distribute.ReduceOp.SUM, self.strategy.run(share),
                                    axis=None).numpy()

    def broadcast_variables(self, strategy, variables):
        flat = _pack(variables).numpy()
        _unpack_into(strategy, variables,
                     self.sum_over_processes(flat if self.is_chief else np.zeros_like(flat)))

