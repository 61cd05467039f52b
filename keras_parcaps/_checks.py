"""Argument checks shared by every package: clear `ValueError`s, early."""

import math


def check_positive_int(name: str, value, minimum: int = 1) -> None:
    """Raise unless `value` is an integer `>= minimum`."""
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise ValueError(
            f"`{name}` must be an integer >= {minimum}. Received: {name}={value!r}"
        )


def check_choice(name: str, value, choices) -> None:
    """Raise unless `value` is one of `choices`."""
    if value not in choices:
        raise ValueError(
            f"`{name}` must be one of {tuple(choices)}. Received: {name}={value!r}"
        )


def pose_side(capsule_size: int, name: str = "capsule_size") -> int:
    """The side `P` of a `P x P` pose matrix with `capsule_size` entries."""
    check_positive_int(name, capsule_size)
    side = math.isqrt(capsule_size)
    if side * side != capsule_size:
        raise ValueError(
            f"`{name}` must be a perfect square (9, 16, 25, ...) for matrix "
            f"capsules. Received: {name}={capsule_size}"
        )
    return side
