"""Elementary capsule operations: `safe_norm` and `squash`."""

from keras import ops


def safe_norm(x, axis: int = -1, keepdims: bool = False, epsilon: float = 1e-7):
    """Euclidean norm that has a finite gradient at zero.

    `sqrt(sum(x**2) + epsilon)`: the `epsilon` inside the square root keeps
    the gradient finite where `x` is all zeros (a plain norm's is `0 / 0`).

    Args:
        x: Tensor.
        axis: Axis along which the norm is taken.
        keepdims: Whether to keep the reduced axis with length 1.
        epsilon: Small positive constant added under the square root.

    Returns:
        The norms, with `axis` reduced.

    Example:

        >>> import numpy as np
        >>> float(safe_norm(np.array([3.0, 4.0]), epsilon=0.0))
        5.0
    """
    squared = ops.sum(ops.square(x), axis=axis, keepdims=keepdims)
    return ops.sqrt(squared + epsilon)


def squash(x, axis: int = -1, epsilon: float = 1e-7):
    """The capsule non-linearity of Sabour et al. (2017), Eq. 1.

    `v = |s|^2 / (1 + |s|^2) * s / |s|`: keeps the direction of `s` and maps
    its length into `[0, 1)`. Short vectors shrink quadratically, long ones
    approach length 1. Safe at zero: value and gradient are finite.

    Args:
        x: Tensor of capsule vectors.
        axis: The capsule axis.
        epsilon: Small positive constant that keeps `|s|` away from zero.

    Returns:
        A tensor of the shape of `x`.

    Example:

        >>> import numpy as np
        >>> v = squash(np.array([3.0, 4.0]))
        >>> round(float(np.linalg.norm(v)), 4)  # 25 / 26
        0.9615
    """
    squared = ops.sum(ops.square(x), axis=axis, keepdims=True)
    scale = squared / (1.0 + squared) / ops.sqrt(squared + epsilon)
    return scale * x
