import numpy as np
import pytest
from keras import ops

from keras_parcaps.layers import CapsuleLength
from tests.layer_checks import run_layer_checks


def test_layer_checks():
    # CapsuleLength has no weights: the fit step only checks a finite loss.
    run_layer_checks(
        CapsuleLength,
        {},
        (None, 5, 4),
        (None, 5),
        expected_num_trainable_weights=0,
        expected_num_non_trainable_weights=0,
    )


def test_lengths_match_numpy(rng):
    caps = rng.normal(size=(3, 10, 16)).astype("float32")
    got = ops.convert_to_numpy(CapsuleLength(epsilon=0.0)(caps))
    np.testing.assert_allclose(got, np.linalg.norm(caps, axis=-1), rtol=1e-5)


def test_bad_epsilon():
    with pytest.raises(ValueError, match="epsilon.*Received: epsilon=-1"):
        CapsuleLength(epsilon=-1)
