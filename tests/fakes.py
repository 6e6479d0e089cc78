"""Scriptable sensors for sampler and tracker tests."""

from __future__ import annotations

from nn_tracker.sensors import SensorSet
from nn_tracker.sensors.base import METHOD_POWER, Measurement, Sensor, SensorInfo


class ConstantPower(Sensor):
    """A device drawing ``power_w`` (changeable), integrated exactly; can be told to fail."""

    def __init__(
        self, device_id: str = "gpu:fake", power_w: float = 100.0, component: str = "gpu", name: str = "Fake GPU"
    ) -> None:
        self.info = SensorInfo(device_id=device_id, component=component, name=name, method=METHOD_POWER)
        self.power_w = power_w
        self.fail = False
        self._last_s = 0.0

    def start(self, now_s: float) -> None:
        self._last_s = now_s

    def read_energy(self, now_s: float) -> Measurement:
        if self.fail:
            raise RuntimeError("sensor glitch")
        energy = self.power_w * (now_s - self._last_s)
        self._last_s = now_s
        return Measurement(energy, self.power_w)


def sensor_set(*sensors: Sensor, notes: list[str] | None = None) -> SensorSet:
    return SensorSet(sensors=list(sensors), notes=notes or [])


def callback_options(tmp_path, **more):
    """Options of a trainer callback in tests: reports under ``tmp_path``, fast sampling, no real GPU."""
    return {
        "output_dir": str(tmp_path / "reports"),
        "location": "FR",
        "interval_s": 0.01,
        "checkpoint_interval_s": None,
        "gpus": False,
        **more,
    }
