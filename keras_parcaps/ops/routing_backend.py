"""The routing loops' backend-specific fast paths.

The only module of `keras_parcaps.ops` that imports a backend library. The
routing functions themselves are written in `keras.ops`; this module runs
one of them either as is (the `keras.ops` path) or on a fast path, which
`set_jit_compile(False)` turns off on every backend.

`run` compiles a loop into one fused program, even when the model around it
is not compiled:

- TensorFlow: `tf.function(jit_compile=True)`. Keras's default `compile()`
  leaves XLA off on a CPU, where the routing loop then runs as dozens of
  separate graph ops, each a pass over the votes; XLA fuses them (about
  3x faster for Sabour's DigitCaps, see `docs/benchmarks.md`). Inside a
  function that XLA compiles whole (`jit_compile=True`, the default on a
  GPU) the loop runs inlined.
- JAX: `jax.jit` (a no-op inside Keras's default jitted train step; it
  fuses the loop when a model runs eagerly).
- PyTorch: none. `torch.compile` on a CPU generates and compiles C++ at the
  first call (minutes on a small machine, again for every new batch size),
  which is a poor default for a layer; the `keras.ops` path runs.

Static arguments (iteration counts, flags) are passed as keywords; one
compiled function is kept per function and set of static arguments.

`read_shared` runs a loop that reads one large tensor, or a few, through
many matrix products (EM routing reads its centered votes and their squares
twice per iteration). Autograd writes
the gradient of every such product as an outer product of the tensor's
size and adds them up, a pass over memory each; on PyTorch, whose
operations autograd runs one by one, `read_shared` assembles the gradient
as one batched matrix product over all the reads instead (`EMClassCaps`'
training step 287 -> 171 ms at the paper's shape, `docs/benchmarks.md`).
XLA (TensorFlow, JAX) compiles the sum as one program already.
"""

import functools

import keras
from keras import ops

_enabled = True
_compiled = {}


def set_jit_compile(enabled: bool) -> None:
    """Turns the routing loops' fast paths on (the default) or off."""
    global _enabled
    _enabled = bool(enabled)


def jit_compile_enabled() -> bool:
    """Whether the routing loops run compiled on this backend."""
    return _enabled and keras.backend.backend() in ("tensorflow", "jax")


def run(fn, *tensors, **static):
    """`fn(*tensors, **static)`, compiled where the backend can.

    Args:
        fn: A function of tensors written in `keras.ops`.
        *tensors: Its tensor arguments.
        **static: Its static (hashable, Python) arguments.

    Returns:
        What `fn` returns.
    """
    if not jit_compile_enabled() or _inside_tf_xla_function():
        return fn(*tensors, **static)
    backend = keras.backend.backend()
    key = (backend, fn, tuple(sorted(static.items())))
    compiled = _compiled.get(key)
    if compiled is None:
        bound = functools.partial(fn, **static)
        if backend == "tensorflow":
            import tensorflow as tf

            # No `reduce_retracing`: it would relax the static shapes that
            # the routing code reads.
            compiled = tf.function(bound, jit_compile=True, autograph=False)
        else:
            import jax

            compiled = jax.jit(bound)
        _compiled[key] = compiled
    if backend == "tensorflow":
        import tensorflow as tf

        # Keras variables and symbolic tensors become plain tf tensors, so
        # that the variable reads stay outside the compiled function.
        tensors = [tf.convert_to_tensor(t) for t in tensors]
    else:
        import jax.numpy as jnp

        tensors = [jnp.asarray(t) for t in tensors]
    return compiled(*tensors)


def _inside_tf_xla_function() -> bool:
    """Whether TensorFlow is tracing a function that XLA compiles whole.

    There (`compile(jit_compile=True)`, Keras's default on a GPU) the loop
    is compiled with the rest, and a nested `tf.function(jit_compile=True)`
    made XLA compile the whole training step again at every step: 15 s a
    step for `EMClassCaps` at the paper's shape, against 69 ms with the loop
    inlined (docs/benchmarks.md).
    """
    if keras.backend.backend() != "tensorflow":
        return False
    import tensorflow as tf

    # No public API tells; this is what `tf.function` itself checks.
    from tensorflow.python.ops import control_flow_util

    graph = tf.compat.v1.get_default_graph()
    return control_flow_util.GraphOrParentsInXlaContext(graph)


def _read_function(shared, read_transposed):
    """`read(x, transpose=False)` of one tensor `shared` `(..., i, c)`."""

    def read(x, transpose=False):
        if not transpose:
            return ops.matmul(x, shared)
        return read_transposed(x, shared)

    return read


def plain_read(shared):
    """The `read` function of `read_shared`'s `fn`, in `keras.ops`.

    Args:
        shared: A tensor `(..., i, c)`, or a tuple of such tensors.

    Returns:
        `read(x, transpose=False)`: `x @ shared` for `x` `(..., m, i)`, or
        with `transpose=True` `x @ shared^T` for `x` `(..., m, c)`; for a
        tuple, a tuple of such functions, one per tensor.
    """
    # PyTorch's batched matrix-vector product is 3x faster with the long
    # operand on the right, transposed; XLA's with it on the left.
    long_on_right = keras.backend.backend() == "torch"

    def read_transposed(x, tensor):
        if long_on_right:
            return ops.matmul(x, ops.swapaxes(tensor, -1, -2))
        # TensorFlow's EMClassCaps step: 186 ms the other way round, 124 ms.
        return ops.swapaxes(ops.matmul(tensor, ops.swapaxes(x, -1, -2)), -1, -2)

    if isinstance(shared, (tuple, list)):
        return tuple(_read_function(t, read_transposed) for t in shared)
    return _read_function(shared, read_transposed)


def read_shared(fn, shared, *tensors, **static):
    """`fn(read, *tensors, **static)`, where `fn` reads `shared` through
    `read` only (see `plain_read`).

    On PyTorch, when a gradient is being recorded, the gradient with respect
    to `shared` is one batched matrix product over all of `fn`'s reads (see
    the module docstring); elsewhere `read` is `plain_read(shared)`.

    Args:
        fn: A function written in `keras.ops` whose first argument is the
            `read` function (for a tuple `shared`, the tuple of them).
        shared: The tensor read, `(..., i, c)`, or a tuple of such tensors
            (with the same leading axes and `i`); every read's other
            operand has the same leading axes.
        *tensors: `fn`'s other tensor arguments.
        **static: Its static (hashable, Python) arguments.

    Returns:
        What `fn` returns: a tensor or a tuple of tensors.
    """
    several = isinstance(shared, (tuple, list))
    parts = tuple(shared) if several else (shared,)
    if keras.backend.backend() == "torch" and _enabled:
        import torch

        # Keras infers PyTorch output shapes on the meta device.
        if torch.is_grad_enabled() and parts[0].device.type != "meta":
            outputs = _stacked_reads_function().apply(
                functools.partial(fn, **static), several, len(parts), *parts, *tensors
            )
            return outputs[0] if len(outputs) == 1 else outputs
    return fn(plain_read(shared), *tensors, **static)


_stacked_reads = None  # the class below, made at its first use


def _stacked_reads_function():
    """`_make_stacked_reads()`, made once (without `functools.cache`, whose
    wrapper `torch.compile` warns about when it traces a training step)."""
    global _stacked_reads
    if _stacked_reads is None:
        _stacked_reads = _make_stacked_reads()
    return _stacked_reads


def _make_stacked_reads():
    """The `torch.autograd.Function` behind `read_shared` on PyTorch.

    Its forward pass runs `fn` under autograd on detached inputs, with a
    `read` per shared tensor that records each product (`P = x @ shared` or
    `x @ shared^T`), its operand `x` and which tensor it read, but gives the
    shared tensors no gradient. Its backward pass asks that inner graph for
    the gradients of the other inputs and of every product, then forms each
    shared tensor's `d shared = sum x^T dP + sum dP^T x` (the first sum over
    its plain reads, the second over its transposed ones) as one batched
    matrix product of the stacked factors.
    """
    import torch

    class StackedReads(torch.autograd.Function):
        @staticmethod
        def forward(ctx, fn, several, num_parts, *inputs):
            reads = []

            def reader(index, constant):
                def read(x, transpose=False):
                    product = torch.matmul(
                        x, constant.transpose(-1, -2) if transpose else constant
                    )
                    reads.append((index, transpose, x, product))
                    return product

                return read

            readers = tuple(
                reader(k, part.detach()) for k, part in enumerate(inputs[:num_parts])
            )
            needs = ctx.needs_input_grad[3 + num_parts :]
            tensors = [
                t.detach().requires_grad_(grad)
                for t, grad in zip(inputs[num_parts:], needs)
            ]
            with torch.enable_grad():
                outputs = fn(readers if several else readers[0], *tensors)
            outputs = outputs if isinstance(outputs, tuple) else (outputs,)
            ctx.graph = (outputs, tensors, reads, num_parts)
            return tuple(o.detach() for o in outputs)

        @staticmethod
        @torch.autograd.function.once_differentiable
        def backward(ctx, *output_grads):
            outputs, tensors, reads, num_parts = ctx.graph
            del ctx.graph
            pairs = [(o, g) for o, g in zip(outputs, output_grads) if o.requires_grad]
            if not pairs:
                return (None,) * (3 + num_parts + len(tensors))
            wanted = [t for t in tensors if t.requires_grad]
            recorded = [read for read in reads if read[3].requires_grad]
            grads = torch.autograd.grad(
                [o for o, _ in pairs],
                wanted + [read[3] for read in recorded],
                [g for _, g in pairs],
                allow_unused=True,
            )
            tensor_grads = iter(grads[: len(wanted)])
            # Per tensor read: d shared = sum x^T dP (plain reads) +
            # sum dP^T x (transposed ones), as one batched product.
            lefts = [[] for _ in range(num_parts)]
            rights = [[] for _ in range(num_parts)]
            for (index, transpose, x, _), grad in zip(recorded, grads[len(wanted) :]):
                if grad is not None:
                    x = x.detach()
                    lefts[index].append(
                        grad.transpose(-1, -2) if transpose else x.transpose(-1, -2)
                    )
                    rights[index].append(x if transpose else grad)
            part_grads = [
                torch.matmul(torch.cat(left, -1), torch.cat(right, -2))
                if left and ctx.needs_input_grad[3 + k]
                else None
                for k, (left, right) in enumerate(zip(lefts, rights))
            ]
            return (
                None,
                None,
                None,
                *part_grads,
                *(next(tensor_grads) if t.requires_grad else None for t in tensors),
            )

    return StackedReads
