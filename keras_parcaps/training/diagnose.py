"""`diagnose`: is a capsule network healthy, or has it collapsed?"""

import math

import keras
import numpy as np

from keras_parcaps.callbacks.precise_batch_norm import (
    batch_norm_layers,
    recalibrate_batch_norm,
)
from keras_parcaps.data.sampling import OnePerClassBatches, to_model_input

# Thresholds of the warnings, with the failures they describe.
# Inference accuracy this far under the accuracy with exact batch statistics:
# the moving averages of BatchNormalization do not match the weights.
STATISTICS_ACC_GAP = 0.15
# Capsule lengths (DR) or activations (EM) at the ends of [0, 1]: dead or
# saturated capsules pass almost no gradient.
DEAD_LENGTH = 0.01
SATURATED_LENGTH = 0.99
# A layer whose gradient is this small relative to its weights does not learn.
VANISHING_GRADIENT = 1e-7


def _balanced_sample(data, num_images, seed):
    """Up to `num_images` indices, taking the classes in turn."""
    rng = np.random.default_rng(seed)
    members = [
        rng.permutation(np.flatnonzero(data.labels == c))
        for c in range(data.num_classes)
    ]
    picks = []
    for k in range(max((len(m) for m in members), default=0)):
        picks += [int(m[k]) for m in members if k < len(m)]
    return np.asarray(picks[:num_images], dtype=np.int64)


def _accuracy(model, x, labels, batch_size, num_classes=None):
    scores = np.asarray(model.predict(x, batch_size=batch_size, verbose=0))
    if num_classes is not None and scores.shape[-1] != num_classes:
        raise ValueError(
            f"The model outputs {scores.shape[-1]} class scores but `data` has "
            f"{num_classes} classes."
        )
    predicted = scores.argmax(-1)
    return float(np.mean(predicted == labels)), predicted


def _snapshot(variables):
    return [np.array(keras.ops.convert_to_numpy(v)) for v in variables]


def _restore(variables, values):
    for variable, value in zip(variables, values, strict=True):
        variable.assign(value)


def _statistics(model, batches, x, labels, batch_size):
    """Moving vs exact BatchNormalization statistics, restored afterwards."""
    layers = batch_norm_layers(model)
    if not layers:
        return None
    variables = [v for layer in layers for v in layer.non_trainable_variables]
    saved = _snapshot(variables)
    moving = [(saved[2 * i], saved[2 * i + 1]) for i in range(len(layers))]
    try:
        recalibrate_batch_norm(model, batches, num_batches=len(batches))
        exact = [
            (
                keras.ops.convert_to_numpy(layer.moving_mean),
                keras.ops.convert_to_numpy(layer.moving_variance),
            )
            for layer in layers
        ]
        exact_acc, _ = _accuracy(model, x, labels, batch_size)
    finally:
        _restore(variables, saved)
    rows = []
    for layer, (mean, var), (e_mean, e_var) in zip(layers, moving, exact, strict=True):
        e_var = np.maximum(e_var, 1e-12)
        rows.append(
            {
                "layer": layer.path,
                # Median over channels of |log(moving / exact variance)|, and of
                # the mean's offset in exact standard deviations.
                "variance_gap": float(
                    np.median(np.abs(np.log(np.maximum(var, 1e-12) / e_var)))
                ),
                "mean_gap": float(np.median(np.abs(mean - e_mean) / np.sqrt(e_var))),
            }
        )
    rows.sort(key=lambda row: -row["variance_gap"] - row["mean_gap"])
    return {"accuracy_exact_statistics": exact_acc, "layers": rows}


def _training_mode_accuracy(model, batches):
    """Accuracy with the batch statistics of balanced batches (no update kept)."""
    variables = model.non_trainable_variables
    saved = _snapshot(variables)
    correct = total = 0
    try:
        for i in range(len(batches)):
            x, y = batches[i]
            scores = keras.ops.convert_to_numpy(model(x, training=True))
            correct += int(np.sum(scores.argmax(-1) == y.argmax(-1)))
            total += len(x)
    finally:
        _restore(variables, saved)
    return correct / max(total, 1)


def _gradient_norms(model, batches):
    """Per-layer gradient norms of the model's loss, from one SGD step of a clone.

    With plain SGD at learning rate 1, one step moves every weight by minus
    its gradient, on every backend and without backend code.
    """
    try:
        clone = keras.models.clone_model(model)
        clone.set_weights(model.get_weights())
        clone.compile(optimizer=keras.optimizers.SGD(1.0), loss=model.loss)
    except Exception as error:  # subclassed models may not clone
        return {"error": f"{type(error).__name__}: {error}"}
    before = _snapshot(clone.trainable_variables)
    x, y = batches[0]
    clone.train_on_batch(x, y)
    after = _snapshot(clone.trainable_variables)
    norms = {}
    for variable, old, new in zip(
        clone.trainable_variables, before, after, strict=True
    ):
        layer = variable.path.rsplit("/", 1)[0]
        norms.setdefault(layer, [0.0, 0.0])
        norms[layer][0] += float(np.sum((old - new) ** 2))
        norms[layer][1] += float(np.sum(old**2))
    return {
        layer: {"gradient": math.sqrt(g), "relative": math.sqrt(g / max(w, 1e-30))}
        for layer, (g, w) in norms.items()
    }


def _capsules(model, x, batch_size):
    """Lengths (or activations) and coupling entropy of every routing layer."""
    from keras_parcaps.explain import explain_capsules

    try:
        explanation = explain_capsules(
            model, x, orientations=False, batch_size=batch_size
        )
    except ValueError:  # no routing layer: not a capsule network
        return None
    rows = []
    for trace in explanation.routing:
        if trace["kind"] == "dr":
            outputs = np.linalg.norm(trace["outputs"][-1], axis=-1)
            inputs = trace["input_lengths"]
            coupling = trace["coupling"][-1]
        else:
            outputs = trace["activations"][-1]
            inputs = None
            coupling = trace["assignments"][-1]
        n_out = coupling.shape[-1]
        entropy = -np.sum(coupling * np.log(np.maximum(coupling, 1e-12)), -1)
        rows.append(
            {
                "layer": trace["name"],
                "kind": trace["kind"],
                "input_length_mean": None if inputs is None else float(np.mean(inputs)),
                "output_length_mean": float(np.mean(outputs)),
                "output_length_min": float(np.min(outputs)),
                "output_length_max": float(np.max(outputs)),
                "dead": float(np.mean(outputs < DEAD_LENGTH)),
                "saturated": float(np.mean(outputs > SATURATED_LENGTH)),
                # 1: uniform coupling (routing decided nothing); 0: one-hot.
                "coupling_entropy": (
                    float(np.mean(entropy) / math.log(n_out)) if n_out > 1 else None
                ),
            }
        )
    return rows


def _warnings(report, class_names):
    found = []
    inference = report["accuracy_inference"]
    predicted = report["classes_predicted"]
    if len(predicted) == 1:
        found.append(
            f"collapsed: every image is called {predicted[0]} in inference mode"
        )
    elif len(predicted) < max(2, math.ceil(len(class_names) / 2)):
        found.append(
            f"only {len(predicted)} of {len(class_names)} classes are ever "
            f"predicted ({', '.join(predicted)})"
        )
    statistics = report["batch_norm"]
    if statistics is not None:
        exact = statistics["accuracy_exact_statistics"]
        if exact - inference > STATISTICS_ACC_GAP:
            worst = statistics["layers"][0]
            found.append(
                f"BatchNormalization moving statistics do not match the weights: "
                f"inference accuracy {inference:.2f} against {exact:.2f} with exact "
                f"statistics (worst layer {worst['layer']}: variance off by a factor "
                f"{math.exp(worst['variance_gap']):.2f}, mean by "
                f"{worst['mean_gap']:.2f} std)"
            )
    for row in report["capsules"] or []:
        if row["dead"] > 0.99:
            found.append(f"{row['layer']}: capsules all at length ~0 (dead)")
        elif row["saturated"] > 0.99:
            found.append(f"{row['layer']}: capsules all at length ~1 (saturated)")
    gradients = report["gradients"]
    if "error" not in gradients:
        for layer, norm in gradients.items():
            if not math.isfinite(norm["gradient"]):
                found.append(f"{layer}: non-finite gradient")
            elif norm["relative"] < VANISHING_GRADIENT:
                found.append(
                    f"{layer}: vanishing gradient "
                    f"({norm['relative']:.1e} of its weights)"
                )
    return found


def diagnose(
    model,
    data,
    num_images: int = 64,
    num_batches: int = 8,
    batch_size: int = 32,
    seed: int = 0,
) -> dict:
    """Health report of a (capsule) network on images it can be checked on.

    Everything a collapsed or stuck network shows, measured without changing
    the model (BatchNormalization statistics and weights are restored):
    - accuracy in inference mode (`predict`, moving statistics), with the
      exact batch statistics of the data (`recalibrate_batch_norm`), and in
      training mode on balanced batches; which classes are predicted;
    - per BatchNormalization layer, the gap between its moving statistics
      and the exact ones;
    - per routing layer, the capsule lengths (EM: activations), the share
      of dead (~0) and saturated (~1) capsules and the normalised entropy
      of the last coupling (1: uniform, 0: one-hot);
    - per layer, the gradient norm of the model's loss on one balanced batch.

    `warnings` lists what is wrong in words: a collapse to one class,
    classes never predicted, moving statistics that cost accuracy, dead or
    saturated capsules, vanishing or non-finite gradients.

    Args:
        model: A compiled model from `float32` images in `[0, 1]` to class
            scores.
        data: A `kp.data.ImageSet` with the model's classes (held-out images
            give the most honest accuracies).
        num_images: Images for the accuracies and the capsule statistics,
            taken from every class in turn.
        num_batches: One-image-per-class batches for the exact statistics
            and the training-mode accuracy.
        batch_size: Prediction batch size.
        seed: Seed of the image choice.

    Returns:
        A JSON-ready dict; `format_diagnosis` turns it into text.

    Example:

        >>> import keras_parcaps as kp
        >>> from keras_parcaps.data import synthetic_cells
        >>> data = synthetic_cells(counts=4, classes=["LYT", "EOS"],
        ...                        image_size=16)
        >>> model = kp.models.build_parallel_dr(
        ...     input_shape=(16, 16, 3), num_classes=2, n_branches=2)
        >>> report = diagnose(model, data, num_images=8, num_batches=2)
        >>> sorted(report)[:4]
        ['accuracy_inference', 'accuracy_training_mode', 'batch_norm', 'capsules']
        >>> [row["layer"] for row in report["capsules"]][-1]
        'class_caps'
    """
    picks = _balanced_sample(data, num_images, seed)
    x = to_model_input(data.images(picks))
    labels = data.labels[picks]
    batches = OnePerClassBatches(
        data, steps_per_epoch=num_batches, augment=False, seed=seed
    )
    inference, predicted = _accuracy(model, x, labels, batch_size, data.num_classes)
    report = {
        "images": int(len(picks)),
        "accuracy_inference": inference,
        "classes_predicted": [data.class_names[c] for c in np.unique(predicted)],
        "accuracy_training_mode": _training_mode_accuracy(model, batches),
        "batch_norm": _statistics(model, batches, x, labels, batch_size),
        "capsules": _capsules(model, x, batch_size),
        "gradients": _gradient_norms(model, batches),
    }
    report["warnings"] = _warnings(report, data.class_names)
    return report


def format_diagnosis(report: dict) -> str:
    """The report of `diagnose` as readable text, warnings first.

    Args:
        report: What `diagnose` returned.

    Returns:
        Lines of text.

    Example:

        >>> report = {
        ...     "images": 8, "accuracy_inference": 0.25,
        ...     "accuracy_training_mode": 0.5, "classes_predicted": ["LYT"],
        ...     "batch_norm": None, "capsules": None,
        ...     "gradients": {"dense": {"gradient": 0.5, "relative": 0.01}},
        ...     "warnings": ["collapsed: every image is called LYT in inference mode"],
        ... }
        >>> print(format_diagnosis(report))
        WARNING: collapsed: every image is called LYT in inference mode
        Accuracy on 8 images: inference 0.250, training mode 0.500
        Classes predicted: LYT
        Gradient norms (absolute, relative to the weights):
          dense: 5.00e-01, 1.00e-02
    """
    lines = [f"WARNING: {w}" for w in report["warnings"]] or ["No problem found."]
    statistics = report["batch_norm"]
    lines.append(
        f"Accuracy on {report['images']} images: inference "
        f"{report['accuracy_inference']:.3f}, training mode "
        f"{report['accuracy_training_mode']:.3f}"
        + (
            ""
            if statistics is None
            else f", exact BatchNormalization statistics "
            f"{statistics['accuracy_exact_statistics']:.3f}"
        )
    )
    lines.append(f"Classes predicted: {', '.join(report['classes_predicted'])}")
    if statistics is not None:
        lines.append("BatchNormalization, largest gaps (moving vs exact):")
        for row in statistics["layers"][:5]:
            lines.append(
                f"  {row['layer']}: variance x"
                f"{math.exp(row['variance_gap']):.3f}, mean "
                f"{row['mean_gap']:.3f} std"
            )
    if report["capsules"]:
        lines.append(
            "Capsules (length: mean [min, max]; dead; saturated; coupling entropy):"
        )
        for row in report["capsules"]:
            entropy = row["coupling_entropy"]
            lines.append(
                f"  {row['layer']}: {row['output_length_mean']:.3f} "
                f"[{row['output_length_min']:.3f}, {row['output_length_max']:.3f}]; "
                f"{row['dead']:.0%}; {row['saturated']:.0%}; "
                + ("-" if entropy is None else f"{entropy:.2f}")
            )
    gradients = report["gradients"]
    if "error" in gradients:
        lines.append(f"Gradients: not measured ({gradients['error']})")
    else:
        lines.append("Gradient norms (absolute, relative to the weights):")
        for layer, norm in gradients.items():
            lines.append(f"  {layer}: {norm['gradient']:.2e}, {norm['relative']:.2e}")
    return "\n".join(lines)
