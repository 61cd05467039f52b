import pytest

import keras_parcaps.layers.group_conv2d as group_conv2d


@pytest.fixture(autouse=True)
def _native_group_conv(monkeypatch):
    # The tuning tests run the paper's networks on 1-2 pixel grids, where XLA's
    # native grouped convolution is fast; the per-group split that
    # `GroupConv2D` picks on XLA CPUs (for 50x50 maps) turns each model into
    # hundreds of small convolutions whose compilation would dominate the tests.
    monkeypatch.setattr(group_conv2d, "default_implementation", lambda: "native")
