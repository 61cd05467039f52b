"""Agr: how often a model gives the same class in all 8 dihedral orientations."""

import numpy as np

from keras_parcaps.data.augment import dihedral_orientations
from keras_parcaps.data.sampling import to_model_input


def predict_orientations(model, images, batch_size: int = 32) -> np.ndarray:
    """Class scores of `images` in each of the 8 dihedral orientations.

    Args:
        model: A Keras model mapping `float32` images in `[0, 1]` to class
            scores `(batch, classes)`.
        images: `uint8` (or `[0, 1]` float) images `(n, side, side, 3)`.
        batch_size: Prediction batch size.

    Returns:
        Array `(8, n, classes)`; index 0 is the original orientation.

    Example:

        >>> import keras
        >>> from keras_parcaps.data import ImageSet
        >>> images = np.zeros((4, 4, 4, 3), np.uint8)  # red, red, green, green
        >>> images[:2, ..., 0] = images[2:, ..., 1] = 255
        >>> data = ImageSet(None, [0, 0, 1, 2], ["red", "green", "blue"],
        ...                 images=images)
        >>> # Scores are the mean colour: a model blind to orientation.
        >>> model = keras.Sequential(
        ...     [keras.Input((4, 4, 3)), keras.layers.GlobalAveragePooling2D()])
        >>> scores = predict_orientations(model, images)
        >>> scores.shape
        (8, 4, 3)
        >>> scores[0].argmax(-1).tolist(), agreement(scores)
        ([0, 0, 1, 1], 1.0)
    """
    images = np.asarray(images)
    if images.dtype == np.uint8:
        images = to_model_input(images)
    return np.stack(
        [
            np.asarray(model.predict(view, batch_size=batch_size, verbose=0))
            for view in dihedral_orientations(images)
        ]
    )


def agreement(predictions) -> float:
    """Share of images given the same class in every orientation (Agr).

    Args:
        predictions: Classes `(orientations, n)` or scores
            `(orientations, n, classes)`.

    Returns:
        A float in `[0, 1]`, whether or not the class is correct.

    Example:

        >>> # Two orientations of three images; the third changes class.
        >>> agreement(np.array([[0, 1, 2], [0, 1, 0]]))
        0.6666666666666666
    """
    predictions = np.asarray(predictions)
    if predictions.ndim == 3:
        predictions = predictions.argmax(-1)
    if predictions.ndim != 2 or predictions.shape[1] == 0:
        raise ValueError(
            "`predictions` must be (orientations, n) classes or (orientations, "
            f"n, classes) scores. Received shape {predictions.shape}"
        )
    return float(np.mean(np.all(predictions == predictions[:1], axis=0)))
