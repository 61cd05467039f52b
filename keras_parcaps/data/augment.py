"""Seeded flips and rotations of image batches (numpy and scipy: any backend)."""

import numpy as np
from scipy import ndimage


def augment_images(
    images,
    rng,
    flip_up_down: bool = True,
    flip_left_right: bool = True,
    max_rotation: float = 180.0,
    skip: int = 0,
) -> np.ndarray:
    """Randomly flips and rotates each image of a batch, as in the paper.

    Each image is flipped up-down and left-right with probability 1/2 each,
    then rotated by an angle drawn uniformly from `[0, max_rotation]`
    degrees. The rotation keeps the image size and fills the corners by
    reflection, so no black wedges tell the network the angle. Runs in the
    input pipeline on numpy arrays, so it is the same on every backend.

    Args:
        images: Array `(batch, height, width, channels)`.
        rng: A `numpy.random.Generator` or an int seed.
        flip_up_down: Whether to flip up-down at random.
        flip_left_right: Whether to flip left-right at random.
        max_rotation: Largest rotation in degrees (0 disables rotation).
        skip: Images that come before `images` in the batch drawn with
            `rng`: their draws are skipped, so a shard of a batch (one
            process's part in distributed training) is flipped and rotated
            exactly as in the whole batch.

    Returns:
        A new array of the same shape and dtype.

    Example:

        >>> image = np.array([[1, 2], [3, 4]], np.uint8)
        >>> batch = np.stack([image, image])[..., None].repeat(3, axis=-1)
        >>> out = augment_images(batch, rng=0, max_rotation=0)  # flips only
        >>> out.shape, out.dtype
        ((2, 2, 2, 3), dtype('uint8'))
        >>> out[..., 0].tolist()  # the same seed gives the same flips
        [[[2, 1], [4, 3]], [[4, 3], [2, 1]]]
        >>> rotated = augment_images(np.zeros((1, 8, 8, 3), np.uint8), rng=0)
        >>> rotated.shape
        (1, 8, 8, 3)
        >>> # The second image alone, augmented as inside the batch:
        >>> second = augment_images(batch[1:], rng=0, max_rotation=0, skip=1)
        >>> np.array_equal(second, out[1:])
        True
    """
    rng = np.random.default_rng(rng)
    images = np.asarray(images)
    if images.ndim != 4:
        raise ValueError(
            "`images` must be (batch, height, width, channels). "
            f"Received: images.shape={images.shape}"
        )
    if skip < 0:
        raise ValueError(f"`skip` must be >= 0. Received: skip={skip}")

    def draw():
        up_down = flip_up_down and rng.random() < 0.5
        left_right = flip_left_right and rng.random() < 0.5
        angle = rng.uniform(0.0, max_rotation) if max_rotation else 0.0
        return up_down, left_right, angle

    for _ in range(skip):
        draw()
    out = np.empty_like(images)
    for i, image in enumerate(images):
        up_down, left_right, angle = draw()
        if up_down:
            image = image[::-1]
        if left_right:
            image = image[:, ::-1]
        if angle:
            image = ndimage.rotate(
                image, angle, axes=(1, 0), reshape=False, order=1, mode="reflect"
            )
        out[i] = image
    return out


def dihedral_orientations(images) -> list:
    """The 8 orientations of the dihedral group: 4 rotations x (no flip, flip).

    Args:
        images: Array `(batch, height, width, channels)` with height == width.

    Returns:
        A list of 8 arrays; the first is `images` itself.

    Example:

        >>> image = np.array([[1, 2], [3, 4]])[None, ..., None]  # (1, 2, 2, 1)
        >>> views = dihedral_orientations(image)
        >>> [view[0, ..., 0].tolist() for view in views[:2]]  # as is, turned 90
        [[[1, 2], [3, 4]], [[2, 4], [1, 3]]]
        >>> len({view.tobytes() for view in views})  # all 8 differ
        8
    """
    images = np.asarray(images)
    if images.ndim != 4 or images.shape[1] != images.shape[2]:
        raise ValueError(
            "`images` must be (batch, side, side, channels). "
            f"Received: images.shape={images.shape}"
        )
    out = []
    for flipped in (images, images[:, :, ::-1]):
        for k in range(4):
            out.append(np.ascontiguousarray(np.rot90(flipped, k, axes=(1, 2))))
    return out
