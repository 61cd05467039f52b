"""Intermediate capsules of a model, read with `keras.Model`s over its graph.

The layers run exactly as in the model: a probe is a functional model over
the model's own tensors, so nothing in a layer changes and the model itself
is not modified.
"""

import keras
import numpy as np
from keras import ops

from keras_parcaps.layers.dr_caps import DRCaps
from keras_parcaps.layers.em_class_caps import EMClassCaps
from keras_parcaps.layers.em_conv_caps import EMConvCaps
from keras_parcaps.layers.parallel_branch import ParallelBranch

ROUTING_LAYERS = (DRCaps, EMConvCaps, EMClassCaps)


def _is_graph(model) -> bool:
    """Whether `model` is functional or Sequential: its layers' tensors exist."""
    try:
        return bool(model.inputs) and all(
            hasattr(t, "_keras_history") for t in model.inputs
        )
    except (AttributeError, ValueError):
        return False


def _history(tensor):
    return getattr(tensor, "_keras_history", (None,))[0]


class Site:
    """One routing layer met in the model: where it sits and what it saw."""

    def __init__(self, name, layer, inputs, outputs, branch=None, source=None):
        self.name = name
        self.layer = layer
        self.inputs = inputs
        self.outputs = outputs
        self.branch = branch
        # The ParallelBranch whose output this layer routes, if any.
        self.source = source


def _predict(model, x, batch_size):
    values = None
    for start in range(0, len(x), batch_size):
        out = model(x[start : start + batch_size], training=False)
        if not isinstance(out, (list, tuple)):
            out = [out]
        out = [np.asarray(ops.convert_to_numpy(o)) for o in out]
        values = (
            [[o] for o in out]
            if values is None
            else [v + [o] for v, o in zip(values, out, strict=True)]
        )
    return [np.concatenate(v) for v in values]


def probe(model, x, batch_size: int = 32, prefix: str = "", branch=None):
    """Routing layers of `model` with the inputs and outputs they saw on `x`.

    Returns `(outputs, sites)`: the model's outputs on `x` (a list of numpy
    arrays) and a list of `Site`s in graph order, branches' sites after the
    `ParallelBranch` that holds them.
    """
    from keras_parcaps.models.sabour import SabourCapsNet

    if isinstance(model, SabourCapsNet):
        # A subclassed model: its capsule layers are attributes.
        features, capsules, outputs = _predict(
            lambda images, training: _sabour(model, images), x, batch_size
        )
        layer = model.class_caps
        return [outputs], [Site(prefix + layer.name, layer, features, capsules)]
    if not _is_graph(model):
        raise ValueError(
            "`model` must be a functional or Sequential Keras model (or a "
            "`SabourCapsNet`), so that its intermediate capsules can be read. "
            f"Received: model={model!r}"
        )
    wanted = [
        layer
        for layer in model.layers
        if isinstance(layer, (*ROUTING_LAYERS, ParallelBranch))
        or (isinstance(layer, keras.Model) and _is_graph(layer))
    ]
    tensors = list(model.outputs)
    for layer in wanted:
        tensors += [layer.input, layer.output]
    inputs = model.inputs[0] if len(model.inputs) == 1 else model.inputs
    values = _predict(keras.Model(inputs, tensors), x, batch_size)
    outputs, values = values[: len(model.outputs)], values[len(model.outputs) :]
    sites = []
    for i, layer in enumerate(wanted):
        inputs, layer_outputs = values[2 * i], values[2 * i + 1]
        if isinstance(layer, ROUTING_LAYERS):
            source = _history(layer.input)
            sites.append(
                Site(
                    prefix + layer.name,
                    layer,
                    inputs,
                    layer_outputs,
                    branch,
                    source if isinstance(source, ParallelBranch) else None,
                )
            )
        elif isinstance(layer, ParallelBranch):
            for b, sub in enumerate(layer.branches):
                if _is_graph(sub):
                    sites += probe(
                        sub,
                        inputs,
                        batch_size,
                        f"{prefix}{layer.name}/{sub.name}/",
                        b if branch is None else branch,
                    )[1]
                elif isinstance(sub, ROUTING_LAYERS):
                    sub_out = _predict(
                        lambda x, training, sub=sub: [sub(x)], inputs, batch_size
                    )[0]
                    sites.append(
                        Site(
                            f"{prefix}{layer.name}/{sub.name}", sub, inputs, sub_out, b
                        )
                    )
        else:
            sites += probe(layer, inputs, batch_size, f"{prefix}{layer.name}/", branch)[
                1
            ]
    return outputs, sites


def _sabour(model, images):
    features = model.primary_caps(model.conv(images))
    capsules = model.class_caps(features)
    return [features, capsules, model.length(capsules)]
