"""EM routing between matrix capsules (Hinton et al. 2018), usable outside layers.

Every function takes votes `(batch, ..., n_in, n_out, D)`: the leading axes
(batch, output grid positions) are independent routing problems, folded
into one axis so that every heavy step is a batched contraction. Everything
runs in float32 whatever the input dtype, and the outputs are float32.

The cost of an output capsule follows Hinton et al. with four numerically
motivated choices. From Gritzman (2019): the variance (never the standard
deviation) carries an `epsilon`, and the sum of assignments is divided by the
mean share of an output capsule, `n_in / n_out`, and multiplied by 100, so
that the inverse temperature `final_lambda = 0.01` gives sigmoid arguments of
order one whatever the number of inputs. Ours: the log-variance is measured
relative to the mean squared vote of the routing problem, so that the
activations do not depend on the scale of the poses; and every variance has
a prior worth `PRIOR_VOTES` votes of that scale, so that an output capsule
fitted to one or two votes does not collapse to a zero-variance Gaussian
(see `em_m_step`).
Each step reads the centered votes and their squares through one batched
matrix product each and writes nothing of their size (see `_moments`); those
two, each the votes' size, are the largest intermediates, made once.
"""

import math

from keras import ops

from keras_parcaps.ops import routing_backend

# Gritzman's layer norm factor: with final_lambda = 0.01, lambda * 100 ~ 1.
COST_SCALE = 100.0
# Pseudo-votes of the variance prior (a MAP estimate of each variance). With
# few inputs per routing problem (the Class-Caps of a parallel network get one
# Mid-Cap per branch below 100x100 pixels) the E-step hands each input to one
# class; without a prior that class's variance falls to `epsilon`, its
# activation saturates at 1 and the others stay at sigmoid(0) = 0.5, whatever
# the image: a parallel EM network then never learns real cells (measured,
# docs/concepts.md). With hundreds of inputs the prior changes little.
PRIOR_VOTES = 1.0


def inverse_temperatures(routing_iterations: int, final_lambda: float = 0.01):
    """The schedule `lambda_i = final_lambda * (1 - 0.95 ** (i + 1))`.

    Args:
        routing_iterations: Number of EM iterations.
        final_lambda: Limit of the schedule. Default 0.01.

    Returns:
        A list of `routing_iterations` Python floats.

    Example:

        >>> [round(x, 6) for x in inverse_temperatures(2)]
        [0.0005, 0.000975]
    """
    return [final_lambda * (1.0 - 0.95 ** (i + 1)) for i in range(routing_iterations)]


def _flatten(votes):
    """Votes as `(problems, n_out, n_in, D)`: leading axes folded, and the
    output axis before the input axis, so that every sum over the inputs is
    a batched matrix product on contiguous memory."""
    n_in, n_out, dim = votes.shape[-3:]
    votes = ops.reshape(ops.cast(votes, "float32"), (-1, n_in, n_out, dim))
    # Merging the input and pose axes makes PyTorch copy the transposed view
    # into that layout once; otherwise every tensor computed from it keeps
    # the view's strides, and every matrix product over it copies it again
    # (`EMClassCaps`: 2.1x slower steps, measured). XLA lays it out itself.
    votes = ops.reshape(ops.transpose(votes, (0, 2, 1, 3)), (-1, n_out, n_in * dim))
    return ops.reshape(votes, (-1, n_out, n_in, dim))


def _moments(votes, eps):
    """What every iteration reads of the `(n, j, i, D)` votes.

    Returns `(features, center, scale)`: the votes' deviations from their
    unweighted mean over the inputs, `center` `(n, j, D)`, and their
    squares, the pair `(deviations, squares)` of `(n, j, i, D)` tensors,
    and the mean squared vote `(n, D)`. With them an M-step is a matrix
    product with each (`sum_i r V`, `sum_i r V^2`) and an E-step the sum of
    two more (`V^2 / 2var - V mu / var`), so no iteration writes a tensor of
    the votes' size. Centering keeps the expanded variance
    `sum_i r V^2 - mu sum_i r V` free of cancellation when the votes sit far
    from zero. The two stay apart: their concatenation was the step's
    largest buffer, twice the votes' size, and under XLA writing it cost
    more than the routing's reads (docs/benchmarks.md).
    """
    # Every result is the same about any center (it only keeps the expanded
    # variance free of cancellation), so the gradient through it is zero in
    # exact arithmetic and is stopped: otherwise XLA repeats that gradient's
    # chain of about a hundred small operations for every vote entry of the
    # backward pass (JAX `EMClassCaps` step 98.6 -> 80.0 ms, docs/benchmarks.md).
    # The scale, the votes' mean square, is not the same about any center,
    # so it is computed from the votes themselves.
    center = ops.stop_gradient(ops.mean(votes, axis=2))
    deviations = votes - ops.expand_dims(center, 2)
    squares = ops.square(deviations)
    scale = ops.mean(ops.square(votes), axis=(1, 2)) + eps
    return (deviations, squares), center, scale


def _m_step(reads, center, weighted, beta_a, beta_u, scale, lam, eps, prior):
    """M-step from `(n, j, i)` weighted assignments `R a`, reading the
    `_moments` features through `reads` (see `routing_backend.read_shared`);
    the mean is relative to the votes' center."""
    n_out, n_in = weighted.shape[1], weighted.shape[2]
    read_deviations, read_squares = reads
    total = ops.sum(weighted, axis=2)
    weighted = ops.expand_dims(weighted, 2)
    first = ops.squeeze(read_deviations(weighted), 2)
    second = ops.squeeze(read_squares(weighted), 2)
    mass = ops.expand_dims(total, 2)
    # mu = sum_i r V / (sum_i r + eps), relative to the center.
    mean = (first - eps * center) / (mass + eps)
    # sum_i r (V - mu)^2 = sum_i r V^2 - mu (2 sum_i r V - mu sum_i r).
    spread = ops.relu(second - mean * (2.0 * first - mean * mass))
    variance = (spread + prior * ops.expand_dims(scale, 1)) / (mass + prior + eps) + eps
    share = total * (COST_SCALE * n_out / n_in)
    log_ratio = ops.log(variance) - ops.expand_dims(ops.log(scale), 1)
    beta_u = ops.expand_dims(ops.cast(beta_u, "float32"), -1)
    cost = ops.sum(beta_u + 0.5 * log_ratio, axis=-1) * share
    logits = lam * (ops.cast(beta_a, "float32") - cost)
    return mean, variance, logits


def _e_step(reads, mean, variance, logits):
    """E-step reading the `_moments` features through `reads`, from a
    centered mean; returns `(n, j, i)` assignments."""
    read_deviations, read_squares = reads
    inverse = 0.5 / variance
    # Coefficients times the transposed features: the products read the
    # features row by row, several times faster on PyTorch than features
    # times a column.
    distance = read_deviations(
        ops.expand_dims(-2.0 * mean * inverse, 2), transpose=True
    ) + read_squares(ops.expand_dims(inverse, 2), transpose=True)
    distance = ops.squeeze(distance, 2)
    if logits.shape[-1] == 1:
        return ops.ones_like(distance)
    log_norm = ops.sum(
        ops.square(mean) * inverse + 0.5 * ops.log(2.0 * math.pi * variance), axis=-1
    )
    log_r = ops.expand_dims(ops.log_sigmoid(logits) - log_norm, 2) - distance
    return ops.softmax(log_r, axis=1)


def _check_prior(prior_votes) -> float:
    if not isinstance(prior_votes, (int, float)) or not prior_votes >= 0:
        raise ValueError(
            "`prior_votes` must be a number >= 0. "
            f"Received: prior_votes={prior_votes!r}"
        )
    return float(prior_votes)


def em_m_step(
    votes,
    activations,
    assignments,
    beta_a,
    beta_u,
    inverse_temperature: float,
    epsilon: float = 1e-6,
    prior_votes: float = PRIOR_VOTES,
):
    """One M-step: Gaussian of every output capsule and its activation.

    With `r_ij = R_ij a_i`, the vote scale `q_h = mean_ij V_ijh^2 + epsilon`
    and `k = prior_votes`:
    `mu_j = sum_i r_ij V_ij / (sum_i r_ij + epsilon)`,
    `var_jh = (sum_i r_ij (V_ijh - mu_jh)^2 + k q_h) / (sum_i r_ij + k +
    epsilon) + epsilon`,
    `cost_j = s_j * sum_h (beta_u_j + log(var_jh / q_h) / 2)` with the share
    `s_j = COST_SCALE * sum_i r_ij * n_out / n_in`, and
    `a_j = sigmoid(lambda * (beta_a_j - cost_j))`.

    Hinton et al.'s cost uses `log(sigma_h)`; measuring the variance
    relative to `q_h` makes the activations invariant to the scale of the
    poses. Without it the activations depend on the absolute scale of the
    votes, and at a random initialisation (pose entries of about 0.01) every
    sigmoid saturates at 1 and a network cannot start to learn.

    The `k q_h` term is a prior on each variance worth `k` votes at the
    problem's scale (the maximum a posteriori estimate). Hinton et al. have
    `k = 0`: an output fitted to a single vote then has variance `epsilon`,
    and its activation saturates at 1. With few inputs per problem (a
    parallel network's Class-Caps on small images) that happens to whichever
    classes the E-step hands an input, independently of the image, and the
    gradient through the saturated sigmoid vanishes. Once the assignments
    sum to much more than `k` the prior is negligible.

    Args:
        votes: `(..., n_in, n_out, D)`.
        activations: Input activations `(..., n_in)` in `[0, 1]`.
        assignments: `R`, `(..., n_in, n_out)`.
        beta_a: Activation bias per output type, `(n_out,)`.
        beta_u: Cost bias per output type, `(n_out,)`.
        inverse_temperature: `lambda`.
        epsilon: Added to variances, vote scales and assignment sums.
        prior_votes: `k`, the weight of the variance prior in votes, at
            least 0. Default `PRIOR_VOTES` (1).

    Returns:
        `(mean, variance, logits)`: the mean and variance `(..., n_out, D)`
        and the pre-sigmoid activations `(..., n_out)` (the activations are
        `sigmoid(logits)`; the E-step uses the logits to stay in log space).

    Example:

        >>> import numpy as np
        >>> votes = np.random.default_rng(0).normal(size=(2, 6, 3, 16))
        >>> mean, variance, logits = em_m_step(
        ...     votes, np.ones((2, 6)), np.full((2, 6, 3), 1 / 3),
        ...     np.zeros(3), np.zeros(3), inverse_temperature=0.01)
        >>> tuple(mean.shape), tuple(variance.shape), tuple(logits.shape)
        ((2, 3, 16), (2, 3, 16), (2, 3))
    """
    lead, (n_in, n_out) = votes.shape[:-3], votes.shape[-3:-1]
    features, center, scale = _moments(_flatten(votes), epsilon)
    assignments = ops.reshape(ops.cast(assignments, "float32"), (-1, n_in, n_out))
    activations = ops.reshape(ops.cast(activations, "float32"), (-1, 1, n_in))
    mean, variance, logits = _m_step(
        routing_backend.plain_read(features),
        center,
        ops.transpose(assignments, (0, 2, 1)) * activations,
        beta_a,
        beta_u,
        scale,
        inverse_temperature,
        epsilon,
        _check_prior(prior_votes),
    )
    mean = mean + center
    return (
        ops.reshape(mean, (-1, *lead[1:], *mean.shape[1:])),
        ops.reshape(variance, (-1, *lead[1:], *variance.shape[1:])),
        ops.reshape(logits, (-1, *lead[1:], logits.shape[1])),
    )


def em_e_step(votes, mean, variance, logits):
    """One E-step in log space: new assignments of inputs to outputs.

    `R_ij = softmax_j(log a_j + log N(V_ij; mu_j, var_j))`, with
    `log a_j = log_sigmoid(logits_j)`, so that no probability is ever
    exponentiated before it is normalised.

    Args:
        votes: `(..., n_in, n_out, D)`.
        mean: `(..., n_out, D)`.
        variance: `(..., n_out, D)`, positive.
        logits: Pre-sigmoid output activations `(..., n_out)`.

    Returns:
        The assignments `R`, `(..., n_in, n_out)`, summing to 1 over outputs.

    Example:

        >>> import numpy as np
        >>> votes = np.random.default_rng(0).normal(size=(2, 6, 3, 16))
        >>> r = em_e_step(votes, np.zeros((2, 3, 16)), np.ones((2, 3, 16)),
        ...               np.zeros((2, 3)))
        >>> np.allclose(ops.convert_to_numpy(r).sum(-1), 1.0)
        True
    """
    lead, (n_in, n_out, dim) = votes.shape[:-3], votes.shape[-3:]
    features, center, _ = _moments(_flatten(votes), 0.0)
    mean = ops.reshape(ops.cast(mean, "float32"), (-1, n_out, dim))
    variance = ops.reshape(ops.cast(variance, "float32"), (-1, n_out, dim))
    logits = ops.reshape(ops.cast(logits, "float32"), (-1, n_out))
    assignments = _e_step(
        routing_backend.plain_read(features), mean - center, variance, logits
    )
    assignments = ops.transpose(assignments, (0, 2, 1))
    return ops.reshape(assignments, (-1, *lead[1:], n_in, n_out))


def em_routing(
    votes,
    activations,
    beta_a,
    beta_u,
    routing_iterations: int = 3,
    final_lambda: float = 0.01,
    epsilon: float = 1e-6,
    return_assignments: bool = False,
    prior_votes: float = PRIOR_VOTES,
):
    """EM routing (Hinton et al. 2018, Procedure 1).

    The assignments start uniform (`1 / n_out`); each iteration `i` runs an
    M-step with inverse temperature
    `lambda_i = final_lambda * (1 - 0.95 ** (i + 1))`, and every iteration
    but the last is followed by an E-step. No gradient is stopped.

    Args:
        votes: Votes `V_ij` of the inputs for the outputs,
            `(..., n_in, n_out, D)`.
        activations: Input activations `(..., n_in)`.
        beta_a: Activation bias per output type, `(n_out,)`.
        beta_u: Cost bias per output type, `(n_out,)`.
        routing_iterations: Number of EM iterations, at least 1. Default 3.
        final_lambda: Limit of the inverse-temperature schedule.
            Default 0.01.
        epsilon: Added to variances and assignment sums. Default 1e-6.
        return_assignments: If `True`, also return the assignments used by
            the last M-step.
        prior_votes: Weight, in votes, of the prior on each output variance
            (see `em_m_step`), at least 0; 0 is Hinton et al.'s estimate.
            Default `PRIOR_VOTES` (1).

    Returns:
        `(mean, out_activations)`: the output poses `(..., n_out, D)` and
        activations `(..., n_out)`, float32; with `return_assignments`, also
        `R`, `(..., n_in, n_out)`.

    Example:

        >>> import numpy as np
        >>> votes = np.random.default_rng(0).normal(size=(2, 9, 3, 16))
        >>> a_in = np.full((2, 9), 0.5)
        >>> pose, a = em_routing(votes.astype("float32"), a_in.astype("float32"),
        ...                      np.zeros(3), np.zeros(3))
        >>> tuple(pose.shape), tuple(a.shape)
        ((2, 3, 16), (2, 3))
    """
    if not isinstance(routing_iterations, int) or routing_iterations < 1:
        raise ValueError(
            "`routing_iterations` must be an integer >= 1. "
            f"Received: routing_iterations={routing_iterations}"
        )
    if len(votes.shape) < 4:
        raise ValueError(
            "`votes` must be (batch, ..., n_in, n_out, D). "
            f"Received: votes.shape={tuple(votes.shape)}"
        )
    prior_votes = _check_prior(prior_votes)
    lead = votes.shape[:-3]
    n_in, n_out = votes.shape[-3], votes.shape[-2]
    mean, logits, assignments = routing_backend.run(
        _em_loop,
        ops.cast(votes, "float32"),
        ops.cast(activations, "float32"),
        ops.cast(beta_a, "float32"),
        ops.cast(beta_u, "float32"),
        routing_iterations=routing_iterations,
        final_lambda=float(final_lambda),
        epsilon=float(epsilon),
        prior_votes=prior_votes,
    )
    outputs = (
        ops.reshape(mean, (-1, *lead[1:], n_out, mean.shape[-1])),
        ops.reshape(ops.sigmoid(logits), (-1, *lead[1:], n_out)),
    )
    if return_assignments:
        assignments = ops.transpose(assignments, (0, 2, 1))
        return (*outputs, ops.reshape(assignments, (-1, *lead[1:], n_in, n_out)))
    return outputs


def _em_loop(votes, activations, beta_a, beta_u, epsilon, **settings):
    """The iterations of `em_routing` on `(problems, n_in, n_out, D)` votes.

    `settings` are `_em_iterations`' other static arguments. Returns the
    mean `(n, n_out, D)`, the activation logits `(n, n_out)` and the
    assignments `(n, n_out, n_in)` of the last M-step.
    """
    features, center, scale = _moments(_flatten(votes), epsilon)
    mean, logits, assignments = routing_backend.read_shared(
        _em_iterations,
        features,
        center,
        scale,
        ops.reshape(activations, (-1, 1, features[0].shape[2])),
        beta_a,
        beta_u,
        epsilon=epsilon,
        **settings,
    )
    return mean + center, logits, assignments


def _em_iterations(
    reads,
    center,
    scale,
    activations,
    beta_a,
    beta_u,
    routing_iterations,
    final_lambda,
    epsilon,
    prior_votes,
):
    """`_em_loop`'s M- and E-steps, reading the `_moments` features through
    `reads` (`routing_backend.read_shared`'s functions). Returns the mean
    relative to `center`."""
    n_out = center.shape[1]
    # (n, j, 1) + (n, 1, i): uniform (n, j, i) assignments.
    assignments = ops.zeros_like(center[..., :1]) + ops.ones_like(activations) / n_out
    lambdas = inverse_temperatures(routing_iterations, final_lambda)
    if n_out == 1:
        # Every assignment is 1 in every iteration, so every M-step fits the
        # same Gaussian: only the last one's inverse temperature matters.
        lambdas = lambdas[-1:]
    for i, inverse_temperature in enumerate(lambdas):
        mean, variance, logits = _m_step(
            reads,
            center,
            assignments * activations,
            beta_a,
            beta_u,
            scale,
            inverse_temperature,
            epsilon,
            prior_votes,
        )
        if i < len(lambdas) - 1:
            assignments = _e_step(reads, mean, variance, logits)
    return mean, logits, assignments
