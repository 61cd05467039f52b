"""Shared checks for the paper's builders: build, save, load, one training
step; the plain and pooled backbones."""

import json
import os
import tempfile

import keras
import numpy as np

import keras_parcaps as kp
from tests.backend_utils import eager_on_tensorflow

# The plain backbone by hand: four 3x3 convolutions without bias, each with
# a batch normalization (4 values per channel), from 3 colours.
_WIDTHS = [3, 32, 64, 128, 256]
PLAIN_BACKBONE_PARAMS = sum(9 * a * b + 4 * b for a, b in zip(_WIDTHS, _WIDTHS[1:]))


def primary_caps_after_plain_backbone(model, capsule_layers):
    """Checks that `model` has the plain backbone and nothing else before its
    Primary-Caps: no ResNeXt block (nor in its branches), and its
    parameters are the backbone's plus those of `capsule_layers` (names).

    Returns:
        The (first branch's) `PrimaryCaps` layer.
    """
    layers = list(model.layers)
    if "branches" in capsule_layers:
        layers += model.get_layer("branches").branches[0].layers
    assert not any(isinstance(layer, kp.layers.ResNeXtBlock) for layer in layers)
    capsules = sum(model.get_layer(name).count_params() for name in capsule_layers)
    assert model.count_params() == PLAIN_BACKBONE_PARAMS + capsules
    return next(layer for layer in layers if isinstance(layer, kp.layers.PrimaryCaps))


def check_trains_saves_loads(model, num_classes, batch=3):
    """Round-trips a built model through `.keras`, then fits the loaded copy.

    Saving before the first step keeps the optimizer's slots out of the
    file (they are built by the first step): for the 23M-parameter ResNeXt-50
    that is most of the time of this check. Fitting the loaded copy shows it
    comes back compiled with its loss and optimizer.
    """
    rng = np.random.default_rng(0)
    shape = tuple(model.input.shape[1:])
    x = rng.uniform(size=(batch, *shape)).astype("float32")
    y = keras.utils.to_categorical(np.arange(batch) % num_classes, num_classes)
    assert isinstance(model.optimizer, keras.optimizers.Nadam)
    # Eager calls: no compiled predict function to trace (ResNeXt-50 has
    # 16 grouped convolutions, split into 512 per-group ones under XLA).
    scores = keras.ops.convert_to_numpy(model(x, training=False))
    assert scores.shape == (batch, num_classes)
    assert np.all(np.isfinite(scores))
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "model.keras")
        model.save(path)
        loaded = keras.models.load_model(path)
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(loaded(x, training=False)), scores, atol=1e-5
    )
    assert type(loaded.loss) is type(model.loss)
    assert isinstance(loaded.optimizer, keras.optimizers.Nadam)

    before = [keras.ops.convert_to_numpy(w) for w in loaded.trainable_weights]
    history = eager_on_tensorflow(loaded).fit(
        x, y, batch_size=batch, epochs=1, verbose=0
    )
    assert np.isfinite(history.history["loss"][0])
    assert {"acc", "wacc"} <= set(history.history)
    after = [keras.ops.convert_to_numpy(w) for w in loaded.trainable_weights]
    moved = sum(not np.allclose(b, a) for b, a in zip(before, after))
    assert moved > len(before) // 2, f"only {moved} of {len(before)} weights moved"
    return loaded


def check_pooled_backbone(builder, **kwargs):
    """`backbone="pooled"` gives the paper's network its exact weights, every
    halving by max-pooling instead of a strided convolution."""
    paper = builder(**kwargs)
    pooled = builder(backbone="pooled", **kwargs)
    assert [tuple(w.shape) for w in pooled.weights] == [
        tuple(w.shape) for w in paper.weights
    ]
    assert tuple(pooled.output.shape) == tuple(paper.output.shape)
    config = json.dumps(pooled.get_config())
    assert '"downsample": "pool"' in config
    assert '"downsample": "stride"' not in config
    assert isinstance(pooled.get_layer("stem_pool"), keras.layers.MaxPooling2D)
    return pooled
