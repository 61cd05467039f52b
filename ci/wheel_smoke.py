"""Smoke test of an installed wheel: import, build, one fit step, save, load.

Run from outside the source tree, in a virtual environment that holds only
the built wheel and one backend.
"""

import os
import sys
import tempfile

import keras
import numpy as np

import keras_parcaps as kp

assert "site-packages" in kp.__file__, f"not the installed wheel: {kp.__file__}"
model = kp.models.build_parallel_dr(
    input_shape=(32, 32, 3), num_classes=3, n_branches=2
)
rng = np.random.default_rng(0)
x = rng.uniform(size=(3, 32, 32, 3)).astype("float32")
y = keras.utils.to_categorical([0, 1, 2], 3)
loss = model.fit(x, y, epochs=1, verbose=0).history["loss"][0]
assert np.isfinite(loss), loss
with tempfile.TemporaryDirectory() as tmp:
    path = os.path.join(tmp, "model.keras")
    model.save(path)
    loaded = keras.models.load_model(path)
np.testing.assert_allclose(
    loaded.predict(x, verbose=0), model.predict(x, verbose=0), atol=1e-6
)
print(
    f"wheel smoke test passed: keras-parcaps {kp.__version__} on "
    f"{keras.backend.backend()}, loss {loss:.4f}",
    file=sys.stderr,
)
