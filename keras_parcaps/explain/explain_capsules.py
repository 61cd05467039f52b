"""`explain_capsules`: routing, branches, orientations and poses of a batch."""

import numpy as np
from keras import ops

from keras_parcaps.evaluation.agreement import predict_orientations
from keras_parcaps.explain._probe import probe
from keras_parcaps.explain.capsule_explanation import CapsuleExplanation
from keras_parcaps.explain.dr_routing_trace import dr_routing_trace
from keras_parcaps.explain.em_routing_trace import em_routing_trace
from keras_parcaps.explain.pose_perturbation import POSE_VALUES, pose_perturbation
from keras_parcaps.layers.dr_caps import DRCaps
from keras_parcaps.ops.em_routing import em_routing
from keras_parcaps.ops.routing import dynamic_routing

# Trace arrays with the routing iteration as their first axis.
_ITERATED = ("coupling", "agreement", "outputs", "assignments", "activations", "poses")


def _model_input(images):
    images = np.asarray(images)
    if images.ndim != 4:
        raise ValueError(
            "`images` must be a batch (n, height, width, channels). "
            f"Received: images.shape={images.shape}"
        )
    if images.dtype == np.uint8:
        return images.astype("float32") / 255.0
    return images.astype("float32")


def _trace(layer, inputs, batch_size):
    """The routing trace of `layer` on `inputs`, computed batch by batch."""
    function = dr_routing_trace if isinstance(layer, DRCaps) else em_routing_trace
    parts = [
        function(layer, inputs[start : start + batch_size])
        for start in range(0, len(inputs), batch_size)
    ]
    trace = {
        key: np.concatenate([p[key] for p in parts], axis=int(key in _ITERATED))
        for key in parts[0]
    }
    if isinstance(layer, DRCaps):
        trace["kind"] = "dr"
    else:
        trace["kind"] = "em"
        trace["coupling"] = trace["assignments"]
    return trace


def _reproduction_error(trace, outputs) -> float:
    """How far the recomputed routing is from the layer's own outputs."""
    if trace["kind"] == "dr":
        return float(np.max(np.abs(trace["outputs"][-1] - outputs)))
    return float(
        max(
            np.max(np.abs(trace["poses"][-1] - outputs[..., :-1])),
            np.max(np.abs(trace["activations"][-1] - outputs[..., -1])),
        )
    )


def _branches(site, trace):
    """Per-branch numbers of the class layer that routes a `ParallelBranch`."""
    n_branches = site.source.n_branches
    types = site.inputs.shape[-2]
    if site.source.axis not in (-2, site.inputs.ndim - 2) or types % n_branches:
        return None
    n_in = trace["coupling"].shape[-2]
    owner = (np.arange(n_in) % types) // (types // n_branches)
    members = [owner == b for b in range(n_branches)]
    coupling = trace["coupling"][-1]
    contribution = trace["contribution"]
    if trace["kind"] == "dr":
        presence = trace["input_lengths"]
    else:
        presence = trace["input_activations"]
    out = {
        "length": np.stack([presence[:, m].mean(-1) for m in members], 1),
        "coupling": np.stack([coupling[:, m].mean(-2) for m in members], 1),
        "contribution": np.stack([contribution[:, m].sum(-2) for m in members], 1),
    }
    total = out["contribution"].sum(1, keepdims=True)
    out["share"] = np.divide(
        out["contribution"],
        total,
        out=np.zeros_like(out["contribution"]),
        where=np.abs(total) > 1e-12,
    )
    out["scores"] = np.stack([_alone(site.layer, trace, m) for m in members], 1)
    out["predictions"] = out["scores"].argmax(-1)
    return out


def _alone(layer, trace, member):
    """Class scores with only the `member` input capsules (the rest zeroed)."""
    votes = trace["votes"][:, member]
    if trace["kind"] == "dr":
        v = dynamic_routing(votes, routing_iterations=layer.routing_iterations)
        return np.linalg.norm(ops.convert_to_numpy(v), axis=-1)
    _, activations = em_routing(
        votes,
        trace["input_activations"][:, member],
        layer.beta_a,
        layer.beta_u,
        routing_iterations=layer.routing_iterations,
        final_lambda=layer.final_lambda,
        epsilon=layer.epsilon,
    )
    return np.asarray(ops.convert_to_numpy(activations))


def explain_capsules(
    model,
    images,
    labels=None,
    class_names=None,
    orientations: bool = True,
    batch_size: int = 16,
) -> CapsuleExplanation:
    """What the capsules of `model` decided for `images`, and why.

    Reads every routing layer's input and output with a `keras.Model` over
    the model's own tensors (also inside `ParallelBranch` branches and
    nested functional models; for `kp.models.SabourCapsNet` through its
    layers), then recomputes each layer's routing from its weights and that
    input with the functions of `kp.ops` (`kp.explain.dr_routing_trace`,
    `kp.explain.em_routing_trace`). The model and its layers are not
    changed, so it predicts and trains exactly as before, at the same speed.
    Every recomputation is checked against the layer's own outputs
    (`reproduction_error` in each routing entry).

    On top of the traces: for a parallel network (class capsules routed from
    a `ParallelBranch`) each branch's capsule length, coupling to every
    class, contribution to every class and the prediction it alone would
    give; the 8-orientation predictions (Agr, as `kp.evaluation.agreement`);
    and for a model with a reconstruction decoder, the pose perturbation of
    the winning capsule (`kp.explain.pose_perturbation`).

    Args:
        model: A trained model from images to class scores: functional or
            Sequential, with `DRCaps`, `EMConvCaps` or `EMClassCaps` layers,
            or a `kp.models.SabourCapsNet`.
        images: `(n, height, width, channels)`, `uint8` or float32 in
            `[0, 1]`.
        labels: Optional true classes `(n,)`.
        class_names: Optional class names; default `"0"`, `"1"`, ...
        orientations: Whether to predict the 8 dihedral orientations (8
            more forward passes).
        batch_size: Images per forward pass and per routing recomputation.

    Returns:
        A `kp.explain.CapsuleExplanation`.

    Example:

        >>> import keras_parcaps as kp
        >>> model = kp.models.build_parallel_dr(
        ...     input_shape=(16, 16, 3), num_classes=3, n_branches=2)
        >>> images = np.random.default_rng(0).uniform(size=(2, 16, 16, 3))
        >>> explanation = explain_capsules(model, images, orientations=False)
        >>> explanation.scores.shape, explanation.branches["share"].shape
        ((2, 3), (2, 2, 3))
        >>> [r["name"] for r in explanation.routing]
        ['branches/branch_0/mid_cap_1', 'branches/branch_1/mid_cap_1', 'class_caps']
        >>> bool(np.allclose(explanation.branches["share"].sum(1), 1.0))
        True
    """
    x = _model_input(images)
    outputs, sites = probe(model, x, batch_size)
    scores = np.asarray(outputs[0], "float32")
    if scores.ndim != 2:
        raise ValueError(
            "`model` must output class scores (n, classes). "
            f"Received: output shape {scores.shape}"
        )
    if not sites:
        raise ValueError(
            "`model` has no routing layer (`DRCaps`, `EMConvCaps` or "
            f"`EMClassCaps`) to explain. Received: model={model.name!r}"
        )
    if class_names is None:
        class_names = [str(c) for c in range(scores.shape[-1])]
    if len(class_names) != scores.shape[-1]:
        raise ValueError(
            f"`class_names` must name the model's {scores.shape[-1]} classes. "
            f"Received: {len(class_names)} names"
        )
    routing = []
    for site in sites:
        trace = _trace(site.layer, site.inputs, batch_size)
        trace["name"] = site.name
        trace["branch"] = site.branch
        trace["input_shape"] = tuple(site.inputs.shape[1:])
        trace["reproduction_error"] = _reproduction_error(trace, site.outputs)
        routing.append(trace)
    # The class capsules come from the last routing layer outside branches.
    last = max(i for i, site in enumerate(sites) if site.branch is None)
    class_site = sites[last]
    branches = None
    if class_site.source is not None:
        branches = _branches(class_site, routing[last])
    explanation = CapsuleExplanation(
        images=x,
        class_names=list(class_names),
        scores=scores,
        predictions=scores.argmax(-1),
        class_capsules=class_site.outputs,
        routing=routing,
        labels=None if labels is None else np.asarray(labels, "int64"),
        branches=branches,
    )
    if orientations:
        explanation.orientation_scores = predict_orientations(model, x, batch_size)
    if getattr(model, "decoder", None) is not None:
        explanation.pose_values = np.asarray(POSE_VALUES, "float32")
        explanation.pose_perturbation = pose_perturbation(
            model, x, values=explanation.pose_values, batch_size=batch_size
        )
    return explanation
