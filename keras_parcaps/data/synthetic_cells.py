"""A built-in dataset of procedurally drawn leukocyte-like cells.

Lets `keras-parcaps demo` train and evaluate a network with no download:
one white cell per image, on a background of red cells, the classes told
apart as in real smears by the shape and lobes of the nucleus and the colour
and texture of the cytoplasm. Everything is drawn with numpy (and a scipy
blur), seeded, at about 1-2 ms per 64x64 image.
"""

import numpy as np
from scipy import ndimage

from keras_parcaps.data.image_set import ImageSet

# Code, full name (Matek codes), cell radius (fraction of the half-image),
# cytoplasm RGB, granule RGB, granule blur sigma in pixels at 64x64 (0: none)
# and default image count (unbalanced like real smears).
SYNTHETIC_CLASSES = (
    ("NGS", "Neutrophil (segmented)", 0.55, (226, 204, 214), (205, 160, 190), 0.8, 240),
    ("NGB", "Neutrophil (band)", 0.55, (226, 204, 214), (205, 160, 190), 0.8, 60),
    ("LYT", "Lymphocyte (typical)", 0.40, (168, 188, 228), (168, 188, 228), 0.0, 160),
    ("MON", "Monocyte", 0.70, (190, 188, 214), (236, 236, 244), 1.6, 100),
    ("EOS", "Eosinophil", 0.60, (232, 170, 128), (214, 96, 60), 1.4, 60),
    ("BAS", "Basophil", 0.52, (196, 172, 210), (70, 30, 90), 1.4, 40),
)
SYNTHETIC_CODES = tuple(row[0] for row in SYNTHETIC_CLASSES)

_NUCLEUS = np.array([104, 52, 132], np.float32)
_RED_CELL = np.array([222, 142, 148], np.float32)
_BACKGROUND = np.array([238, 224, 222], np.float32)


def _disc(x, y, cx, cy, r, px):
    """Anti-aliased disc coverage in [0, 1]; `px` is the width of a pixel."""
    return np.clip((r - np.hypot(x - cx, y - cy)) / px + 0.5, 0.0, 1.0)


def _ring_arc(x, y, radius, half_width, start, span, px):
    """Coverage of a thick circular arc with round ends (a band nucleus)."""
    angle = np.mod(np.arctan2(y, x) - start, 2 * np.pi)
    inside = np.clip((half_width - np.abs(np.hypot(x, y) - radius)) / px + 0.5, 0, 1)
    out = inside * (angle <= span)
    for end in (start, start + span):
        ex, ey = radius * np.cos(end), radius * np.sin(end)
        out = np.maximum(out, _disc(x, y, ex, ey, half_width, px))
    return out


def _nucleus(code, u, v, rng, px):
    """Nucleus coverage in the cell's own (rotated, unit-radius) frame."""
    if code in ("NGS", "BAS"):
        lobes = rng.integers(3, 6) if code == "NGS" else rng.integers(2, 4)
        arc = rng.uniform(1.3, 1.7) * np.pi
        angles = -arc / 2 + arc * np.arange(lobes) / max(lobes - 1, 1)
        out = _ring_arc(u, v, 0.42, 0.06, -arc / 2, arc, px)
        for a in angles:
            out = np.maximum(
                out, _disc(u, v, 0.42 * np.cos(a), 0.42 * np.sin(a), 0.22, px)
            )
        return out
    if code == "NGB":
        span = rng.uniform(1.1, 1.5) * np.pi
        return _ring_arc(u, v, 0.45, 0.15, -span / 2, span, px)
    if code == "LYT":
        return _disc(u, v, rng.uniform(-0.08, 0.08), 0.0, 0.8, px)
    if code == "MON":
        ellipse = _disc(u / 1.0, v / 0.75, 0.0, 0.0, 0.62, px)
        notch = _disc(u, v, 0.62, 0.0, 0.32, px)
        return ellipse * (1.0 - notch)
    if code == "EOS":
        out = _disc(u, v, -0.32, 0.0, 0.27, px)
        out = np.maximum(out, _disc(u, v, 0.32, 0.0, 0.27, px))
        return np.maximum(out, _disc(u / 1.0, v / 0.35, 0.0, 0.0, 0.3, px))
    raise ValueError(f"Unknown synthetic class {code!r}.")


def _texture(rng, size, sigma):
    """Granules: blurred noise, thresholded softly, in [0, 1]."""
    noise = rng.random((size, size)).astype(np.float32)
    if sigma > 0:
        noise = ndimage.gaussian_filter(noise, sigma)
        noise = (noise - noise.mean()) / (noise.std() + 1e-6)
        return np.clip(noise - 0.6, 0.0, 1.0)
    return np.zeros_like(noise)


def draw_cell(code: str, size: int = 64, rng=None) -> np.ndarray:
    """Draws one image `(size, size, 3)` `uint8` of class `code`.

    A white cell of the class, nucleus and cytoplasm drawn as in
    `synthetic_cells`, on a background of red cells.

    Args:
        code: One of `SYNTHETIC_CODES`.
        size: Image side in pixels.
        rng: A `numpy.random.Generator` or seed.

    Returns:
        Array `(size, size, 3)` of `uint8`.

    Example:

        >>> image = draw_cell("LYT", size=16, rng=0)
        >>> image.shape, image.dtype
        ((16, 16, 3), dtype('uint8'))
        >>> np.array_equal(image, draw_cell("LYT", size=16, rng=0))  # seeded
        True
        >>> np.array_equal(image, draw_cell("LYT", size=16, rng=1))
        False
    """
    rng = np.random.default_rng(rng)
    row = next((r for r in SYNTHETIC_CLASSES if r[0] == code), None)
    if row is None:
        raise ValueError(
            f"Unknown synthetic class {code!r}. Valid codes: "
            f"{', '.join(SYNTHETIC_CODES)}."
        )
    _, _, radius, cytoplasm, granule, sigma, _ = row
    px = 2.0 / size
    y, x = np.mgrid[0:size, 0:size].astype(np.float32) * px - 1.0 + px / 2
    image = np.broadcast_to(_BACKGROUND, (size, size, 3)).copy()
    image += rng.normal(0, 3, (size, size, 1))
    for _ in range(rng.integers(4, 9)):
        cx, cy = rng.uniform(-1.1, 1.1, 2)
        r = rng.uniform(0.17, 0.26)
        cover = _disc(x, y, cx, cy, r, px)
        pale = 0.25 * _disc(x, y, cx, cy, 0.45 * r, px * 3)
        shade = _RED_CELL * rng.uniform(0.93, 1.05)
        colour = shade * (1 - pale[..., None]) + _BACKGROUND * pale[..., None]
        image = image * (1 - cover[..., None]) + colour * cover[..., None]
    radius = radius * rng.uniform(0.9, 1.1)
    cx, cy = rng.normal(0, 0.05, 2)
    theta = rng.uniform(0, 2 * np.pi)
    dx, dy = x - cx, y - cy
    u = (np.cos(theta) * dx + np.sin(theta) * dy) / radius
    v = (-np.sin(theta) * dx + np.cos(theta) * dy) / radius
    stretch = rng.uniform(0.9, 1.1)
    cell = _disc(u * stretch, v / stretch, 0, 0, 1.0, px / radius)
    grains = _texture(rng, size, sigma * size / 64)[..., None]
    body = (
        np.asarray(cytoplasm, np.float32) * (1 - grains)
        + np.asarray(granule, np.float32) * grains
    )
    if code == "MON":  # vacuoles: a few pale holes in the cytoplasm
        for _ in range(rng.integers(2, 5)):
            a, d = rng.uniform(0, 2 * np.pi), rng.uniform(0.55, 0.85)
            hole = _disc(u, v, d * np.cos(a), d * np.sin(a), 0.08, px / radius)
            body = body * (1 - hole[..., None]) + 245 * hole[..., None]
    image = image * (1 - cell[..., None]) + body * cell[..., None]
    nucleus = _nucleus(code, u, v, rng, px / radius)[..., None] * cell[..., None]
    chromatin = 1.0 + 0.12 * rng.standard_normal((size, size, 1))
    image = image * (1 - nucleus) + _NUCLEUS * chromatin * nucleus
    if code == "BAS":  # dark granules over nucleus and cytoplasm alike
        dots = _texture(rng, size, sigma * size / 64)[..., None] * cell[..., None]
        image = image * (1 - dots) + np.asarray(granule, np.float32) * dots
    image = image * rng.uniform(0.94, 1.06, 3)  # stain variation
    return np.clip(image, 0, 255).astype(np.uint8)


def synthetic_cells(
    counts=None, image_size: int = 64, seed: int = 0, classes=None
) -> ImageSet:
    """Generates the built-in leukocyte-like dataset.

    Args:
        counts: Images per class, a dict `{code: n}`, a sequence in class
            order, or an int for every class. Default: unbalanced counts
            summing to 660 (NGS 240, LYT 160, MON 100, NGB 60, EOS 60,
            BAS 40).
        image_size: Image side in pixels. Default 64.
        seed: Seed; the same seed gives the same images.
        classes: Optional codes to generate, from `SYNTHETIC_CODES`.

    Returns:
        An `ImageSet` held in memory, with codes as `class_names` and long
        names as `full_names`.

    Example:

        >>> data = synthetic_cells(counts=4, image_size=32)
        >>> len(data), data.images().shape[1:]
        (24, (32, 32, 3))
        >>> data.class_names
        ['NGS', 'NGB', 'LYT', 'MON', 'EOS', 'BAS']
        >>> small = synthetic_cells(counts={"LYT": 2, "EOS": 1},
        ...                         classes=["LYT", "EOS"], image_size=8)
        >>> small.full_names, small.labels.tolist()
        (['Lymphocyte (typical)', 'Eosinophil'], [0, 0, 1])
    """
    codes = list(SYNTHETIC_CODES if classes is None else classes)
    rows = {row[0]: row for row in SYNTHETIC_CLASSES}
    for code in codes:
        if code not in rows:
            raise ValueError(
                f"Unknown synthetic class {code!r}. Valid codes: "
                f"{', '.join(SYNTHETIC_CODES)}."
            )
    if counts is None:
        counts = [rows[code][6] for code in codes]
    elif isinstance(counts, int):
        counts = [counts] * len(codes)
    elif isinstance(counts, dict):
        counts = [counts.get(code, 0) for code in codes]
    counts = [int(n) for n in counts]
    if len(counts) != len(codes) or min(counts) < 1:
        raise ValueError(
            f"`counts` must give at least 1 image for each of {codes}. "
            f"Received: counts={counts}"
        )
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(len(codes)), counts)
    images = np.stack([draw_cell(codes[label], image_size, rng) for label in labels])
    return ImageSet(
        None,
        labels,
        codes,
        images=images,
        full_names=[rows[code][1] for code in codes],
    )
