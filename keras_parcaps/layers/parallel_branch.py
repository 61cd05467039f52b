"""The `ParallelBranch` layer: N independent copies of a branch, side by side."""

import copy

import keras
from keras import ops

from keras_parcaps._checks import check_positive_int


@keras.saving.register_keras_serializable(package="keras_parcaps")
class ParallelBranch(keras.layers.Layer):
    """`n_branches` independent copies of a branch, concatenated on one axis.

    The branch, a layer or a small functional model, is copied from its
    config `n_branches` times: every copy has its own freshly initialized
    weights. All copies see the same input and their outputs are
    concatenated on `axis`, by default the capsule axis of vector capsules
    `(batch, ..., capsules, dim)` and of matrix capsules
    `(batch, height, width, capsules, pose + 1)`. This is the branching of
    the parallel CapsNets: a common stem, then per branch a CNN block,
    Primary-Caps and one Mid-Cap, the Mid-Caps concatenated and routed to
    the Class-Caps.

    The copies run one after another inside the one compiled graph of the
    model. A fused formulation (wider and grouped convolutions, an einsum
    over a branch axis) was measured against it on CPU and was not faster
    (see `docs/benchmarks.md`), so none is used.

    Args:
        branch: A `keras.layers.Layer` or a functional `keras.Model`. It is
            used as a template only: its own weights, if any, are not used.
        n_branches: Number of copies, at least 1.
        axis: Axis on which the branch outputs are concatenated. Default
            -2, the capsule axis.
        **kwargs: Base layer keyword arguments, such as `name` and `dtype`.

    Call arguments:
        inputs: The input of every branch.
        training: Python boolean, passed to the branches.

    Input shape:
        The input shape of the branch.

    Output shape:
        The output shape of the branch with `axis` multiplied by
        `n_branches`.

    Example:

        >>> import keras_parcaps as kp
        >>> x = keras.random.normal((2, 4, 4, 8))
        >>> branch = keras.Sequential([
        ...     keras.Input((4, 4, 8)),
        ...     kp.layers.PrimaryCaps(2, 8),
        ...     kp.layers.DRCaps(1, 16),
        ... ])
        >>> y = ParallelBranch(branch, n_branches=3)(x)
        >>> tuple(y.shape)
        (2, 3, 16)

    Reference:
        - [Vigueras-Guillen et al., 2021](https://arxiv.org/abs/2108.02644)
    """

    def __init__(self, branch, n_branches: int, axis: int = -2, **kwargs):
        super().__init__(**kwargs)
        check_positive_int("n_branches", n_branches)
        if not isinstance(axis, int) or isinstance(axis, bool):
            raise ValueError(f"`axis` must be an integer. Received: axis={axis!r}")
        if isinstance(branch, dict):
            branch_config = branch
        elif isinstance(branch, keras.layers.Layer):
            branch_config = keras.saving.serialize_keras_object(branch)
        else:
            raise ValueError(
                "`branch` must be a keras Layer or functional Model. "
                f"Received: branch={branch!r}"
            )
        self.branch_config = branch_config
        self.n_branches = n_branches
        self.axis = axis
        self.branches = [self._copy(i) for i in range(n_branches)]

    def _copy(self, index: int):
        config = copy.deepcopy(self.branch_config)
        config["config"]["name"] = f"branch_{index}"
        # A functional branch builds its layers while it is deserialized, and
        # every copy names them alike: in their own name scope, the copies'
        # variables get distinct paths (`<name>/branch_<i>/...`). Keras's
        # torch backend registers variables by path, so shared paths hide
        # all copies but one from `model.parameters()`, and from
        # `DistributedDataParallel`, which then would not average their
        # gradients (14 of the 56 variables of a two-branch `build_parallel_dr`
        # were missing). Saved models load as before: weights are matched by
        # the layer structure, not by path.
        with keras.name_scope(self.name), keras.name_scope(f"branch_{index}"):
            return keras.saving.deserialize_keras_object(config)

    def build(self, input_shape):
        for branch in self.branches:
            if not branch.built:
                branch.build(input_shape)

    def call(self, inputs, training=None):
        outputs = [branch(inputs, training=training) for branch in self.branches]
        if len(outputs) == 1:
            return outputs[0]
        return ops.concatenate(outputs, axis=self.axis)

    def compute_output_shape(self, input_shape):
        shape = list(self.branches[0].compute_output_shape(input_shape))
        if shape[self.axis] is not None:
            shape[self.axis] *= self.n_branches
        return tuple(shape)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "branch": self.branch_config,
                "n_branches": self.n_branches,
                "axis": self.axis,
            }
        )
        return config
