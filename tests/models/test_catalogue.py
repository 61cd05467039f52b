import pytest

import keras_parcaps as kp
from keras_parcaps.cli import main
from tests.markers import once


def _limited_networks():
    """(name, capsule_layers) for every network with a size limit."""
    for name in kp.models.model_names():
        spec = kp.models.get_model_spec(name)
        if spec.min_size is None:
            continue
        layers = (2, 3) if "capsule_layers" in spec.options else (None,)
        yield from ((name, n) for n in layers)


def _options(layers):
    return {} if layers is None else {"capsule_layers": layers}


@once("the catalogue's arithmetic, the same on every backend")
@pytest.mark.parametrize("name, layers", list(_limited_networks()))
def test_min_image_size_is_the_builders_own_limit(name, layers):
    spec = kp.models.get_model_spec(name)
    size = spec.min_image_size(**_options(layers))
    # The builder checks its input before building anything.
    with pytest.raises(ValueError, match=f"at least {size}\\b"):
        spec.build((size - 1, size - 1, 3), 5, **_options(layers))


@once("the catalogue's arithmetic, the same on every backend")
@pytest.mark.parametrize("name, layers", [("dr", 3), ("em", 2), ("em", 3)])
def test_a_network_builds_at_its_min_image_size(name, layers):
    spec = kp.models.get_model_spec(name)
    size = spec.min_image_size(capsule_layers=layers)
    model = spec.build((size, size, 3), 5, capsule_layers=layers)
    assert tuple(model.output_shape) == (None, 5)


@once("argument handling, the same on every backend")
def test_the_command_line_names_the_min_image_size(tmp_path, capsys):
    argv = ["train", "--model", "em", "--image-size", "32", "--out", str(tmp_path)]
    with pytest.raises(SystemExit):
        main(argv)
    assert "--image-size must be at least 33 for model 'em', got 32" in (
        capsys.readouterr().err
    )
