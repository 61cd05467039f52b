"""Backend-specific test helpers: gradients of a model (tests only)."""

import keras
import numpy as np


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
        import jax

        trainable = [v.value for v in weights]
        non_trainable = [v.value for v in model.non_trainable_weights]

        def compute(trainable):
            outputs, _ = model.stateless_call(
                trainable, non_trainable, inputs, training=True
            )
            return loss_fn(outputs)

        # Compiled as one program: run eagerly, JAX compiles every op of the
        # backward pass on its own (0.1-0.2 s each on a CPU).
        grads = jax.jit(jax.grad(compute))(trainable)
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
