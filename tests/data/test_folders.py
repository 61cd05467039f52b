import numpy as np
import pytest
from PIL import Image

from keras_parcaps.data import ImageSet, decode_image, load_class_folders
from tests.data.shared_data import shared_data


def _save(path, array, mode=None, format=None):
    path.parent.mkdir(parents=True, exist_ok=True)
    image = Image.fromarray(array)
    if mode:
        image = image.convert(mode)
    image.save(path, format=format)


@pytest.fixture
def tree(tmp_path, rng):
    """Three classes, every format and mode, mixed sizes."""

    def noise(h, w):
        return rng.integers(0, 256, (h, w, 3), dtype=np.uint8)

    _save(tmp_path / "alpha" / "a.png", noise(40, 50), "RGBA")
    _save(tmp_path / "alpha" / "b.tiff", noise(64, 64), "RGBA")
    _save(tmp_path / "beta" / "c.jpg", noise(30, 30), "L")
    _save(tmp_path / "beta" / "d.TIF", noise(33, 21))
    _save(tmp_path / "gamma" / "e.jpeg", noise(100, 80))
    (tmp_path / "gamma" / "notes.txt").write_text("not an image")
    (tmp_path / "README.md").write_text("ignored")
    return tmp_path


def test_loads_every_format_resized(tree):
    data = load_class_folders(tree, image_size=(24, 20))
    assert data.class_names == ["alpha", "beta", "gamma"]
    assert data.labels.tolist() == [0, 0, 1, 1, 2]
    images = data.images()
    assert images.shape == (5, 24, 20, 3) and images.dtype == np.uint8
    gray = images[2]  # the grayscale JPEG becomes equal R, G and B
    assert np.array_equal(gray[..., 0], gray[..., 1])
    assert data.class_counts().tolist() == [2, 2, 1]


def test_decode_matches_pillow(tree, tmp_path):
    path = tree / "alpha" / "b.tiff"
    expected = np.asarray(Image.open(path).convert("RGB"))
    assert np.array_equal(decode_image(path), expected)
    ramp = np.linspace(0, 255, 64)
    smooth = np.stack(np.broadcast_arrays(ramp[:, None], ramp[None, :], 128.0), -1)
    _save(tmp_path / "smooth.png", smooth.astype(np.uint8))
    # An independent area average: 64 -> 16 is a mean over 4x4 blocks.
    blocks = smooth.reshape(16, 4, 16, 4, 3).mean(axis=(1, 3))
    assert np.abs(decode_image(tmp_path / "smooth.png", 16) - blocks).max() <= 2


def test_cache_and_subset(tree):
    data = load_class_folders(tree, image_size=8)
    no_cache = load_class_folders(tree, image_size=8, cache=False)
    first = data.images([1, 3])
    assert data._store.loaded[[1, 3]].all() and not data._store.loaded[0]
    (tree / "alpha" / "b.tiff").unlink()  # served from the cache now
    assert np.array_equal(data.images([1, 3]), first)
    sub = data.subset([3, 1])
    assert sub.labels.tolist() == [1, 0]
    assert np.array_equal(sub.images(), first[::-1])
    with pytest.raises(ValueError, match="b.tiff"):
        no_cache.images([1])


def test_selected_classes_and_order(tree):
    data = load_class_folders(tree, image_size=8, classes=["gamma", "alpha"])
    assert data.labels.tolist() == [0, 1, 1]
    assert data.paths[0].endswith("e.jpeg")


def test_missing_directory(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope"):
        load_class_folders(tmp_path / "nope")


def test_no_class_folder(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="No class folder with images"):
        load_class_folders(tmp_path)


def test_empty_and_unknown_class_folder(tree):
    (tree / "delta").mkdir()
    data = load_class_folders(tree, image_size=8)  # empty folders are not classes
    assert "delta" not in data.class_names
    with pytest.raises(ValueError, match="delta holds no image"):
        load_class_folders(tree, classes=["alpha", "delta"])
    with pytest.raises(ValueError, match="Unknown class 'omega'.*alpha, beta"):
        load_class_folders(tree, classes=["omega"])


def test_corrupt_image_named_or_skipped(tree):
    bad = tree / "beta" / "broken.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    truncated = tree / "gamma" / "cut.jpg"
    truncated.write_bytes((tree / "gamma" / "e.jpeg").read_bytes()[:200])
    data = load_class_folders(tree, image_size=8)
    with pytest.raises(ValueError, match="broken.png"):
        data.images()
    with pytest.warns(UserWarning, match="Skipped 2 image"):
        data = load_class_folders(tree, image_size=8, on_error="skip")
    assert sorted(data.skipped) == sorted([str(bad), str(truncated)])
    assert len(data) == 5
    assert data.images().shape == (5, 8, 8, 3)


def test_mixed_sizes_need_image_size(tree):
    data = load_class_folders(tree, image_size=None)
    with pytest.raises(ValueError, match="mixed sizes.*image_size"):
        data.images()


def test_bad_arguments():
    with pytest.raises(ValueError, match="on_error"):
        ImageSet([], [], ["a"], on_error="ignore")
    with pytest.raises(ValueError, match="image_size"):
        ImageSet([], [], ["a"], image_size=(1, 2, 3))
    with pytest.raises(ValueError, match="Labels must be in"):
        ImageSet(None, [0, 2], ["a", "b"], images=np.zeros((2, 4, 4, 3)))


def test_real_jpegs():
    root = shared_data("bccd_wbc")
    data = load_class_folders(root, image_size=32, cache=False)
    assert data.class_names == [
        "Basophil",
        "Eosinophil",
        "Lymphocyte",
        "Monocyte",
        "Neutrophil",
    ]
    assert data.class_counts().tolist() == [3, 88, 33, 20, 207]
    assert data.images(np.arange(4)).shape == (4, 32, 32, 3)


def test_non_finite_pixels_are_rejected(tmp_path):
    pixels = np.ones((6, 6), np.float32)
    pixels[2, 3] = np.nan
    Image.fromarray(pixels, mode="F").save(tmp_path / "scan.tiff")
    with pytest.raises(ValueError, match="scan.tiff.*NaN or infinite"):
        decode_image(tmp_path / "scan.tiff")
    images = np.zeros((2, 4, 4, 3), np.float32)
    images[1, 0, 0, 0] = np.inf
    with pytest.raises(ValueError, match="NaN or infinite values, e.g. image 1"):
        ImageSet(None, [0, 1], ["a", "b"], images=images)


def test_preload_names_every_unreadable_image(tmp_path):
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        for i in range(3):
            Image.new("RGB", (8, 8)).save(tmp_path / name / f"{i}.png")
    (tmp_path / "a" / "1.png").write_bytes(b"")
    (tmp_path / "b" / "2.png").write_bytes(b"not a png")
    data = load_class_folders(tmp_path, image_size=8)
    with pytest.raises(ValueError, match="2 image.s. cannot be read") as error:
        data.preload()
    assert "a/1.png" in str(error.value) and "b/2.png" in str(error.value)
