"""Parameter counts at the paper's 400x400 input against Table 1's NPar.

Building only: the models are never called. Once per `make test` (PyTorch,
`tests.markers.once`): a count is the sum of the shapes our layers pass to
`add_weight`, the same code on every backend, and allocating and
initializing these 3-77M-parameter networks cost TensorFlow and JAX about
50 s each (whole-suite timings, 2026-12-03). Every builder is built on every
backend in test_dr.py, test_em.py and test_resnext.py, and trained, saved and
reloaded on at least two.
"""

import gc

import keras
import pytest

import keras_parcaps as kp
from tests.markers import once

# (builder, options, paper's NPar, tolerance)
ROWS = [
    ("build_dr", dict(capsule_layers=2), 77.3e6, 0.10),
    ("build_dr", dict(capsule_layers=3, n_mid_caps=2), 11.3e6, 0.10),
    ("build_parallel_dr", dict(capsule_layers=2, n_branches=4), 77.6e6, 0.10),
    ("build_parallel_dr", dict(capsule_layers=3, n_branches=12), 73.2e6, 0.10),
    ("build_em", dict(capsule_layers=2), 3.6e6, 0.25),
    ("build_em", dict(capsule_layers=3, n_mid_caps=2), 3.1e6, 0.25),
    ("build_parallel_em", dict(capsule_layers=2, n_branches=2), 4.6e6, 0.25),
    ("build_parallel_em", dict(capsule_layers=3, n_branches=10), 30.1e6, 0.25),
    ("build_resnext50", {}, 23.3e6, 0.10),
]


@pytest.mark.parametrize(
    "builder,options,paper,tolerance",
    ROWS,
    ids=[f"{b}-{'-'.join(f'{k}{v}' for k, v in o.items())}" for b, o, _, _ in ROWS],
)
@once("a parameter count is the sum of our layers' weight shapes")
def test_table1_parameter_count(builder, options, paper, tolerance):
    model = getattr(kp.models, builder)(
        input_shape=(400, 400, 3), num_classes=15, **options
    )
    count = model.count_params()
    del model
    keras.backend.clear_session()
    gc.collect()
    assert abs(count - paper) / paper <= tolerance, f"{count:,} vs {paper:,.0f}"
