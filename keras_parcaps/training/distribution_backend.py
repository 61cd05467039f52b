"""Data-parallel training on each backend's own engine (the one backend-aware module).

One process: JAX `keras.distribution.DataParallel`, TensorFlow
`tf.distribute.MirroredStrategy`, PyTorch one device. Several processes (one
per GPU or per host, started by a launcher): PyTorch
`torch.nn.parallel.DistributedDataParallel` (`torchrun`: gloo on CPU, NCCL on
GPU), TensorFlow `tf.distribute.MultiWorkerMirroredStrategy` (`TF_CONFIG`),
JAX `jax.distributed.initialize` with `DataParallel` over every process's
devices. `initialize_processes()` reads the launcher's environment and joins
the processes; everything else asks it how many there are.

Each process feeds its own shard of every global batch (see
`kp.data.OnePerClassBatches(num_shards=..., shard_index=...)`), gradients are
averaged over all processes, and BatchNormalization normalizes with the
statistics of the global batch (synchronized over processes and devices), so
a distributed step equals a single-process step on the same global batch.
"""

import contextlib
import json
import math
import os

import keras
import numpy as np

# Filled once by `initialize_processes`.
_CLUSTER = {
    "initialized": False,
    "count": 1,
    "index": 0,
    "engine": None,
    "strategy": None,
}


def _env_int(*names):
    for name in names:
        value = os.environ.get(name)
        if value not in (None, ""):
            return int(value)
    return None


def _tf_config():
    text = os.environ.get("TF_CONFIG")
    if not text:
        return None
    config = json.loads(text)
    cluster = config.get("cluster", {})
    tasks = sum(len(cluster.get(kind, [])) for kind in ("chief", "worker"))
    return config if tasks > 1 else None


def launcher_processes() -> int:
    """The number of processes the launcher's environment announces.

    Reads torchrun's `WORLD_SIZE` (torch), `TF_CONFIG` (TensorFlow: its
    chief and workers) and `JAX_NUM_PROCESSES` or
    `KERAS_DISTRIBUTION_NUM_PROCESSES` (JAX) for the current backend; 1
    when none is set.

    Example:

        >>> launcher_processes()  # a plain `python` process
        1
    """
    backend = keras.backend.backend()
    if backend == "torch":
        return _env_int("WORLD_SIZE") or 1
    if backend == "tensorflow":
        config = _tf_config()
        if config is None:
            return 1
        cluster = config["cluster"]
        return len(cluster.get("chief", [])) + len(cluster.get("worker", []))
    return _env_int("JAX_NUM_PROCESSES", "KERAS_DISTRIBUTION_NUM_PROCESSES") or 1


def initialize_processes() -> int:
    """Joins the processes started by a launcher; returns their number.

    Call it first thing in every process, before any model or tensor is
    made (TensorFlow fixes its devices at the first op). With one process
    it does nothing. Calling it again returns the same count.

    - PyTorch: `torch.distributed.init_process_group` from torchrun's
      `RANK`, `WORLD_SIZE`, `MASTER_ADDR` and `MASTER_PORT`, with NCCL
      when CUDA is available (each process on GPU `LOCAL_RANK`), else gloo;
      under torchrun also for one process (the DDP path on one GPU).
    - TensorFlow: `tf.distribute.MultiWorkerMirroredStrategy` from
      `TF_CONFIG` (the `chief` task, or `worker` 0, is the chief).
    - JAX: `jax.distributed.initialize` with `JAX_COORDINATOR_ADDRESS`,
      `JAX_NUM_PROCESSES` and `JAX_PROCESS_ID` (or Keras's
      `KERAS_DISTRIBUTION_JOB_ADDRESSES`, `KERAS_DISTRIBUTION_NUM_PROCESSES`
      and `KERAS_DISTRIBUTION_PROCESS_ID`); process 0 is the chief.

    Returns:
        The number of processes.

    Example:

        >>> initialize_processes(), process_index(), is_chief()
        (1, 0, True)
    """
    if _CLUSTER["initialized"]:
        return _CLUSTER["count"]
    count = launcher_processes()
    backend = keras.backend.backend()
    # Under torchrun even one process joins a process group, so that
    # `torchrun --nproc_per_node=1` runs the DistributedDataParallel path.
    if backend == "torch" and (count > 1 or "TORCHELASTIC_RUN_ID" in os.environ):
        import torch
        import torch.distributed as dist

        if torch.cuda.is_available():
            torch.cuda.set_device(_env_int("LOCAL_RANK") or 0)
            engine = "nccl"
        else:
            engine = "gloo"
        if not dist.is_initialized():
            dist.init_process_group(engine)
        _CLUSTER.update(
            index=dist.get_rank(),
            count=dist.get_world_size(),
            engine=f"torch DistributedDataParallel ({engine})",
        )
    elif count > 1 and backend == "tensorflow":
        import tensorflow as tf

        strategy = tf.distribute.MultiWorkerMirroredStrategy()
        resolver = strategy.cluster_resolver
        cluster = resolver.cluster_spec().as_dict()
        # Chief first, then the workers: the chief (or worker 0) is index 0.
        offset = len(cluster.get("chief", [])) if resolver.task_type == "worker" else 0
        _CLUSTER.update(
            index=offset + int(resolver.task_id),
            count=count,
            strategy=strategy,
            engine="TensorFlow MultiWorkerMirroredStrategy",
        )
    elif count > 1:
        import jax

        address = (
            os.environ.get("JAX_COORDINATOR_ADDRESS")
            or (os.environ.get("KERAS_DISTRIBUTION_JOB_ADDRESSES", "").split(",")[0])
        )
        process_id = _env_int("JAX_PROCESS_ID", "KERAS_DISTRIBUTION_PROCESS_ID")
        if not address or process_id is None:
            raise ValueError(
                f"{count} JAX processes need a coordinator address and a "
                "process id: set JAX_COORDINATOR_ADDRESS and JAX_PROCESS_ID. "
                f"Received: JAX_COORDINATOR_ADDRESS={address!r}, "
                f"JAX_PROCESS_ID={process_id}"
            )
        jax.distributed.initialize(address, count, process_id)
        _CLUSTER.update(
            index=jax.process_index(),
            count=jax.process_count(),
            engine="JAX jax.distributed + DataParallel",
        )
    _CLUSTER["initialized"] = True
    return _CLUSTER["count"]


def process_count() -> int:
    """The number of training processes (1 unless a launcher started more).

    Example:

        >>> process_count()  # a plain `python` process
        1
    """
    return initialize_processes()


def process_index() -> int:
    """This process's index, 0 for the chief.

    Example:

        >>> process_index()  # a plain `python` process is the chief
        0
    """
    initialize_processes()
    return _CLUSTER["index"]


def is_chief() -> bool:
    """Whether this process writes checkpoints, logs and reports.

    Example:

        >>> is_chief()  # a plain `python` process
        True
    """
    return process_index() == 0


def list_devices() -> list[str]:
    """The devices data parallelism would use in this process.

    Accelerators, else CPUs. On JAX with several processes: every process's
    devices (`DataParallel` spans them all). With torchrun: this process's
    GPU (`LOCAL_RANK`), else the CPU.
    """
    backend = keras.backend.backend()
    initialize_processes()
    if backend == "tensorflow":
        import tensorflow as tf

        if _CLUSTER["strategy"] is not None:
            # The worker's own devices (the logical devices of a worker also
            # list the cluster's other jobs).
            return list(_CLUSTER["strategy"].extended.worker_devices)
        gpus = tf.config.list_logical_devices("GPU")
        return [d.name for d in (gpus or tf.config.list_logical_devices("CPU"))]
    if backend == "torch":
        import torch

        # `keras.distribution` does not exist for the torch backend.
        if _torch_group():
            if torch.cuda.is_available():
                return [f"cuda:{torch.cuda.current_device()}"]
            return ["cpu"]
        return [f"cuda:{i}" for i in range(torch.cuda.device_count())] or ["cpu"]
    return list(keras.distribution.list_devices())


def replica_count(devices=None) -> int:
    """Data-parallel replicas over all processes: how many shards a batch has."""
    devices = list_devices() if devices is None else list(devices)
    if keras.backend.backend() == "jax":
        return len(devices)  # already every process's devices
    return len(devices) * process_count()


def describe(devices=None) -> str:
    """One line: processes, devices and engine of data-parallel training.

    Example:

        >>> describe(["cpu"]).startswith("1 process, 1 device (cpu)")
        True
    """
    devices = list_devices() if devices is None else list(devices)
    count = process_count()
    # "cpu:0", "cuda:1", "/job:worker/replica:0/task:0/device:CPU:0" ...
    names = (str(d).lower().split("/")[-1].removeprefix("device:") for d in devices)
    kind = sorted({name.split(":")[0] for name in names})
    local = len(devices) if keras.backend.backend() != "jax" else len(devices) // count
    engine = (
        _CLUSTER["engine"]
        or {
            "jax": "JAX DataParallel",
            "tensorflow": "TensorFlow MirroredStrategy",
            "torch": "torch",
        }[keras.backend.backend()]
    )
    processes = "1 process" if count == 1 else f"{count} processes"
    return (
        f"{processes}, {local} device{'s' if local != 1 else ''} "
        f"({', '.join(kind)}) each, {replica_count(devices)} replicas in all; "
        f"{engine}; this is process {process_index()}"
        f"{' (chief)' if is_chief() else ''}"
    )


def replica_batch_multiple(
    num_classes: int, n_devices: int, n_processes: int = 1
) -> int:
    """Images per class so that a one-per-class batch splits evenly.

    A batch of `k * num_classes` images, `k` of each class, splits into
    `n = n_processes * n_devices` equal shards when `k = n / gcd(num_classes,
    n)`: every class keeps the same share of every global batch.

    Args:
        num_classes: Classes (images per batch with one per class).
        n_devices: Devices per process.
        n_processes: Processes. Default 1.

    Returns:
        The smallest `k` with `k * num_classes` divisible by the replicas.

    Example:

        >>> replica_batch_multiple(num_classes=15, n_devices=2)  # 30-image batches
        2
        >>> replica_batch_multiple(15, n_devices=4, n_processes=2)  # 120 images
        8
    """
    n = n_devices * n_processes
    return n // math.gcd(num_classes, n)


@contextlib.contextmanager
def data_parallel(devices=None):
    """Context in which models are built and trained data-parallel.

    Build, compile and fit the model inside the context. Each global batch is
    split across `devices` (and across processes, see
    `initialize_processes`) and the gradients are averaged, so a step equals
    a single-device step on the same global batch. With one-per-class
    batches, use `replica_batch_multiple` images per class so the split is
    even. On PyTorch the model is wrapped in `DistributedDataParallel` by
    `kp.training.train` (one device per process: launch with `torchrun`).

    Args:
        devices: Device names (`keras.distribution.list_devices()` on JAX,
            TensorFlow device names such as `"/cpu:0"` on TensorFlow).
            Default: `list_devices()`.

    Example:

        >>> import numpy as np
        >>> with data_parallel() as devices:
        ...     model = keras.Sequential(
        ...         [keras.Input((3,)), keras.layers.Dense(2, activation="softmax")]
        ...     )
        ...     model.compile(optimizer="sgd", loss="categorical_crossentropy")
        ...     history = model.fit(
        ...         np.ones((4, 3), "float32"), np.eye(2)[[0, 1, 0, 1]],
        ...         batch_size=4, verbose=0,
        ...     )
        >>> len(history.history["loss"]), len(devices) >= 1
        (1, True)
        >>> # The paper's network on every GPU of a machine:
        >>> with data_parallel():  # doctest: +SKIP
        ...     model = kp.models.build_parallel_dr(n_branches=12)
        ...     model.fit(batches, epochs=700)
    """
    backend = keras.backend.backend()
    initialize_processes()
    devices = list(devices) if devices is not None else list_devices()
    if not devices:
        raise ValueError("`devices` is empty: data parallelism needs a device.")
    if backend == "jax":
        previous = keras.distribution.distribution()
        # Each process feeds its own shard (`OnePerClassBatches` shards),
        # so Keras must not shard the input again.
        keras.distribution.set_distribution(
            keras.distribution.DataParallel(
                devices=devices, auto_shard_dataset=process_count() == 1
            )
        )
        try:
            yield devices
        finally:
            keras.distribution.set_distribution(previous)
    elif backend == "tensorflow":
        import tensorflow as tf

        strategy = _CLUSTER["strategy"] or tf.distribute.MirroredStrategy(devices)
        with strategy.scope():
            yield devices
    elif len(devices) == 1:
        yield devices
    else:
        raise NotImplementedError(
            f"PyTorch trains one device per process (asked for "
            f"devices={devices} in one process): start one process per GPU "
            "with `torchrun --nproc_per_node=N`, which "
            "`DistributedDataParallel` then joins."
        )


def _torch_group():
    initialize_processes()
    return _CLUSTER["engine"] is not None and keras.backend.backend() == "torch"


def _is_multi_worker():
    return _CLUSTER["strategy"] is not None


def _sync_torch_moments(layer):
    """`BatchNormalization._moments` over the global batch of all processes."""
    import torch
    import torch.distributed.nn.functional as dist_fn

    original = layer._moments

    def moments(inputs, mask):
        if mask is not None:
            return original(inputs, mask)
        axes = list(layer._reduction_axes)
        x = inputs.float()
        count = x.new_tensor([float(np.prod([x.shape[a] for a in axes]))])
        # Sums, sums of squares and counts in one differentiable all-reduce;
        # the variance is E[x^2] - E[x]^2, as in Keras's own `moments`.
        totals = dist_fn.all_reduce(
            torch.cat([x.sum(dim=axes), (x * x).sum(dim=axes), count])
        )
        channels = (totals.shape[0] - 1) // 2
        n = totals[-1]
        mean = totals[:channels] / n
        variance = totals[channels:-1] / n - mean * mean
        return mean.to(inputs.dtype), variance.to(inputs.dtype)

    return moments


def _check_torch_parameters(model):
    """Raises when `model.parameters()` misses variables DDP must average.

    Keras's torch backend registers variables by path; a custom layer whose
    sub-layers repeat a path hides all of them but one from torch, and
    `DistributedDataParallel` would silently not average their gradients.
    """
    registered = {id(p) for p in model.parameters()}
    missing = [
        v.path for v in model.trainable_variables if id(v.value) not in registered
    ]
    if missing:
        raise ValueError(
            f"{len(missing)} trainable variable(s) of the model are not torch "
            "parameters of it (their paths repeat another variable's, which "
            "Keras's torch backend registers by path), so "
            "DistributedDataParallel would not average their gradients: give "
            "the layers that hold them distinct names or name scopes. "
            f"Received: variables with repeated paths {missing[:5]}"
        )


def _ddp_train_step(model, ddp):
    """Keras's torch `train_step` with the forward pass through `ddp`.

    As in the Keras guide "Multi-GPU distributed training with PyTorch", the
    Keras model runs inside `DistributedDataParallel`, whose backward hooks
    average the gradients of all processes; the Keras loss, optimizer and
    metrics are unchanged.
    """
    import torch
    from keras.src.trainers.data_adapters import data_adapter_utils

    def train_step(data):
        x, y, sample_weight = data_adapter_utils.unpack_x_y_sample_weight(data)
        if model._call_has_training_arg:
            y_pred = ddp(x, training=True)
        else:
            y_pred = ddp(x)
        model.zero_grad()
        loss = model._compute_loss(
            x=x, y=y, y_pred=y_pred, sample_weight=sample_weight, training=True
        )
        model._loss_tracker.update_state(
            loss,
            sample_weight=next(i for i in keras.tree.flatten(x) if i is not None).shape[
                0
            ],
        )
        loss = model.optimizer.scale_loss(loss)
        loss.backward()
        weights = model.trainable_weights[:]
        with torch.no_grad():
            model.optimizer.apply([v.value.grad for v in weights], weights)
        return model.compute_metrics(x, y, y_pred, sample_weight=sample_weight)

    return train_step


def _tf_vector_logs(step):
    """Keras 3 reduces multi-worker logs along axis 0: give them one."""
    import tensorflow as tf

    def wrapped(data):
        return keras.tree.map_structure(lambda v: tf.reshape(v, [-1]), step(data))

    return wrapped


@contextlib.contextmanager
def distributed_fit(model, batches):
    """Context in which `model.fit` trains over every process and device.

    Used by `kp.training.train` inside `data_parallel()`; outside it (one
    device, one process) it changes nothing. BatchNormalization layers
    normalize with the global batch's statistics (synchronized over
    replicas) for the duration. PyTorch with several processes: the
    training step runs the model in `DistributedDataParallel`. TensorFlow
    with several workers: works around two Keras 3 (3.15) limits with
    `MultiWorkerMirroredStrategy`: the model is
    built before `fit` rather than from a cross-worker reduction of the
    first batch, and the step's scalar logs get the axis Keras reduces.

    Args:
        model: A built, compiled model.
        batches: This process's training batches (TensorFlow with several
            workers builds the optimizer and metrics from the first one).
    """
    backend = keras.backend.backend()
    restore = []
    from keras_parcaps.callbacks.precise_batch_norm import batch_norm_layers

    layers = batch_norm_layers(model)
    if backend == "tensorflow":
        import tensorflow as tf

        if tf.distribute.has_strategy():
            for layer in layers:
                restore.append((layer, "synchronized", layer.synchronized))
                layer.synchronized = True
    if backend == "torch" and _torch_group():
        import torch

        for layer in layers:
            restore.append((layer, "_moments", None))
            layer._moments = _sync_torch_moments(layer)
        _check_torch_parameters(model)
        device = torch.cuda.current_device() if torch.cuda.is_available() else None
        # As in the Keras guide: the Keras model is the torch module.
        ddp = torch.nn.parallel.DistributedDataParallel(
            model,
            device_ids=None if device is None else [device],
            # Keras keeps BatchNormalization statistics in (non-trainable)
            # parameters, synchronized above, not in torch buffers.
            broadcast_buffers=False,
        )
        restore.append((model, "train_step", None))
        model.train_step = _ddp_train_step(model, ddp)
    if backend == "tensorflow" and _is_multi_worker():
        strategy = _CLUSTER["strategy"]
        with strategy.scope():
            model._symbolic_build(data_batch=tuple(batches[0]))
        for name in ("train_step", "test_step"):
            restore.append((model, name, None))
            setattr(model, name, _tf_vector_logs(getattr(model, name)))
        restore.append((model, "_maybe_symbolic_build", None))
        model._maybe_symbolic_build = lambda iterator=None, data_batch=None: None
    try:
        yield model
    finally:
        for owner, name, value in reversed(restore):
            if value is None:
                delattr(owner, name)  # back to the class's method
            else:
                setattr(owner, name, value)
        if restore:
            model.train_function = None
            model.test_function = None


def fit_input(batches, first_epoch: int = 0):
    """What `fit` takes for `batches` (a sharded `PyDataset`) in this process.

    The batches themselves, except for TensorFlow with several workers: a
    distributed dataset built per worker from its own shard
    (`distribute_datasets_from_function`), since Keras would otherwise shard
    the `PyDataset`'s batches among the workers again. It runs from
    `first_epoch` on, without an end.
    """
    if keras.backend.backend() != "tensorflow" or not _is_multi_worker():
        return batches
    import copy

    import tensorflow as tf

    batches = copy.copy(batches)  # its own epoch, read ahead by tf.data
    x, y = batches[0]

    def steps():
        epoch = first_epoch
        while True:
            batches.set_epoch(epoch)
            for index in range(len(batches)):
                yield batches[index]
            epoch += 1

    def dataset(_):
        signature = (
            tf.TensorSpec((None, *x.shape[1:]), x.dtype),
            tf.TensorSpec((None, *y.shape[1:]), y.dtype),
        )
        return tf.data.Dataset.from_generator(steps, output_signature=signature)

    return _CLUSTER["strategy"].distribute_datasets_from_function(dataset)


def all_gather(array) -> np.ndarray:
    """Concatenates every process's `array` (equal shapes) in process order.

    Example:

        >>> all_gather(np.arange(3)).tolist()  # one process: itself
        [0, 1, 2]
    """
    array = np.asarray(array)
    count = process_count()
    if count == 1:
        return array
    backend = keras.backend.backend()
    if backend == "torch":
        import torch.distributed as dist

        parts = [None] * count
        dist.all_gather_object(parts, array)
        return np.concatenate(parts)
    if backend == "jax":
        from jax.experimental import multihost_utils

        return np.asarray(multihost_utils.process_allgather(array, tiled=True))
    import tensorflow as tf

    # Each worker fills its own slot of a zero buffer from its first local
    # replica; a sum over all replicas then holds every worker's part.
    strategy = _CLUSTER["strategy"]
    local = strategy.extended._num_devices_per_worker
    slots = np.zeros((count, *array.shape), array.dtype)
    slots[process_index()] = array

    def gather(value):
        context = tf.distribute.get_replica_context()
        first = tf.equal(context.replica_id_in_sync_group % local, 0)
        return context.all_reduce("SUM", tf.where(first, value, tf.zeros_like(value)))

    result = strategy.run(gather, args=(tf.constant(slots),))
    result = strategy.experimental_local_results(result)[0].numpy()
    return result.reshape(count * array.shape[0], *array.shape[1:])


def all_mean(values: dict) -> dict:
    """The mean over processes of each float in `values` (e.g. epoch logs)."""
    if process_count() == 1 or not values:
        return dict(values)
    keys = sorted(values)
    gathered = all_gather(np.array([[float(values[k]) for k in keys]]))
    return dict(zip(keys, gathered.mean(axis=0).tolist(), strict=True))


def barrier() -> None:
    """Waits until every process gets here."""
    if process_count() > 1:
        all_gather(np.zeros(1, "float32"))


def check_same(name: str, value: int) -> int:
    """Raises unless every process passes the same integer `value`.

    Args:
        name: What `value` is, for the error message.
        value: An int or bool.

    Returns:
        `value`.

    Example:

        >>> check_same("the epoch", 3)  # one process agrees with itself
        3
    """
    if process_count() > 1:
        values = all_gather(np.array([float(value)], "float32"))
        if len(set(values.tolist())) > 1:
            raise RuntimeError(
                f"The processes disagree on {name}: {values.tolist()} (process "
                "order). Do all of them see the same run folder?"
            )
    return value


def on_chief(function):
    """Runs `function()` on the chief; every process gets its integer result.

    What only the chief does with the run folder (take its lock, check or
    write `run.json`, find the checkpoint to resume from) is decided there
    and shared, so that every process goes on with the same decision. When
    `function` raises on the chief, the chief raises that error and the
    other processes a `RuntimeError` saying so, instead of waiting forever
    at the next collective. Every process must make the same calls.

    Args:
        function: A callable without arguments returning an int, a bool or
            `None` (taken as 0); called on the chief only.

    Returns:
        The chief's result, as an int, on every process.

    Example:

        >>> on_chief(lambda: 3)  # one process: the chief
        3
    """
    error = None
    value = 0
    if is_chief():
        try:
            value = int(function() or 0)
        except Exception as caught:  # re-raised below, after the others know
            error = caught
    if process_count() > 1:
        # float32 on every engine (JAX without x64 has no int64); exact
        # for the epoch counts and flags exchanged here.
        ok, value = all_gather(np.array([[error is None, value]], "float32"))[0]
        value = int(round(float(value)))
        if not ok and error is None:
            raise RuntimeError(
                "The chief process (process 0) failed while preparing the run "
                "folder; its own output names the error."
            )
    if error is not None:
        raise error
    return value


def in_data_parallel() -> bool:
    """Whether training now runs data-parallel (inside `data_parallel()`)."""
    backend = keras.backend.backend()
    if backend == "jax":
        return keras.distribution.distribution() is not None
    if backend == "tensorflow":
        import tensorflow as tf

        return tf.distribute.has_strategy()
    return _torch_group()


def local_model(model, copy=None):
    """`model`, or a copy of it that runs on this process alone.

    JAX with a distribution set: a clone built without the distribution
    (into `copy` when given) with `model`'s current weights; its calls need
    no other process and no even batch. TensorFlow and PyTorch: `model`
    itself (called directly, outside the strategy, it runs locally).
    """
    if keras.backend.backend() != "jax" or keras.distribution.distribution() is None:
        return model
    with _no_distribution():
        if copy is None:
            copy = keras.models.clone_model(model)
        copy.set_weights([np.asarray(w) for w in model.get_weights()])
    return copy


@contextlib.contextmanager
def _no_distribution():
    """JAX: no `keras.distribution` for the duration (local computations)."""
    if keras.backend.backend() != "jax":
        yield
        return
    previous = keras.distribution.distribution()
    keras.distribution.set_distribution(None)
    try:
        yield
    finally:
        keras.distribution.set_distribution(previous)


def local_predict(model, x, batch_size: int = 32) -> np.ndarray:
    """`model`'s scores of `x` computed in this process only."""
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        if tf.distribute.has_strategy():
            # `predict` would run every replica; a direct call runs here.
            return (
                np.concatenate(
                    [
                        keras.ops.convert_to_numpy(
                            model(x[i : i + batch_size], training=False)
                        )
                        for i in range(0, len(x), batch_size)
                    ]
                )
                if len(x)
                else np.zeros((0, *model.output_shape[1:]), "float32")
            )
    with _no_distribution():
        return np.asarray(model.predict(x, batch_size=batch_size, verbose=0))
