"""What the figures show, computed from a `CapsuleExplanation` (no plotting)."""

import numpy as np


def groups(explanation):
    """`(names, share, coupling)` of the class layer's input capsule groups.

    The groups are the branches of a parallel network, else the capsule
    types of the class layer's input (Mid-Caps, or Primary-Cap types
    pooled over the grid). `share` `(n, G, C)` sums to 1 over groups;
    `coupling` `(n, G, C)` is the mean final coupling (or assignment).
    """
    if explanation.branches is not None:
        b = explanation.branches
        names = [f"branch {k}" for k in range(b["share"].shape[1])]
        return names, b["share"], b["coupling"]
    trace = explanation.class_routing
    types = trace["input_shape"][-2]
    n, n_in, c = trace["contribution"].shape
    contribution = trace["contribution"].reshape(n, n_in // types, types, c).sum(1)
    total = contribution.sum(1, keepdims=True)
    share = np.divide(
        contribution,
        total,
        out=np.zeros_like(contribution),
        where=np.abs(total) > 1e-12,
    )
    coupling = trace["coupling"][-1].reshape(n, n_in // types, types, c).mean(1)
    kind = "Mid-Cap" if len(trace["input_shape"]) == 2 else "type"
    return [f"{kind} {k}" for k in range(types)], share, coupling


def iteration_coupling(explanation, index):
    """Mean coupling of each group to the predicted class, per iteration:
    `(iterations, G)`."""
    trace = explanation.class_routing
    pred = explanation.predictions[index]
    coupling = trace["coupling"][:, index, :, pred]
    if explanation.branches is not None:
        count = explanation.branches["share"].shape[1]
    else:
        count = trace["input_shape"][-2]
    iterations = coupling.shape[0]
    types = trace["input_shape"][-2]
    coupling = coupling.reshape(iterations, -1, types).mean(1)
    return coupling.reshape(iterations, count, -1).mean(-1)


def _grid_map(trace, index, output, weights=None):
    """Contribution of a grid input to one output, summed over types."""
    shape = trace["input_shape"]
    if len(shape) != 4 or trace["contribution"].ndim != 3:
        return None
    height, width, types = shape[:3]
    values = trace["contribution"][index, :, output].reshape(height, width, types)
    if weights is not None:
        values = values * weights
    return values.sum(-1)


def evidence_map(explanation, index):
    """Where the evidence for the predicted class lay, `(height, width)` on
    the capsule grid, or `None` when no capsule layer sees a grid.

    The class layer's own input when it is a grid; for a parallel network
    whose branches end in Mid-Caps, each branch's Mid-Cap map (the
    contribution of its grid capsules) scaled by the branch's share of the
    predicted class, summed over branches.
    """
    trace = explanation.class_routing
    pred = int(explanation.predictions[index])
    grid = _grid_map(trace, index, pred)
    if grid is not None or explanation.branches is None:
        return grid
    share = explanation.branches["share"][index, :, pred]
    total = None
    for k, weight in enumerate(share):
        first = next((r for r in explanation.routing if r["branch"] == k), None)
        part = None if first is None else _grid_map(first, index, 0)
        if part is None:
            return None
        scale = np.abs(part).sum()
        part = weight * part / scale if scale > 0 else part * 0
        total = part if total is None else total + part
    return total
