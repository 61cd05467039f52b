"""`ModelSpec`: one entry of the model catalogue."""

import dataclasses
import inspect
from collections.abc import Callable


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    """A model builder with its name, options and the values they allow.

    The entries of `kp.models.CATALOGUE`; the command line, the tuner, the
    benchmarks and the docs all read a model's options from here.

    Args:
        name: The model's name on the command line, such as `"parallel_dr"`.
        builder: The `kp.models.build_*` function; it takes `input_shape`
            and `num_classes` and returns a compiled `keras.Model`.
        kind: `"dr"`, `"em"` (capsule networks by routing) or `"cnn"`.
        choices: Option name -> the values it allows, for the options with
            a fixed set (such as `capsule_size`: 9, 16, 25).
        paper: The options of the network the paper reports in Table 1 (for
            the parallel networks, the chosen branch count).
        defaults: Options set unless the caller sets them, where a command
            line wants another default than the builder (Sabour's CapsNet
            without its decoder).
        max_branches_2_layers: With 2 capsule layers the branches divide
            the Primary-Caps: the most branches allowed then (parallel
            networks only).
        min_size: A function of the builder's options (defaults filled in)
            giving the smallest image side the network's strides allow;
            `None` where the catalogue sets no limit. Read it through
            `min_image_size`.

    Example:

        >>> import keras_parcaps as kp
        >>> spec = kp.models.get_model_spec("parallel_dr")
        >>> spec.builder.__name__, spec.choices["capsule_size"]
        ('build_parallel_dr', (9, 16, 25))
        >>> spec.paper["n_branches"], spec.max_branches_2_layers
        (12, 256)
        >>> "n_branches" in spec.options, "margin" in spec.options
        (True, False)
        >>> kp.models.get_model_spec("em").min_image_size(capsule_layers=3)
        33
    """

    name: str
    builder: Callable
    kind: str
    choices: dict = dataclasses.field(default_factory=dict)
    paper: dict = dataclasses.field(default_factory=dict)
    defaults: dict = dataclasses.field(default_factory=dict)
    max_branches_2_layers: int | None = None
    min_size: Callable[[dict], int] | None = None

    @property
    def options(self) -> dict:
        """Every keyword option of the builder -> its default value.

        `input_shape` and `num_classes` are left out: every builder takes
        them.
        """
        return {
            name: parameter.default
            for name, parameter in inspect.signature(self.builder).parameters.items()
            if name not in ("input_shape", "num_classes")
            and parameter.kind is parameter.POSITIONAL_OR_KEYWORD
        }

    def min_image_size(self, **options) -> int | None:
        """The smallest image side the network allows with `options`.

        Args:
            **options: Builder options; the builder's defaults fill the rest.

        Returns:
            The side in pixels, or `None` where the catalogue sets no limit.
        """
        if self.min_size is None:
            return None
        return self.min_size({**self.options, **self.defaults, **options})

    @property
    def parallel(self) -> bool:
        """Whether the network has parallel branches (an `n_branches` option)."""
        return "n_branches" in self.options

    def build(self, input_shape=None, num_classes=None, **options):
        """Builds the compiled model, `defaults` under `options`.

        Args:
            input_shape: Image shape; default the builder's.
            num_classes: Number of classes; default the builder's.
            **options: Builder options.

        Returns:
            The compiled `keras.Model`.
        """
        options = {**self.defaults, **options}
        if input_shape is not None:
            options["input_shape"] = tuple(input_shape)
        if num_classes is not None:
            options["num_classes"] = num_classes
        return self.builder(**options)
