"""The `ResNeXtBlock` layer: a bottleneck block with a grouped convolution."""

import keras

from keras_parcaps._checks import check_choice, check_positive_int
from keras_parcaps.layers.group_conv2d import GroupConv2D, _pair


@keras.saving.register_keras_serializable(package="keras_parcaps")
class ResNeXtBlock(keras.layers.Layer):
    """ResNeXt bottleneck block (Xie et al. 2017, Fig. 3c).

    `filters=[f1, f2, f3]`: a 1x1 convolution to `f1` channels, batch
    normalization and ReLU; a grouped `kernel_size` convolution to `f2`
    channels in `cardinality` groups, carrying the stride, batch
    normalization and ReLU; a 1x1 convolution to `f3` channels and batch
    normalization. The shortcut is the identity when the shape is kept and
    otherwise a strided 1x1 projection with batch normalization. The sum
    goes through a ReLU. Convolutions have no bias (batch normalization
    follows each of them). The grouped convolution is a `GroupConv2D`, fast
    on every backend.

    `downsample="pool"` moves the stride out of the convolutions: the block
    max-pools its input over `strides`-sized windows, then runs at stride 1,
    with the same weights. A strided convolution reads every other position
    from one border, a grid that a 90-degree rotation or a flip of an
    even-sized map does not map onto itself; 2x2 windows tile an even-sized
    map and turn into each other. Not in the paper (see
    `keras_parcaps.models.build_dr`'s `backbone="pooled"`).

    The parallel-CapsNet paper uses single blocks like this one, with
    `kernel_size=7`, as its CNN blocks; ResNeXt-50 stacks them with
    `kernel_size=3`.

    Args:
        filters: The three widths `[f1, f2, f3]`; `f1` and `f2` are
            multiples of `cardinality`.
        cardinality: Number of groups of the grouped convolution.
        kernel_size: Window of the grouped convolution, an int or a pair.
            Default 3.
        strides: Stride of the block, an int or a pair. Default 1.
        downsample: How a stride above 1 is taken: `"stride"` (the grouped
            convolution and the projection carry it, as in the paper and
            Xie et al.) or `"pool"` (max-pooling first, then everything at
            stride 1). Either way the block has the same weights. Default
            `"stride"`.
        momentum: Momentum of the batch normalizations. Default 0.99.
        epsilon: Epsilon of the batch normalizations. Default 1e-3.
        kernel_initializer: Initializer of the convolution kernels.
        kernel_regularizer: Optional regularizer of the convolution kernels.
        **kwargs: Base layer keyword arguments, such as `name` and `dtype`.

    Call arguments:
        inputs: Feature map `(batch, height, width, channels)`.
        training: Python boolean, whether batch normalization uses the
            batch statistics (training) or its moving averages.

    Input shape:
        4D tensor `(batch, height, width, channels)`.

    Output shape:
        4D tensor `(batch, ceil(height / s), ceil(width / s), f3)` for
        stride `s`.

    Example:

        >>> x = keras.random.normal((2, 16, 16, 64))
        >>> y = ResNeXtBlock([64, 64, 128], cardinality=16, kernel_size=7,
        ...                  strides=2)(x)
        >>> tuple(y.shape)
        (2, 8, 8, 128)

    Reference:
        - [Xie et al., 2017](https://arxiv.org/abs/1611.05431)
        - [Vigueras-Guillen et al., 2021](https://arxiv.org/abs/2108.02644)
    """

    def __init__(
        self,
        filters,
        cardinality: int,
        kernel_size=3,
        strides=1,
        downsample: str = "stride",
        momentum: float = 0.99,
        epsilon: float = 1e-3,
        kernel_initializer="he_normal",
        kernel_regularizer=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        filters = list(filters) if isinstance(filters, (list, tuple)) else filters
        if not isinstance(filters, list) or len(filters) != 3:
            raise ValueError(
                "`filters` must be three widths [f1, f2, f3]. "
                f"Received: filters={filters!r}"
            )
        for width in filters:
            check_positive_int("filters", width)
        check_positive_int("cardinality", cardinality)
        check_choice("downsample", downsample, ("stride", "pool"))
        if filters[0] % cardinality or filters[1] % cardinality:
            raise ValueError(
                "`filters[0]` and `filters[1]` must be multiples of `cardinality`. "
                f"Received: filters={filters}, cardinality={cardinality}"
            )
        self.filters = filters
        self.cardinality = cardinality
        self.kernel_size = _pair("kernel_size", kernel_size)
        self.strides = _pair("strides", strides)
        self.downsample = downsample
        self.momentum = momentum
        self.epsilon = epsilon
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.kernel_regularizer = keras.regularizers.get(kernel_regularizer)

        conv = dict(
            use_bias=False,
            kernel_initializer=self.kernel_initializer,
            kernel_regularizer=self.kernel_regularizer,
            dtype=self.dtype_policy,
        )
        norm = dict(momentum=momentum, epsilon=epsilon, dtype=self.dtype_policy)
        f1, f2, f3 = filters
        strided = self.strides != (1, 1)
        self.pool = None
        if strided and downsample == "pool":
            self.pool = keras.layers.MaxPooling2D(
                self.strides, padding="same", dtype=self.dtype_policy, name="pool"
            )
        # The convolutions' own stride: none once the input is pooled.
        self._conv_strides = (1, 1) if self.pool is not None else self.strides
        self.reduce = keras.layers.Conv2D(f1, 1, name="reduce", **conv)
        self.reduce_norm = keras.layers.BatchNormalization(name="reduce_norm", **norm)
        self.grouped = GroupConv2D(
            f2,
            self.kernel_size,
            groups=cardinality,
            strides=self._conv_strides,
            padding="same",
            name="grouped",
            **conv,
        )
        self.grouped_norm = keras.layers.BatchNormalization(name="grouped_norm", **norm)
        self.expand = keras.layers.Conv2D(f3, 1, name="expand", **conv)
        self.expand_norm = keras.layers.BatchNormalization(name="expand_norm", **norm)
        self.shortcut = None
        self.shortcut_norm = None

    def build(self, input_shape):
        if len(input_shape) != 4 or input_shape[-1] is None:
            raise ValueError(
                "`ResNeXtBlock` expects a 4D input (batch, height, width, channels) "
                f"with known channels. Received: input_shape={input_shape}"
            )
        f1, f2, f3 = self.filters
        block_input_shape = self._pooled_shape(input_shape)
        self.reduce.build(block_input_shape)
        shape = self.reduce.compute_output_shape(block_input_shape)
        self.reduce_norm.build(shape)
        self.grouped.build(shape)
        shape = self.grouped.compute_output_shape(shape)
        self.grouped_norm.build(shape)
        self.expand.build(shape)
        shape = self.expand.compute_output_shape(shape)
        self.expand_norm.build(shape)
        if self.strides != (1, 1) or input_shape[-1] != f3:
            self.shortcut = keras.layers.Conv2D(
                f3,
                1,
                strides=self._conv_strides,
                padding="same",
                use_bias=False,
                kernel_initializer=self.kernel_initializer,
                kernel_regularizer=self.kernel_regularizer,
                dtype=self.dtype_policy,
                name="shortcut",
            )
            self.shortcut_norm = keras.layers.BatchNormalization(
                momentum=self.momentum,
                epsilon=self.epsilon,
                dtype=self.dtype_policy,
                name="shortcut_norm",
            )
            self.shortcut.build(block_input_shape)
            self.shortcut_norm.build(shape)

    def _pooled_shape(self, input_shape):
        if self.pool is None:
            return tuple(input_shape)
        return self.pool.compute_output_shape(input_shape)

    def call(self, inputs, training=None):
        if self.pool is not None:
            inputs = self.pool(inputs)
        x = keras.activations.relu(
            self.reduce_norm(self.reduce(inputs), training=training)
        )
        x = keras.activations.relu(
            self.grouped_norm(self.grouped(x), training=training)
        )
        x = self.expand_norm(self.expand(x), training=training)
        shortcut = inputs
        if self.shortcut is not None:
            shortcut = self.shortcut_norm(self.shortcut(inputs), training=training)
        return keras.activations.relu(x + shortcut)

    def compute_output_shape(self, input_shape):
        shape = self._pooled_shape(input_shape)
        shape = self.grouped.compute_output_shape((*shape[:3], self.filters[0]))
        return (*shape[:3], self.filters[2])

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "filters": self.filters,
                "cardinality": self.cardinality,
                "kernel_size": self.kernel_size,
                "strides": self.strides,
                "downsample": self.downsample,
                "momentum": self.momentum,
                "epsilon": self.epsilon,
                "kernel_initializer": keras.initializers.serialize(
                    self.kernel_initializer
                ),
                "kernel_regularizer": keras.regularizers.serialize(
                    self.kernel_regularizer
                ),
            }
        )
        return config
