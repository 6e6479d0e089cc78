"""Numbers for people: the most readable unit, three significant digits, never a silent 0."""

from __future__ import annotations

import math

from nn_tracker.core.energy import JOULES_PER_KWH


def _scaled(value: float | None, steps: list[tuple[float, str]], digits: int = 3) -> str:
    if value is None:
        return "not measured"
    if not math.isfinite(value):  # never "inf" or "nan" in a table: a figure too large to compute
        return "beyond float range"
    if value == 0:
        return f"0 {next(unit for factor, unit in steps if factor == 1.0)}"
    for factor, unit in steps:
        if abs(value) >= factor or factor == steps[-1][0]:
            text = f"{value / factor:,.{digits}g}"
            if "e" in text:  # 1,000 or more of a unit with no larger step before the next (3,250 J < 1 Wh)
                text = f"{value / factor:,.0f}"
            return f"{text} {unit}"
    return f"{value:g}"  # pragma: no cover


def carbon(grams: float | None) -> str:
    """``553 tCO2e``, ``1.2 kgCO2e``, ``4.2 mgCO2e``, ``78.4 ngCO2e`` (SI prefixes, never ``7.84e-06``)."""
    return _scaled(
        grams,
        [(1e6, "tCO2e"), (1e3, "kgCO2e"), (1.0, "gCO2e"), (1e-3, "mgCO2e"), (1e-6, "µgCO2e"), (1e-9, "ngCO2e")],
    )


def energy(kwh: float | None) -> str:
    """``1.29 GWh``, ``3.4 kWh``, ``12 Wh``, ``0.5 J``, ``42 µJ``."""
    joule = 1 / JOULES_PER_KWH
    return _scaled(
        kwh,
        [
            (1e6, "GWh"),
            (1e3, "MWh"),
            (1.0, "kWh"),
            (1e-3, "Wh"),
            (joule, "J"),
            (joule / 1e3, "mJ"),
            (joule / 1e6, "µJ"),
        ],
    )


def power(watts: float | None) -> str:
    """``350 W``, ``1.2 kW``, ``3 mW``."""
    return _scaled(watts, [(1e6, "MW"), (1e3, "kW"), (1.0, "W"), (1e-3, "mW"), (1e-6, "µW")])


def nice_step(span: float, ticks: int = 5) -> float:
    """A 1-2-5 step (x 10^k) that cuts ``span`` into at most ``ticks`` intervals."""
    import math

    if span <= 0:
        return 1.0
    raw = span / ticks
    magnitude = 10 ** math.floor(math.log10(raw))
    result: float = next(m * magnitude for m in (1, 2, 5, 10) if m * magnitude >= raw)
    return result


TIME_STEPS_S = (
    0.1,
    0.2,
    0.5,
    1,
    2,
    5,
    10,
    15,
    30,
    60,
    120,
    300,
    600,
    900,
    1800,
    3600,
    7200,
    10800,
    21600,
    43200,
    86400,
    172800,
    604800,
)


def nice_time_step(span_s: float, ticks: int = 6) -> float:
    """A step a clock reader expects (1, 2, 5, 10, 15, 30 s, 1, 2, 5... min, 1, 2, 3, 6, 12 h, days)."""
    return next((step for step in TIME_STEPS_S if span_s / step <= ticks), nice_step(span_s / 86400, ticks) * 86400)


def duration(seconds: float | None) -> str:
    """``2 d 3 h``, ``1 h 5 min``, ``42.0 s``."""
    if seconds is None:
        return "unknown"
    if seconds < 60:
        return f"{seconds:.3g} s"
    minutes, _ = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    days, hours = divmod(hours, 24)
    if days:
        return f"{days} d {hours} h"
    if hours:
        return f"{hours} h {minutes} min"
    return f"{minutes} min {int(seconds) % 60} s"


def number(value: float | None) -> str:
    """Three significant digits with thousands separators."""
    if value is None:
        return "not measured"
    return f"{value:,.0f}" if abs(value) >= 1000 else f"{value:,.3g}"
