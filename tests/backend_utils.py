"""Backend-specific test helpers: gradients of a model (tests only)."""

import weakref

import keras
import numpy as np

# model -> {loss key: (compiled gradient function, what the key's ids name)}
_JAX_GRADIENTS = weakref.WeakKeyDictionary()


def gradients(model, inputs, loss_fn):
    """Gradients of `loss_fn(model(inputs))` w.r.t. the trainable weights.

    Returns a list of numpy arrays, one per trainable weight, in
    `model.trainable_weights` order.
    """
    backend = keras.backend.backend()
    weights = model.trainable_weights
    if backend == "tensorflow":
        import tensorflow as tf

        with tf.GradientTape() as tape:
            loss = loss_fn(model(inputs, training=True))
        grads = tape.gradient(loss, weights)
    elif backend == "jax":
        trainable = [v.value for v in weights]
        non_trainable = [v.value for v in model.non_trainable_weights]
        grads = _jax_gradient_function(model, loss_fn)(trainable, non_trainable, inputs)
    elif backend == "torch":
        model.zero_grad()
        loss = loss_fn(model(inputs, training=True))
        loss.backward()
        grads = [v.value.grad for v in weights]
    else:
        raise NotImplementedError(backend)
    return [
        np.zeros(w.shape) if g is None else keras.ops.convert_to_numpy(g)
        for w, g in zip(weights, grads)
    ]


def _jax_gradient_function(model, loss_fn):
    """`jax.jit(jax.grad(...))` of `loss_fn(model(inputs))`, compiled once.

    Run eagerly, JAX compiles every op of the backward pass on its own (0.1-0.2
    s each on a CPU), so the gradient is one compiled program; a new program
    for every call (a new closure) made the EM layers' finiteness checks spend
    70 of 77 s compiling. Loss functions are told apart by their code and the
    objects they close over (a lambda written in a loop is the same loss).
    """
    import jax

    closure = tuple(c.cell_contents for c in loss_fn.__closure__ or ())
    key = (getattr(loss_fn, "__code__", loss_fn), tuple(map(id, closure)))
    per_model = _JAX_GRADIENTS.setdefault(model, {})
    if key not in per_model:
        # A weak reference: the cache must not keep its own key alive.
        model_ref = weakref.ref(model)

        def compute(trainable, non_trainable, inputs):
            outputs, _ = model_ref().stateless_call(
                trainable, non_trainable, inputs, training=True
            )
            return loss_fn(outputs)

        # The closure's objects are kept so that their ids stay theirs.
        per_model[key] = (jax.jit(jax.grad(compute)), closure)
    return per_model[key][0]
