"""`pose_perturbation`: what each dimension of a class capsule encodes."""

import numpy as np
from keras import ops

from keras_parcaps.explain._probe import probe

# Sabour et al. (2017), Fig. 4: each dimension tweaked by -0.25 to 0.25 in
# steps of 0.05.
POSE_VALUES = tuple(np.round(np.arange(-0.25, 0.2501, 0.05), 2).tolist())


def pose_perturbation(
    model, images, values=POSE_VALUES, labels=None, batch_size: int = 16
) -> np.ndarray:
    """Reconstructions while one dimension of the winning capsule sweeps.

    Sabour et al. (2017), Fig. 4: the class capsule of the predicted class
    (or of `labels`) is fed to the reconstruction decoder, all other class
    capsules masked to zero as in training, with `values[s]` added to its
    dimension `d`, for every `d` and `s`. A dimension whose row changes
    the reconstruction smoothly (stroke width, size, skew for digits) is a
    pose parameter the capsule has learned.

    Args:
        model: A model with class capsules and a `decoder` from the masked,
            flattened class capsules to the flat image, such as
            `kp.models.SabourCapsNet(reconstruction=True)`.
        images: `(n, height, width, channels)`, float32 in `[0, 1]`.
        values: Values added to each dimension. Default: -0.25 to 0.25 in
            steps of 0.05, as in the paper.
        labels: Optional classes whose capsule is perturbed; default the
            predicted (longest) one.
        batch_size: Images per forward pass.

    Returns:
        Reconstructions `(n, capsule_dim, len(values), height, width,
        channels)` float32.

    Example:

        >>> import keras_parcaps as kp
        >>> model = kp.models.SabourCapsNet(input_shape=(28, 28, 1), num_classes=3)
        >>> images = np.random.default_rng(0).uniform(size=(1, 28, 28, 1))
        >>> grid = pose_perturbation(model, images.astype("float32"))
        >>> grid.shape  # 1 image, 16 dimensions, 11 values, the image shape
        (1, 16, 11, 28, 28, 1)
    """
    decoder = getattr(model, "decoder", None)
    if decoder is None:
        raise ValueError(
            "`model` has no reconstruction decoder (a `decoder` attribute), "
            "such as `kp.models.SabourCapsNet(reconstruction=True)`. "
            f"Received: model={getattr(model, 'name', model)!r}"
        )
    images = np.asarray(images, "float32")
    _, sites = probe(model, images, batch_size)
    capsules = sites[-1].outputs
    n, num_classes, dim = capsules.shape
    if labels is None:
        labels = np.linalg.norm(capsules, axis=-1).argmax(-1)
    labels = np.asarray(labels, "int64")
    values = np.asarray(values, "float32")
    # (n, dim, steps, classes, dim): one perturbed copy per (d, s).
    sweep = np.broadcast_to(
        capsules[:, None, None], (n, dim, len(values), num_classes, dim)
    ).copy()
    rows = np.arange(n)[:, None, None]
    dims = np.arange(dim)[None, :, None]
    sweep[
        rows, dims, np.arange(len(values))[None, None], labels[:, None, None], dims
    ] += values[None, None, :]
    mask = np.zeros((n, 1, 1, num_classes, 1), "float32")
    mask[np.arange(n), 0, 0, labels] = 1.0
    flat = (sweep * mask).reshape(-1, num_classes * dim)
    step = batch_size * dim * len(values)
    out = np.concatenate(
        [
            np.asarray(ops.convert_to_numpy(decoder(flat[i : i + step])))
            for i in range(0, len(flat), step)
        ]
    )
    return out.reshape(n, dim, len(values), *images.shape[1:]).astype("float32")
