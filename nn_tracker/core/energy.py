"""Pure energy arithmetic: counter differences with wrap-around, and integration of power."""

from __future__ import annotations

JOULES_PER_KWH = 3_600_000.0


def counter_delta(previous: float, current: float, max_range: float | None) -> float:
    """Difference of a monotonic energy counter that may wrap at ``max_range``.

    ``delta = current - previous`` if the counter did not go back, else
    ``current + (max_range - previous)``. Without a known range a counter that
    went back is reported as a negative delta, which callers treat as a reset.
    """
    if current >= previous:
        return current - previous
    if max_range is None or max_range <= 0:
        return current - previous
    return current + (max_range - previous)


def trapezoid_j(power_start_w: float, power_end_w: float, duration_s: float) -> float:
    """Energy in J of a power trace that is linear between two samples."""
    return (power_start_w + power_end_w) / 2.0 * duration_s


def is_plausible(energy_j: float, duration_s: float, max_power_w: float) -> bool:
    """Whether ``energy_j`` over ``duration_s`` stays within ``[0, max_power_w]`` on average."""
    if energy_j < 0:
        return False
    if duration_s <= 0:
        return energy_j == 0
    return energy_j / duration_s <= max_power_w


def j_to_kwh(energy_j: float) -> float:
    """Joules to kilowatt-hours."""
    return energy_j / JOULES_PER_KWH
