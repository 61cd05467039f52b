"""`ParallelCapsHyperModel`: the paper's branch and capsule-size search space."""

import keras

from keras_parcaps._checks import check_choice, check_positive_int
from keras_parcaps.models.catalogue import CATALOGUE, get_model_spec
from keras_parcaps.tuning._keras_tuner import require_keras_tuner

keras_tuner = require_keras_tuner()

KINDS = ("dr", "em")
# The parallel network of each kind in the model catalogue: its allowed
# capsule sizes and layer counts, the branch limit with 2 capsule layers and
# the paper's choice (Table 1), which is the default of the search.
_SPECS = {kind: CATALOGUE[f"parallel_{kind}"] for kind in KINDS}
CAPSULE_SIZES = _SPECS["dr"].choices["capsule_size"]
CAPSULE_LAYERS = _SPECS["dr"].choices["capsule_layers"]
# The validation WAcc that `kp.models.compile_model` logs, the paper's
# selection metric.
OBJECTIVE = "val_wacc"
# Table 1 of the paper: the parallel networks it chose, in the names of the
# search space.
PAPER_DEFAULTS = {
    kind: {
        "branches": spec.paper["n_branches"],
        "capsule_size": spec.paper["capsule_size"],
        "capsule_layers": spec.paper["capsule_layers"],
        "routing_iterations": spec.paper["routing_iterations"],
        "backbone": "paper",
    }
    for kind, spec in _SPECS.items()
}


def objective():
    """`keras_tuner.Objective("val_wacc", "max")`, the paper's selection metric.

    KerasTuner cannot infer the direction of a custom metric, so pass this
    (or the same `Objective`) to the tuner.

    Example:

        >>> objective().name, objective().direction
        ('val_wacc', 'max')
    """
    return keras_tuner.Objective(OBJECTIVE, direction="max")


def _check_range(name: str, value, minimum: int = 1) -> tuple:
    """`(min, max, step)` from `(min, max)` or `(min, max, step)`."""
    if not isinstance(value, (list, tuple)) or len(value) not in (2, 3):
        raise ValueError(
            f"`{name}` must be a range `(min, max)` or `(min, max, step)`. "
            f"Received: {name}={value!r}"
        )
    low, high, *step = value
    for item in (low, high):
        check_positive_int(name, item, minimum=minimum)
    if low > high:
        raise ValueError(
            f"`{name}` is an inverted range: min must be <= max. "
            f"Received: {name}={value!r}"
        )
    step = step[0] if step else 1
    check_positive_int(f"{name} step", step)
    return low, high, step


def _check_choices(name: str, value, allowed) -> tuple:
    if isinstance(value, (int, str)) and not isinstance(value, bool):
        value = (value,)
    if not isinstance(value, (list, tuple)) or not value:
        raise ValueError(
            f"`{name}` must be a non-empty sequence of values from {allowed}. "
            f"Received: {name}={value!r}"
        )
    for item in value:
        check_choice(name, item, allowed)
    return tuple(sorted(set(value)))


def _default(value, low, high, step=1):
    """The paper's value when the range holds it, else the nearest value in it."""
    if value <= low:
        return low
    return min(low + round((value - low) / step) * step, high - (high - low) % step)


def _nearest(value, choices):
    """`value` where `choices` hold it, else the nearest number (or the first)."""
    if value in choices:
        return value
    if isinstance(value, str):
        return choices[0]
    return min(choices, key=lambda choice: (abs(choice - value), choice))


class ParallelCapsHyperModel(keras_tuner.HyperModel):
    """Search space over the paper's parallel capsule networks.

    `build(hp)` returns the model of `kp.models.build_parallel_dr` (or
    `build_parallel_em`), compiled by its builder (`kp.models.compile_model`)
    with Nadam, its own loss and the `acc` and `wacc` metrics, so the
    paper's selection metric is the objective
    `keras_tuner.Objective("val_wacc", "max")` (see `objective()`). One
    branch means the non-parallel network (`build_dr` or `build_em` with a
    single Mid-Cap per Mid-Cap layer, the same architecture); with
    `parallel=False` the branch count is instead the number of Mid-Caps of
    the non-parallel network, the other curve of the paper's Fig. 2-B.

    The hyperparameters, every range overridable:

    - `branches`: `Int`, default range 1-16; default value the paper's
      choice (12 for DR, 10 for EM; Table 1).
    - `capsule_size`: `Choice` of 9, 16, 25 (pose 3x3, 4x4, 5x5); default 16.
    - `capsule_layers`: `Choice` of 2, 3, 4; default 3.
    - `routing_iterations`: `Int`, default range 1-3; default 3.
    - `backbone`: `Choice` of `"paper"` (the default and only value unless
      `backbones` says otherwise), `"pooled"` and `"plain"` (see
      `kp.models.build_dr`).
    - `kind` and `parallel`: `Fixed`, so every trial records its network.

    When a range does not hold the paper's value, the default is the
    nearest value it holds.

    `fit` adds the callbacks of `kp.training.training_callbacks`: for EM
    networks `kp.callbacks.SpreadMarginSchedule` (margin 0.2 -> 0.9) unless
    `margin_schedule=False`; for training data that is a `kp.data` batch
    generator, `set_epoch` at each epoch, so every epoch draws new
    one-image-per-class batches; and a stop at the first non-finite loss.

    Args:
        kind: `"dr"` (dynamic routing) or `"em"` (EM routing).
        input_shape: Image shape, channels last. Default `(400, 400, 3)`.
        num_classes: Number of classes. Default 15.
        branches: Range `(min, max)` or `(min, max, step)` of the branch
            count. Default `(1, 16)`.
        capsule_sizes: Capsule sizes to try, from 9, 16, 25.
        capsule_layers: Capsule-layer counts to try, from 2, 3, 4.
        routing_iterations: Range `(min, max)` of routing iterations.
            Default `(1, 3)`.
        backbones: Backbones to try, from `"paper"`, `"pooled"` and `"plain"`.
            Default `("paper",)`.
        parallel: Whether more than one branch means parallel branches
            (default) or Mid-Caps of the non-parallel network.
        learning_rate: Nadam learning rate. Default 1e-3 (the paper).
        jit_compile: `jit_compile` of the compiled model. Default `"auto"`;
            `False` skips XLA compilation, which dominates very short trials
            on TensorFlow and JAX CPUs.
        margin_schedule: Whether EM trials ramp the spread-loss margin.
        name: Name of the hypermodel.

    Example:

        >>> import keras_tuner as kt
        >>> hypermodel = ParallelCapsHyperModel("dr", input_shape=(64, 64, 3),
        ...                                     num_classes=6, branches=(1, 4))
        >>> hp = kt.HyperParameters()
        >>> hypermodel.builder_call(hp)[0]
        'build_parallel_dr'
        >>> {k: hp.values[k] for k in ("branches", "capsule_size", "capsule_layers")}
        {'branches': 4, 'capsule_size': 16, 'capsule_layers': 3}
        >>> tuner = kt.RandomSearch(
        ...     hypermodel, objective=objective(), max_trials=8,
        ...     directory="runs", project_name="dr")  # doctest: +SKIP
        >>> tuner.search(x, y, validation_data=(xv, yv), epochs=5)  # doctest: +SKIP

    Reference:
        - [Vigueras-Guillen et al., 2021](https://arxiv.org/abs/2108.02644)
    """

    def __init__(
        self,
        kind: str = "dr",
        input_shape=(400, 400, 3),
        num_classes: int = 15,
        branches=(1, 16),
        capsule_sizes=CAPSULE_SIZES,
        capsule_layers=CAPSULE_LAYERS,
        routing_iterations=(1, 3),
        backbones=("paper",),
        parallel: bool = True,
        learning_rate: float = 1e-3,
        jit_compile="auto",
        margin_schedule: bool = True,
        name=None,
    ):
        super().__init__(name=name, tunable=True)
        check_choice("kind", kind, KINDS)
        if (
            not isinstance(input_shape, (list, tuple))
            or len(input_shape) != 3
            or not all(isinstance(d, int) and d > 0 for d in input_shape)
        ):
            raise ValueError(
                "`input_shape` must be (height, width, channels) with positive "
                f"integers. Received: input_shape={input_shape!r}"
            )
        check_positive_int("num_classes", num_classes, minimum=2)
        self.kind = kind
        self.input_shape = tuple(input_shape)
        self.num_classes = num_classes
        self.branches = _check_range("branches", branches)
        spec = _SPECS[kind]
        self.capsule_sizes = _check_choices(
            "capsule_sizes", capsule_sizes, spec.choices["capsule_size"]
        )
        self.capsule_layers = _check_choices(
            "capsule_layers", capsule_layers, spec.choices["capsule_layers"]
        )
        self.routing_iterations = _check_range("routing_iterations", routing_iterations)
        self.backbones = _check_choices(
            "backbones", backbones, spec.choices["backbone"]
        )
        limit = spec.max_branches_2_layers
        if parallel and 2 in self.capsule_layers and self.branches[1] > limit:
            raise ValueError(
                f"`branches` must stay <= {limit} when `capsule_layers` holds 2 "
                f"(a {kind.upper()} network divides its Primary-Caps among the "
                f"branches). Received: branches={branches!r}"
            )
        if isinstance(learning_rate, bool) or not (
            isinstance(learning_rate, (int, float)) and learning_rate > 0
        ):
            raise ValueError(
                "`learning_rate` must be a positive number. "
                f"Received: learning_rate={learning_rate!r}"
            )
        check_choice("jit_compile", jit_compile, ("auto", True, False))
        self.parallel = bool(parallel)
        self.learning_rate = learning_rate
        self.jit_compile = jit_compile
        self.margin_schedule = bool(margin_schedule)

    def declare_hyperparameters(self, hp) -> dict:
        """Declares the space on `hp` and returns this trial's values.

        KerasTuner calls it once to learn the space; `build` calls it for
        the values of each trial.
        """
        paper = PAPER_DEFAULTS[self.kind]

        def integer(name, bounds):
            low, high, step = bounds
            default = _default(paper[name], low, high, step)
            return hp.Int(name, low, high, step=step, default=default)

        def choice(name, options):
            default = _nearest(paper[name], options)
            return hp.Choice(name, list(options), default=default)

        # Declared in this order: KerasTuner's space and trials follow it.
        return {
            "kind": hp.Fixed("kind", self.kind),
            "parallel": hp.Fixed("parallel", self.parallel),
            "branches": integer("branches", self.branches),
            "capsule_size": choice("capsule_size", self.capsule_sizes),
            "capsule_layers": choice("capsule_layers", self.capsule_layers),
            "routing_iterations": integer(
                "routing_iterations", self.routing_iterations
            ),
            "backbone": choice("backbone", self.backbones),
        }

    def builder_call(self, hp) -> tuple:
        """`(builder name in kp.models, keyword arguments)` for `hp`.

        `kp.models.get_model_spec(name).builder(**kwargs)` builds the
        network of a trial again outside KerasTuner.
        """
        values = self.declare_hyperparameters(hp)
        n = values["branches"]
        kwargs = {
            "input_shape": self.input_shape,
            "num_classes": self.num_classes,
            "capsule_size": values["capsule_size"],
            "capsule_layers": values["capsule_layers"],
            "routing_iterations": values["routing_iterations"],
            "backbone": values["backbone"],
            "learning_rate": self.learning_rate,
        }
        if self.parallel and n > 1:
            return f"build_parallel_{self.kind}", {**kwargs, "n_branches": n}
        return f"build_{self.kind}", {**kwargs, "n_mid_caps": n}

    def build(self, hp) -> keras.Model:
        name, kwargs = self.builder_call(hp)
        # The builder compiles the model for training: Nadam at
        # `learning_rate`, its loss, and Acc and WAcc (`compile_model`).
        model = get_model_spec(name).builder(**kwargs)
        if self.jit_compile != "auto":
            model.jit_compile = self.jit_compile
        return model

    def fit(self, hp, model, *args, callbacks=None, **kwargs):
        from keras_parcaps.training.callbacks import training_callbacks

        data = args[0] if args else kwargs.get("x")
        callbacks = training_callbacks(
            model, data, callbacks=callbacks, margin_schedule=self.margin_schedule
        )
        return model.fit(*args, callbacks=callbacks, **kwargs)
