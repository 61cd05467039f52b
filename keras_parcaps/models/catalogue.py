"""The model catalogue: every builder by name, with its options' allowed values."""

from keras_parcaps.models import dr, em, resnext
from keras_parcaps.models.em_capsnet import build_em_capsnet
from keras_parcaps.models.model_spec import ModelSpec
from keras_parcaps.models.sabour import build_sabour_capsnet
from keras_parcaps.models.stem import BACKBONES, CAPSULE_LAYERS, CAPSULE_SIZES

# The paper's networks, DR and EM, take the same capsule sizes, layers and
# backbones.
_CHOICES = {
    "capsule_size": CAPSULE_SIZES,
    "capsule_layers": CAPSULE_LAYERS,
    "backbone": BACKBONES,
}


def _dr_min_size(options):
    return dr.MIN_SIZE


def _em_min_size(options):
    # The EM strides leave a smaller grid with fewer capsule layers.
    return em.min_image_size(options["capsule_layers"])


def _cnn_min_size(options):
    return resnext.MIN_SIZE


def _paper_network(name, builder, kind, min_size, **paper):
    """A network of the paper: Table 1's options, the paper's choices."""
    limit = paper.pop("max_branches_2_layers", None)
    return ModelSpec(
        name,
        builder,
        kind,
        choices=_CHOICES,
        # Capsule size 16, 3 capsule layers and the routing iterations of
        # the original papers (Table 1); the branches or Mid-Caps it chose.
        paper={
            "capsule_size": 16,
            "capsule_layers": 3,
            "routing_iterations": 3,
            **paper,
        },
        max_branches_2_layers=limit,
        min_size=min_size,
    )


CATALOGUE = {
    spec.name: spec
    for spec in (
        _paper_network(
            "parallel_dr",
            dr.build_parallel_dr,
            "dr",
            _dr_min_size,
            n_branches=12,
            max_branches_2_layers=dr.PRIMARY_LENGTH,
        ),
        _paper_network("dr", dr.build_dr, "dr", _dr_min_size, n_mid_caps=2),
        _paper_network(
            "parallel_em",
            em.build_parallel_em,
            "em",
            _em_min_size,
            n_branches=10,
            max_branches_2_layers=em.PRIMARY_CAPS,
        ),
        _paper_network("em", em.build_em, "em", _em_min_size, n_mid_caps=2),
        ModelSpec("resnext50", resnext.build_resnext50, "cnn", min_size=_cnn_min_size),
        ModelSpec(
            "sabour", build_sabour_capsnet, "dr", defaults={"reconstruction": False}
        ),
        ModelSpec("em_capsnet", build_em_capsnet, "em"),
    )
}


def model_names() -> list:
    """The names of the catalogue, the paper's networks first.

    Example:

        >>> model_names()[:4]
        ['parallel_dr', 'dr', 'parallel_em', 'em']
    """
    return list(CATALOGUE)


def get_model_spec(name: str) -> ModelSpec:
    """The `ModelSpec` of `name`, a catalogue name or a builder's name.

    Args:
        name: A key of `CATALOGUE`, such as `"parallel_dr"`, or the name of
            its builder, such as `"build_parallel_dr"`.

    Returns:
        The `ModelSpec`.

    Raises:
        ValueError: for a name the catalogue does not hold.

    Example:

        >>> get_model_spec("build_em").name
        'em'
        >>> get_model_spec("vgg")
        Traceback (most recent call last):
            ...
        ValueError: Unknown or unavailable model 'vgg'. Available here: parallel_dr, ...
    """
    if name in CATALOGUE:
        return CATALOGUE[name]
    for spec in CATALOGUE.values():
        if spec.builder.__name__ == name:
            return spec
    raise ValueError(
        f"Unknown or unavailable model {name!r}. Available here: "
        f"{', '.join(CATALOGUE)}. "
        f"Received: name={name!r}"
    )
