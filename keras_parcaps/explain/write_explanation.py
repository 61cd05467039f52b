"""`write_explanation`: an explanation's numbers and pictures, in a folder."""

from pathlib import Path

from keras_parcaps._checks import check_positive_int
from keras_parcaps.explain.explanation_panel import plot_explanation
from keras_parcaps.explain.explanation_summary import plot_explanation_summary
from keras_parcaps.explain.pose_perturbation_grid import plot_pose_perturbation


def write_explanation(explanation, out_dir, max_panels: int = 16, names=None) -> dict:
    """Writes the numbers (JSON, NPZ) and the pictures (PNG) of an explanation.

    `explanation.json` holds the per-image numbers and the dataset summary
    (`CapsuleExplanation.to_dict`), `routing.npz` the routing traces of every
    layer, `summary.png` the dataset-level summary, `panel_<name>.png` one
    page per image for the first `max_panels` images, and for models with a
    decoder `pose_<name>.png` the pose-perturbation grids.

    Args:
        explanation: A `kp.explain.CapsuleExplanation`.
        out_dir: Output folder, created if needed.
        max_panels: At most this many per-image pages (and pose grids).
        names: Optional file-name stems per image (such as the image file
            names); default the image index, `000`, `001`, ...

    Returns:
        A dict of the written paths: `json`, `npz`, `summary`, and the lists
        `panels` and `poses`.

    Example:

        >>> import os, tempfile
        >>> import numpy as np
        >>> import keras_parcaps as kp
        >>> model = kp.models.build_parallel_dr(
        ...     input_shape=(16, 16, 3), num_classes=3, n_branches=2)
        >>> images = np.random.default_rng(0).uniform(size=(2, 16, 16, 3))
        >>> explanation = kp.explain.explain_capsules(
        ...     model, images, orientations=False)
        >>> tmp = tempfile.TemporaryDirectory()
        >>> files = write_explanation(explanation, tmp.name, max_panels=1)
        >>> sorted(os.listdir(tmp.name))
        ['explanation.json', 'panel_000.png', 'routing.npz', 'summary.png']
    """
    check_positive_int("max_panels", max_panels, minimum=0)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    count = len(explanation.predictions)
    if names is None:
        names = [f"{i:03d}" for i in range(count)]
    if len(names) != count:
        raise ValueError(
            f"`names` must name the {count} images. Received: {len(names)} names"
        )
    files = explanation.save(out_dir)
    files["summary"] = plot_explanation_summary(explanation, out_dir / "summary.png")
    files["panels"], files["poses"] = [], []
    for i in range(min(max_panels, count)):
        files["panels"].append(
            plot_explanation(
                explanation, i, out_dir / f"panel_{names[i]}.png", title=names[i]
            )
        )
        if explanation.pose_perturbation is not None:
            files["poses"].append(
                plot_pose_perturbation(explanation, i, out_dir / f"pose_{names[i]}.png")
            )
    return files
