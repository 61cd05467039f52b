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
    return outputs_and_gradients(model, inputs, loss_fn)[1]


def outputs_and_gradients(model, inputs, loss_fn):
    """`model(inputs, training=True)` and the gradients of `loss_fn` of it.

    One forward pass gives both; on JAX one compiled program, where an eager
    forward pass and a compiled gradient would compile the model twice.

    Returns:
        `(outputs, grads)`: the outputs as numpy (a structure like the
        model's), and a list of numpy arrays, one per trainable weight, in
        `model.trainable_weights` order.
    """
    backend = keras.backend.backend()
    weights = model.trainable_weights
    if backend == "tensorflow":
        import tensorflow as tf

        with tf.GradientTape() as tape:
            outputs = model(inputs, training=True)
            loss = loss_fn(outputs)
        grads = tape.gradient(loss, weights)
    elif backend == "jax":
        trainable = [v.value for v in weights]
        non_trainable = [v.value for v in model.non_trainable_weights]
        grads, outputs = _jax_gradient_function(model, loss_fn)(
            trainable, non_trainable, inputs
        )
    elif backend == "torch":
        model.zero_grad()
        outputs = model(inputs, training=True)
        loss_fn(outputs).backward()
        grads = [v.value.grad for v in weights]
    else:
        raise NotImplementedError(backend)
    outputs = keras.tree.map_structure(
        lambda x: keras.ops.convert_to_numpy(keras.ops.stop_gradient(x)), outputs
    )
    grads = [
        np.zeros(w.shape) if g is None else keras.ops.convert_to_numpy(g)
        for w, g in zip(weights, grads)
    ]
    return outputs, grads


def _jax_gradient_function(model, loss_fn):
    """`jax.jit(jax.grad(...))` of `loss_fn(model(inputs))`, compiled once.

    The compiled function returns the gradients and the model's outputs.
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
            return loss_fn(outputs), outputs

        # The closure's objects are kept so that their ids stay theirs.
        per_model[key] = (jax.jit(jax.grad(compute, has_aux=True)), closure)
    return per_model[key][0]


def eager_on_tensorflow(model):
    """Runs `model`'s `fit`/`train_on_batch` eagerly on TensorFlow; returns it.

    For tests that train a network for a step or two. TensorFlow's first step
    traces the train step into a graph and runs Grappler over it; for the
    paper's networks (about 7,500 graph ops) that was 45-60 s of a one-step
    check, which takes 17-20 s in all run eagerly (measured: tests/models/
    test_dr.py, parallel DR [16-3], on a loaded 2-core CPU). On JAX an eager
    step compiles op by op and was 2x slower than the compiled step, and
    PyTorch is eager anyway, so only TensorFlow changes. The traced step is
    what the learning tests, the trainer's tests and the CLI runs train with.
    """
    if keras.backend.backend() == "tensorflow":
        model.run_eagerly = True
    return model
