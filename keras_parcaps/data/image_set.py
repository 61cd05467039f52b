"""`ImageSet`: images with integer labels, decoded on demand; `decode_image`."""

import os
import warnings
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from PIL import Image

from keras_parcaps._checks import check_choice, check_positive_int


def _image_size(image_size):
    if image_size is None:
        return None
    if isinstance(image_size, int):
        image_size = (image_size, image_size)
    image_size = tuple(image_size)
    if len(image_size) != 2:
        raise ValueError(
            "`image_size` must be an int, a pair (height, width) or None. "
            f"Received: image_size={image_size!r}"
        )
    for side in image_size:
        check_positive_int("image_size", side)
    return image_size


def decode_image(path, image_size=None) -> np.ndarray:
    """Reads one image as RGB `uint8`, resized to `image_size` if given.

    RGBA, palette and grayscale images are converted to RGB. JPEGs are
    decoded at a reduced scale when that is still larger than the target
    (`draft`), which makes decoding large JPEGs to small inputs much faster.

    Args:
        path: Image file (TIFF, JPEG, PNG, BMP).
        image_size: `(height, width)`, an int for a square, or `None` to keep
            the image's own size.

    Returns:
        Array `(height, width, 3)` of `uint8`.

    Raises:
        ValueError: naming the file, when it cannot be decoded.

    Example:

        >>> import pathlib, tempfile
        >>> from PIL import Image
        >>> tmp = tempfile.TemporaryDirectory()
        >>> path = pathlib.Path(tmp.name) / "cell.png"
        >>> Image.new("L", (30, 20), color=200).save(path)  # grayscale, 30 wide
        >>> image = decode_image(path, image_size=8)
        >>> image.shape, image.dtype, image[0, 0].tolist()
        ((8, 8, 3), dtype('uint8'), [200, 200, 200])
        >>> decode_image(path).shape  # its own size: (height, width, 3)
        (20, 30, 3)
    """
    size = _image_size(image_size)
    try:
        with Image.open(path) as image:
            if size is not None:
                image.draft("RGB", (size[1], size[0]))
            if image.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
                # 16-bit and float scans: rescale to 8 bits before RGB.
                array = np.asarray(image, dtype=np.float32)
                if not np.isfinite(array).all():
                    raise ValueError("it holds NaN or infinite pixel values")
                span = max(float(array.max() - array.min()), 1e-12)
                array = (array - array.min()) / span * 255.0
                image = Image.fromarray(array.astype(np.uint8))
            image = image.convert("RGB")
            if size is not None and image.size != (size[1], size[0]):
                image = image.resize(
                    (size[1], size[0]), Image.Resampling.BILINEAR, reducing_gap=2.0
                )
            return np.asarray(image, dtype=np.uint8)
    except Exception as error:  # Pillow raises many types for bad files.
        raise ValueError(f"Cannot decode image {path}: {error}") from error


class _Store:
    """Decoded images shared by an `ImageSet` and its subsets."""

    def __init__(self, paths, image_size, cache, images=None):
        self.paths = paths
        self.image_size = image_size
        self.cache = cache
        self.images = images
        self.loaded = None if images is None else np.ones(len(images), bool)

    def get(self, rows):
        if self.images is not None and self.loaded[rows].all():
            return self.images[rows]
        decoded, _ = _decode_many([self.paths[row] for row in rows], self.image_size)
        if self.cache:
            if self.images is None:
                shape = (len(self.paths), *decoded.shape[1:])
                self.images = np.zeros(shape, np.uint8)
                self.loaded = np.zeros(len(self.paths), bool)
            self.images[rows] = decoded
            self.loaded[rows] = True
        return decoded


def _decode_many(paths, image_size, skip_errors=False):
    """`(images, keep)`: the decodable images stacked, and which were.

    Undecodable images raise (naming the file) unless `skip_errors`.
    """

    def decode(path):
        try:
            return decode_image(path, image_size)
        except ValueError:
            if not skip_errors:
                raise
            return None

    workers = min(len(paths), os.cpu_count() or 1)
    if workers <= 1:
        images = [decode(path) for path in paths]
    else:
        # Pillow releases the GIL while decoding and resizing.
        with ThreadPoolExecutor(workers) as pool:
            images = list(pool.map(decode, paths))
    keep = np.array([image is not None for image in images], bool)
    images = [image for image in images if image is not None]
    if not images:
        raise ValueError("No image could be decoded.")
    first = images[0].shape
    if any(image.shape != first for image in images):
        raise ValueError(
            f"Images of mixed sizes ({first} and others); pass `image_size` to "
            "resize them to one size."
        )
    return np.stack(images), keep


class ImageSet:
    """Images with integer labels, decoded on demand and optionally cached.

    The common type of every dataset in `kp.data`: the class-folder and AML
    loaders return one, `synthetic_cells` builds one from arrays, and the
    samplers and `kp.training` read from one. Images are RGB `uint8`.

    Args:
        paths: Image files, or `None` when `images` is given.
        labels: Integer labels, one per image.
        class_names: Class names (codes) in label order.
        image_size: `(height, width)` or an int; images are resized to it.
            `None` keeps their own size (they must then all match).
        cache: Whether to keep decoded images in memory. Default `True`.
        on_error: `"raise"` (default) to fail on an undecodable image with
            an error naming it; `"skip"` to decode every image now, drop the
            bad ones and list them in `skipped` (with a warning saying how
            many).
        full_names: Optional long class names, in label order.
        images: Optional array `(n, height, width, 3)` of decoded images.

    Example:

        >>> images = np.zeros((3, 8, 8, 3), np.uint8)
        >>> images[2] = 255
        >>> data = ImageSet(None, [0, 1, 1], ["a", "b"], images=images)
        >>> len(data), data.num_classes, data.class_counts().tolist()
        (3, 2, [1, 2])
        >>> data.images([2]).shape, int(data.images([2]).max())
        ((1, 8, 8, 3), 255)
        >>> part = data.subset([2, 0])  # shares the decoded images
        >>> part.labels.tolist(), int(part.images()[0].min())
        ([1, 0], 255)
    """

    def __init__(
        self,
        paths,
        labels,
        class_names,
        image_size=None,
        cache: bool = True,
        on_error: str = "raise",
        full_names=None,
        images=None,
    ):
        check_choice("on_error", on_error, ("raise", "skip"))
        labels = np.asarray(labels, dtype=np.int64)
        self.class_names = list(class_names)
        self.full_names = list(full_names) if full_names else list(class_names)
        self.on_error = on_error
        self.skipped = []
        if images is not None:
            images = np.asarray(images)
            if images.dtype.kind == "f" and not np.isfinite(images).all():
                raise ValueError(
                    "`images` hold NaN or infinite values, e.g. image "
                    f"{int(np.argwhere(~np.isfinite(images))[0, 0])}"
                )
            images = images.astype(np.uint8, copy=False)
            if images.ndim != 4 or images.shape[-1] != 3 or len(images) != len(labels):
                raise ValueError(
                    "`images` must be (n, height, width, 3) with one label per "
                    f"image. Received: images.shape={images.shape}, "
                    f"{len(labels)} labels"
                )
            paths = [f"<image {i}>" for i in range(len(images))]
            image_size = images.shape[1:3]
        else:
            paths = [str(path) for path in paths]
            if len(paths) != len(labels):
                raise ValueError(
                    f"Got {len(paths)} paths and {len(labels)} labels; they must match."
                )
        self.image_size = _image_size(image_size)
        if len(labels) and (labels.min() < 0 or labels.max() >= len(class_names)):
            raise ValueError(
                f"Labels must be in [0, {len(class_names)}). Received labels "
                f"in [{labels.min()}, {labels.max()}]"
            )
        if on_error == "skip" and images is None:
            images, keep = self._decode_or_skip(paths)
            paths = [p for p, k in zip(paths, keep, strict=True) if k]
            labels = labels[keep]
        self._store = _Store(paths, self.image_size, cache, images)
        self._rows = np.arange(len(paths))
        self.labels = labels

    def _decode_or_skip(self, paths):
        images, keep = _decode_many(paths, self.image_size, skip_errors=True)
        self.skipped = [p for p, k in zip(paths, keep, strict=True) if not k]
        if self.skipped:
            warnings.warn(
                f"Skipped {len(self.skipped)} image(s) that could not be "
                f"decoded, e.g. {self.skipped[0]}",
                stacklevel=3,
            )
        return images, keep

    @property
    def paths(self):
        return [self._store.paths[row] for row in self._rows]

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def __len__(self) -> int:
        return len(self._rows)

    def class_counts(self) -> np.ndarray:
        """Number of images per class, in label order."""
        return np.bincount(self.labels, minlength=self.num_classes)

    def images(self, indices=None) -> np.ndarray:
        """Decoded images `(n, height, width, 3)` `uint8` at `indices`."""
        rows = self._rows if indices is None else self._rows[np.asarray(indices)]
        if len(rows) == 0:
            raise ValueError("No image selected.")
        return self._store.get(rows)

    def subset(self, indices) -> "ImageSet":
        """The images at `indices`, sharing this set's cache."""
        indices = np.asarray(indices, dtype=np.int64)
        child = object.__new__(ImageSet)
        child.__dict__.update(self.__dict__)
        child._rows = self._rows[indices]
        child.labels = self.labels[indices]
        child.skipped = []
        return child

    def preload(self, batch_size: int = 256) -> "ImageSet":
        """Decodes (and caches) every image now; returns `self`.

        Run before training, this finds every unreadable file at once
        instead of hours into a run when one is first drawn.

        Raises:
            ValueError: naming every image that cannot be decoded.
        """
        bad = []
        for start in range(0, len(self), batch_size):
            indices = np.arange(start, min(start + batch_size, len(self)))
            try:
                self.images(indices)
            except ValueError:
                for path in (self.paths[i] for i in indices):
                    try:
                        decode_image(path, self.image_size)
                    except ValueError as error:
                        bad.append(f"{path} ({error.__cause__ or error})")
        if bad:
            raise ValueError(
                f"{len(bad)} image(s) cannot be read: {'; '.join(bad)}. Fix or "
                "remove them, or skip them with on_error='skip' (--on-error skip)"
            )
        return self
