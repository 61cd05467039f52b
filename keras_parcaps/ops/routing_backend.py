"""Compiles the routing loops where the backend has a JIT compiler.

The only module of `keras_parcaps.ops` that imports a backend library. The
routing functions themselves are written in `keras.ops`; this module runs
one of them either as is (the `keras.ops` path) or compiled into one fused
program, even when the model around it is not compiled:

- TensorFlow: `tf.function(jit_compile=True)`. Keras's default `compile()`
  leaves XLA off on a CPU, where the routing loop then runs as dozens of
  separate graph ops, each a pass over the votes; XLA fuses them (about
  3x faster for Sabour's DigitCaps, see `docs/benchmarks.md`).
- JAX: `jax.jit` (a no-op inside Keras's default jitted train step; it
  fuses the loop when a model runs eagerly).
- PyTorch: none. `torch.compile` on a CPU generates and compiles C++ at the
  first call (minutes on a small machine, again for every new batch size),
  which is a poor default for a layer; the `keras.ops` path runs.

Static arguments (iteration counts, flags) are passed as keywords; one
compiled function is kept per function and set of static arguments.
"""

import functools

import keras

_enabled = True
_compiled = {}


def set_jit_compile(enabled: bool) -> None:
    """Turns compilation of the routing loops on (the default) or off."""
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
    if not jit_compile_enabled():
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
