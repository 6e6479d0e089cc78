"""NVIDIA GPUs through NVML (``nvidia-ml-py``, imported as ``pynvml``).

Energy comes from differences of ``nvmlDeviceGetTotalEnergyConsumption`` (mJ
since driver load, Volta and newer). Where that counter is not supported, power
is sampled (the instant-power field 186 where supported, else
``nvmlDeviceGetPowerUsage``) and integrated — never a silent 0.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass, field
from typing import Any

from nn_tracker.energy import trapezoid_j
from nn_tracker.sensors.base import METHOD_COUNTER, METHOD_POWER, Measurement, Sensor, SensorInfo

FIELD_POWER_INSTANT = 186  # NVML_FI_DEV_POWER_INSTANT
PARTIAL_SAMPLING_NOTE = (
    "On A100/H100 the on-board power sensor samples only part of each averaging period; "
    "short bursts can be missed (Yang, Adamek, Armour, SC'24, arXiv:2312.02741)."
)


def _pynvml() -> Any:
    import pynvml

    return pynvml


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


@dataclass
class NvmlDiscovery:
    """What NVML offers: sensors for the visible GPUs, and why there are none if so."""

    sensors: list[GpuSensor] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    available: bool = False
    driver_version: str = ""
    _initialised: bool = False

    def close(self) -> None:
        """Shut NVML down once (it was initialised once by :func:`discover_gpus`)."""
        if self._initialised:
            self._initialised = False
            with contextlib.suppress(Exception):  # shutdown problems must not reach the host
                _pynvml().nvmlShutdown()


class GpuSensor(Sensor):
    """One physical GPU (or the parent of the visible MIG slices)."""

    max_power_w = 2_000.0

    def __init__(self, handle: Any, index: int, name: str, uuid: str, shared_by_mig: bool = False) -> None:
        self._nvml = _pynvml()
        self._handle = handle
        self._last_energy_mj: int | None = None
        self._last_power_w: float | None = None
        self._last_s: float | None = None
        self.lost_at_s: float | None = None
        self.use_counter = True
        self.use_instant_field = True
        limit_w = self._power_limit_w()
        details: dict[str, Any] = {"index": index, "uuid": uuid, "power_limit_w": limit_w}
        notes = []
        if shared_by_mig:
            details["mig_shared"] = True
            notes.append("MIG slice visible: the parent GPU is measured; its energy is shared with other slices.")
        if "A100" in name or "H100" in name:
            notes.append(PARTIAL_SAMPLING_NOTE)
        if limit_w is not None:
            self.max_power_w = max(limit_w * 2.0, 100.0)
        self.info = SensorInfo(
            device_id=f"gpu:{uuid}", component="gpu", name=name, method=METHOD_COUNTER, details=details, notes=notes
        )

    def _power_limit_w(self) -> float | None:
        try:
            return self._nvml.nvmlDeviceGetPowerManagementLimit(self._handle) / 1000.0
        except self._nvml.NVMLError:
            return None

    def _power_w(self) -> float:
        if self.use_instant_field:
            value = self._nvml.nvmlDeviceGetFieldValues(self._handle, [FIELD_POWER_INSTANT])[0]
            if value.nvmlReturn == 0:
                return value.value.uiVal / 1000.0
            self.use_instant_field = False
        return self._nvml.nvmlDeviceGetPowerUsage(self._handle) / 1000.0

    def start(self, now_s: float) -> None:
        """Pick the method (counter or integrated power) and take the baseline."""
        nvml = self._nvml
        try:
            self._last_energy_mj = nvml.nvmlDeviceGetTotalEnergyConsumption(self._handle)
        except nvml.NVMLError_NotSupported:
            self.use_counter = False
            self.info.method = METHOD_POWER
        power = self._power_w()
        source = "instant-power field 186" if self.use_instant_field else "nvmlDeviceGetPowerUsage"
        self.info.details["power_source"] = source
        if not self.use_counter:
            self.info.model = f"trapezoid over {source} samples"
            self.info.notes.append(
                f"This GPU has no total-energy counter (pre-Volta or vGPU): energy is integrated from {source} samples."
            )
            if source == "nvmlDeviceGetPowerUsage":
                self.info.notes.append("nvmlDeviceGetPowerUsage is a 1-second average on Ampere and newer.")
        self._last_power_w = power
        self._last_s = now_s

    def read(self, now_s: float) -> Measurement:
        """Energy since the last read (counter difference or trapezoid) and the current power."""
        nvml = self._nvml
        try:
            power_w = self._power_w()
            if self.use_counter:
                energy_mj = nvml.nvmlDeviceGetTotalEnergyConsumption(self._handle)
                energy_j: float | None = (energy_mj - self._last_energy_mj) / 1000.0
                self._last_energy_mj = energy_mj
            else:
                energy_j = trapezoid_j(self._last_power_w, power_w, now_s - self._last_s)
        except nvml.NVMLError_GpuIsLost:
            self.lost_at_s = now_s
            self.info.notes.append(
                "GPU lost during the run (NVML GPU_IS_LOST): energy until then is kept; "
                "the rest of the run is a gap for this device."
            )
            return Measurement(None, None)
        self._last_power_w = power_w
        self._last_s = now_s
        return Measurement(energy_j, power_w)

    @property
    def active(self) -> bool:
        """False once the GPU was lost."""
        return self.lost_at_s is None


def _visible_tokens(visible: str | None) -> list[str] | None:
    """``CUDA_VISIBLE_DEVICES`` as a list of entries, or ``None`` when unset (all GPUs)."""
    if visible is None:
        return None
    return [token.strip() for token in visible.split(",") if token.strip()]


def discover_gpus(visible: str | None = None, *, use_env: bool = True) -> NvmlDiscovery:
    """Initialise NVML and build one sensor per visible physical GPU.

    Args:
        visible: ``CUDA_VISIBLE_DEVICES``-style selection (indices, ``GPU-<uuid>``,
            ``MIG-<uuid>``); defaults to the environment variable.
        use_env: Read ``CUDA_VISIBLE_DEVICES`` when ``visible`` is ``None``.

    Returns:
        The sensors and notes; no library or no GPU gives no sensors and a note, never an error.

    """
    result = NvmlDiscovery()
    if visible is None and use_env:
        visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    try:
        nvml = _pynvml()
        nvml.nvmlInit()
    except Exception as exc:  # noqa: BLE001 - any failure means "no NVML", reported as a note
        result.notes.append(f"No NVIDIA GPU measured: NVML could not be initialised ({_describe_error(exc)}).")
        return result
    result._initialised = True
    result.available = True
    try:
        result.driver_version = _text(nvml.nvmlSystemGetDriverVersion())
        count = nvml.nvmlDeviceGetCount()
        handles = _select(nvml, count, _visible_tokens(visible), result.notes)
        for index, (handle, shared) in handles.items():
            name = _text(nvml.nvmlDeviceGetName(handle))
            uuid = _text(nvml.nvmlDeviceGetUUID(handle))
            result.sensors.append(GpuSensor(handle, index, name, uuid, shared_by_mig=shared))
    except Exception as exc:  # noqa: BLE001
        result.notes.append(f"NVML failed while listing GPUs ({_describe_error(exc)}); no GPU measured.")
        result.sensors.clear()
    if not result.sensors and not result.notes:
        result.notes.append("NVML found no visible GPU (CUDA_VISIBLE_DEVICES may hide them).")
    return result


def _select(nvml: Any, count: int, tokens: list[str] | None, notes: list[str]) -> dict[int, tuple[Any, bool]]:
    """Map physical index -> (handle, shared by MIG) for the visible entries, each GPU once."""
    all_handles = [nvml.nvmlDeviceGetHandleByIndex(i) for i in range(count)]
    if tokens is None:
        return {i: (h, False) for i, h in enumerate(all_handles)}
    uuids = [_text(nvml.nvmlDeviceGetUUID(h)) for h in all_handles]
    chosen: dict[int, tuple[Any, bool]] = {}
    for token in tokens:
        index, shared = _resolve(nvml, token, uuids)
        if index is None:
            notes.append(
                f"CUDA_VISIBLE_DEVICES entry {token!r} matches no GPU; entries after it are ignored, as CUDA does."
            )
            break
        previous = chosen.get(index)
        chosen[index] = (all_handles[index], shared or (previous is not None and previous[1]))
    return chosen


def _resolve(nvml: Any, token: str, uuids: list[str]) -> tuple[int | None, bool]:
    if token.isdigit():
        index = int(token)
        return (index, False) if index < len(uuids) else (None, False)
    if token.startswith("MIG-"):
        try:
            mig = nvml.nvmlDeviceGetHandleByUUID(token)
            parent = nvml.nvmlDeviceGetDeviceHandleFromMigDeviceHandle(mig)
            parent_uuid = _text(nvml.nvmlDeviceGetUUID(parent))
        except nvml.NVMLError:
            return None, False
        return (uuids.index(parent_uuid) if parent_uuid in uuids else None), True
    if token.startswith("GPU-"):
        matches = [i for i, uuid in enumerate(uuids) if uuid.startswith(token)]  # CUDA accepts unique prefixes
        return (matches[0], False) if len(matches) == 1 else (None, False)
    return None, False


def _describe_error(exc: BaseException) -> str:
    name = type(exc).__name__
    if name == "NVMLError_LibraryNotFound":
        return "libnvidia-ml.so.1 not found: no NVIDIA driver on this machine"
    if name == "NVMLError_DriverNotLoaded":
        return "the NVIDIA driver is not loaded"
    if name == "NVMLError_NoPermission":
        return "no permission to use NVML"
    return f"{name}: {exc}"
