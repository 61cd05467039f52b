"""`CapsuleExplanation`: the numbers behind a model's decisions on a batch."""

import dataclasses
import json
from pathlib import Path

import numpy as np


@dataclasses.dataclass
class CapsuleExplanation:
    """What the capsules of a model decided for a batch of images.

    Made by `kp.explain.explain_capsules`; every array is numpy, with the
    images on the first axis (after the iteration axis for routing traces).
    `n` images, `C` classes, `B` branches.

    Attributes:
        images: The images, `(n, height, width, channels)` float32 in `[0, 1]`.
        class_names: Class names, `C` of them.
        scores: Class scores `(n, C)`: the class-capsule lengths (DR) or
            activations (EM).
        predictions: Predicted classes `(n,)`.
        class_capsules: Class capsules `(n, C, dim)`: vectors (DR) or poses
            with their activation last (EM).
        routing: One dict per routing layer in graph order, with `name`,
            `kind` (`"dr"` or `"em"`), `branch` (the branch index of a layer
            inside a `ParallelBranch`, else `None`), `reproduction_error`
            (the largest difference between the recomputed outputs and the
            layer's own) and the trace of `kp.explain.dr_routing_trace` or
            `kp.explain.em_routing_trace`.
        labels: True classes `(n,)`, or `None`.
        branches: `None` unless the class capsules route the output of a
            `ParallelBranch`; then a dict of `length` `(n, B)`, the mean
            length (DR) or activation (EM) of the branch's capsules, its
            Mid-Cap length with one Mid-Cap per branch; `coupling` `(n, B,
            C)`, the branch's mean coupling (DR) or assignment (EM) to each
            class in the last routing iteration; `contribution` `(n, B, C)`,
            the sum over the branch's capsules of their routing contribution
            to each class (see the trace functions); `share` `(n, B, C)`,
            the contribution divided by its sum over branches, so that it
            sums to 1 over branches and a branch with no say is at 0;
            `scores` `(n, B, C)` and `predictions` `(n, B)`, what the class
            capsules would be if only this branch reached them (the others
            zeroed).
        orientation_scores: Scores `(8, n, C)` in the 8 dihedral
            orientations (index 0 the image as given), or `None`.
        pose_perturbation: `None`, or the reconstructions
            `(n, dims, steps, height, width, channels)` of
            `kp.explain.pose_perturbation` with `pose_values` `(steps,)`.
        pose_values: The values added to each pose dimension, or `None`.

    Example:

        >>> scores = np.array([[0.9, 0.1], [0.2, 0.7]], "float32")
        >>> explanation = CapsuleExplanation(
        ...     images=np.zeros((2, 4, 4, 3), "float32"),
        ...     class_names=["LYT", "MON"],
        ...     scores=scores,
        ...     predictions=scores.argmax(-1),
        ...     class_capsules=np.zeros((2, 2, 16), "float32"),
        ...     routing=[],
        ...     labels=np.array([0, 0]),
        ... )
        >>> explanation.summary()
        {'n': 2, 'acc': 0.5, 'agr': None}
        >>> explanation.image_record(1)["predicted"]
        'MON'
    """

    images: np.ndarray
    class_names: list
    scores: np.ndarray
    predictions: np.ndarray
    class_capsules: np.ndarray
    routing: list
    labels: np.ndarray = None
    branches: dict = None
    orientation_scores: np.ndarray = None
    pose_perturbation: np.ndarray = None
    pose_values: np.ndarray = None

    @property
    def orientation_predictions(self):
        """Predicted classes `(8, n)` in the 8 orientations, or `None`."""
        if self.orientation_scores is None:
            return None
        return self.orientation_scores.argmax(-1)

    @property
    def class_routing(self) -> dict:
        """The trace of the routing layer that makes the class capsules."""
        return next(r for r in reversed(self.routing) if r["branch"] is None)

    def summary(self) -> dict:
        """Dataset-level numbers, JSON-ready.

        Returns:
            A dict with `n`, `acc` (when labels are known), `agr` (when
            orientations were computed), and for parallel networks
            `branch_share_by_class`, the mean share of each branch in the
            predicted class's capsule over the images predicted as that
            class (`C` rows of `B`, `None` for a class never predicted),
            `branch_agreement`, how often each branch alone predicts the
            network's class, and `pairwise_branch_agreement`, how often two
            branches alone predict the same class (`B x B`).
        """
        n = len(self.predictions)
        out = {"n": n, "acc": None, "agr": None}
        if self.labels is not None:
            out["acc"] = float(np.mean(self.predictions == self.labels))
        views = self.orientation_predictions
        if views is not None:
            out["agr"] = float(np.mean(np.all(views == views[:1], axis=0)))
        if self.branches is not None:
            own = self.branches["share"][np.arange(n), :, self.predictions]
            by_class = []
            for c in range(len(self.class_names)):
                rows = own[self.predictions == c]
                by_class.append(rows.mean(0).tolist() if len(rows) else None)
            alone = self.branches["predictions"]
            out["branch_share_by_class"] = by_class
            out["branch_agreement"] = np.mean(
                alone == self.predictions[:, None], axis=0
            ).tolist()
            out["pairwise_branch_agreement"] = np.mean(
                alone[:, :, None] == alone[:, None, :], axis=0
            ).tolist()
        return out

    def image_record(self, index: int) -> dict:
        """The numbers of one image, JSON-ready."""
        names = self.class_names
        pred = int(self.predictions[index])
        record = {
            "index": index,
            "predicted": names[pred],
            "label": None if self.labels is None else names[int(self.labels[index])],
            "scores": dict(
                zip(names, self.scores[index].round(6).tolist(), strict=True)
            ),
        }
        views = self.orientation_predictions
        if views is not None:
            record["orientations"] = [names[int(c)] for c in views[:, index]]
            record["agrees"] = bool(np.all(views[:, index] == views[0, index]))
        if self.branches is not None:
            b = self.branches
            record["branches"] = [
                {
                    "length": float(b["length"][index, k]),
                    "share_of_predicted": float(b["share"][index, k, pred]),
                    "coupling": b["coupling"][index, k].round(6).tolist(),
                    "contribution": b["contribution"][index, k].round(6).tolist(),
                    "alone_predicts": names[int(b["predictions"][index, k])],
                }
                for k in range(b["length"].shape[1])
            ]
        record["routing"] = [
            {
                "layer": r["name"],
                "kind": r["kind"],
                "coupling_by_iteration": _coupling_summary(r, index),
            }
            for r in self.routing
        ]
        return record

    def to_dict(self) -> dict:
        """Everything but the arrays of the routing traces, JSON-ready."""
        return {
            "class_names": list(self.class_names),
            "summary": self.summary(),
            "layers": [
                {
                    "name": r["name"],
                    "kind": r["kind"],
                    "branch": r["branch"],
                    "iterations": int(r["coupling"].shape[0]),
                    "inputs": int(r["coupling"].shape[-2]),
                    "outputs": int(r["coupling"].shape[-1]),
                    "reproduction_error": r["reproduction_error"],
                }
                for r in self.routing
            ],
            "images": [self.image_record(i) for i in range(len(self.predictions))],
        }

    def save(self, path) -> dict:
        """Writes `explanation.json` (`to_dict`) and `routing.npz` to `path`.

        `routing.npz` holds the arrays: `scores`, `predictions`, the branch
        arrays as `branch_<key>`, and each routing layer's trace as
        `<layer name>/<key>`.

        Args:
            path: Output folder, created if needed.

        Returns:
            A dict of the written paths, `json` and `npz`.
        """
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        files = {"json": path / "explanation.json", "npz": path / "routing.npz"}
        files["json"].write_text(json.dumps(self.to_dict(), indent=1))
        arrays = {"scores": self.scores, "predictions": self.predictions}
        for key, value in (self.branches or {}).items():
            arrays[f"branch_{key}"] = value
        for r in self.routing:
            for key, value in r.items():
                if isinstance(value, np.ndarray):
                    arrays[f"{r['name']}/{key}"] = value
        np.savez_compressed(files["npz"], **arrays)
        return {key: str(value) for key, value in files.items()}


def _coupling_summary(trace, index):
    """Per iteration, the mean coupling (or assignment) of the inputs to each
    output: where the routing sent the image's capsules."""
    coupling = trace["coupling"][:, index]
    coupling = coupling.reshape(coupling.shape[0], -1, coupling.shape[-1])
    return coupling.mean(axis=-2).round(6).tolist()
