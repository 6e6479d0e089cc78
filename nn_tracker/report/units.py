"""Numbers for people: the most readable unit, three significant digits, never a silent 0."""

from __future__ import annotations


def _scaled(value: float | None, steps: list[tuple[float, str]], digits: int = 3) -> str:
    if value is None:
        return "not measured"
    if value == 0:
        return f"0 {next(unit for factor, unit in steps if factor == 1.0)}"
    for factor, unit in steps:
        if abs(value) >= factor or factor == steps[-1][0]:
            return f"{value / factor:,.{digits}g} {unit}"
    return f"{value:g}"  # pragma: no cover


def carbon(grams: float | None) -> str:
    """``553 tCO2e``, ``1.2 kgCO2e``, ``0.0042 gCO2e``."""
    return _scaled(grams, [(1e6, "tCO2e"), (1e3, "kgCO2e"), (1.0, "gCO2e"), (1e-3, "mgCO2e")])


def energy(kwh: float | None) -> str:
    """``1.29 GWh``, ``3.4 kWh``, ``12 Wh``, ``0.5 J``."""
    return _scaled(kwh, [(1e6, "GWh"), (1e3, "MWh"), (1.0, "kWh"), (1e-3, "Wh"), (1 / 3.6e6, "J")])


def power(watts: float | None) -> str:
    """``350 W``, ``1.2 kW``."""
    return _scaled(watts, [(1e3, "kW"), (1.0, "W"), (1e-3, "mW")])


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
