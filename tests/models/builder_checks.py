"""Shared check for the paper's builders: build, one training step, save, load."""

import os
import tempfile

import keras
import numpy as np


def check_trains_saves_loads(model, num_classes, batch=3):
    """Fits one step on random images, then round-trips through `.keras`."""
    rng = np.random.default_rng(0)
    shape = tuple(model.input.shape[1:])
    x = rng.uniform(size=(batch, *shape)).astype("float32")
    y = keras.utils.to_categorical(np.arange(batch) % num_classes, num_classes)
    assert model.optimizer is not None, "the builder must compile the model"
    assert isinstance(model.optimizer, keras.optimizers.Nadam)
    before = [keras.ops.convert_to_numpy(w) for w in model.trainable_weights]
    history = model.fit(x, y, batch_size=batch, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0])
    assert "accuracy" in history.history
    after = [keras.ops.convert_to_numpy(w) for w in model.trainable_weights]
    moved = sum(not np.allclose(b, a) for b, a in zip(before, after))
    assert moved > len(before) // 2, f"only {moved} of {len(before)} weights moved"
    scores = model.predict(x, verbose=0)
    assert scores.shape == (batch, num_classes)
    assert np.all(np.isfinite(scores))
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "model.keras")
        model.save(path)
        loaded = keras.models.load_model(path)
    np.testing.assert_allclose(loaded.predict(x, verbose=0), scores, atol=1e-5)
    assert type(loaded.loss) is type(model.loss)
    return loaded
