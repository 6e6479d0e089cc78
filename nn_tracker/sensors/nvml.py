"""NVIDIA GPUs through NVML (``nvidia-ml-py``, imported as ``pynvml``).

Energy comes from differences of ``nvmlDeviceGetTotalEnergyConsumption`` (mJ
since driver load, Volta and newer). Where that counter is not supported, power
is sampled (the instant-power field 186 where supported, else
``nvmlDeviceGetPowerUsage``) and integrated — never a silent 0.
"""

from __future__ import annotations

import contextlib
import os
import sys
from typing import Any

from nn_tracker.core.energy import trapezoid_j
from nn_tracker.core.structs import field, struct
from nn_tracker.sensors import NO_LIBRARY, NO_LIBRARY_NOTE, nvml_library_missing
from nn_tracker.sensors.base import METHOD_COUNTER, METHOD_POWER, Measurement, Sensor, SensorInfo
from nn_tracker.sensors.deadline import Deadline, ReadTimedOut

FIELD_POWER_INSTANT = 186  # NVML_FI_DEV_POWER_INSTANT
ARCH_VOLTA, ARCH_AMPERE, ARCH_HOPPER = 5, 7, 9  # NVML_DEVICE_ARCH_*
COUNTER_PERIOD_S = 0.1  # the energy counter's update period, measured on an H200 (median of 650 steps)
COUNTER_INTERVAL_S = 1.0  # how often the sampler reads the counter (one read costs 2.4-5.5 ms on an H200)
PARTIAL_SAMPLING_NOTE = (
    "On GA100 (A100) and Hopper (H100, H200, GH200) GPUs the on-board power sensor samples only part of each "
    "averaging period; short bursts can be missed (Yang, Adamek, Armour, SC'24, arXiv:2312.02741)."
)


def _pynvml() -> Any:
    import pynvml

    return pynvml


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


@struct
class NvmlDiscovery:
    """What NVML offers: sensors for the visible GPUs, and why there are none if so."""

    sensors: list[GpuSensor] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    available: bool = False
    driver_version: str = ""
    _initialised: bool = False

    def close(self) -> None:
        """Shut NVML down once (it was initialised once by :func:`discover_gpus`).

        The driver counts initialisations, so this never ends a session the host program opened itself.
        """
        if self._initialised:
            self._initialised = False
            if any(s._deadline.hung for s in self.sensors):
                return  # a call of that GPU never returned: the driver may hold its lock, shutting down could hang
            deadline = Deadline("nvml-shutdown")
            with contextlib.suppress(Exception):  # shutdown problems must not reach the host
                deadline.call(_pynvml().nvmlShutdown)
            deadline.close()


@struct(frozen=True)
class GpuKind:
    """What a GPU is, as NVML says: its architecture and CUDA compute capability (``None`` if unknown)."""

    architecture: int | None
    compute_capability: tuple[int, int] | None

    @property
    def partial_power_sampling(self) -> bool:
        """GA100 and Hopper sample power only part of the time (Yang et al., SC'24)."""
        return self.architecture == ARCH_HOPPER or (
            self.architecture == ARCH_AMPERE and self.compute_capability == (8, 0)
        )

    @property
    def averaged_power_usage(self) -> bool | None:
        """Whether ``nvmlDeviceGetPowerUsage`` is a 1-second average (Ampere and newer, except GA100)."""
        if self.architecture is None:
            return None
        return self.architecture >= ARCH_AMPERE and not (
            self.architecture == ARCH_AMPERE and self.compute_capability == (8, 0)
        )


def gpu_kind(nvml: Any, handle: Any) -> GpuKind:
    """Ask NVML what the GPU is; what it cannot say stays ``None``."""
    try:
        architecture = int(nvml.nvmlDeviceGetArchitecture(handle))
    except Exception:  # noqa: BLE001 - old drivers lack the call
        architecture = None
    try:
        major, minor = nvml.nvmlDeviceGetCudaComputeCapability(handle)
        capability: tuple[int, int] | None = (int(major), int(minor))
    except Exception:  # noqa: BLE001
        capability = None
    return GpuKind(architecture, capability)


class GpuSensor(Sensor):
    """One physical GPU (or the parent of the visible MIG slices).

    Energy: differences of the total-energy counter, read every :data:`COUNTER_INTERVAL_S` (and at
    stop); power: a cheap sample at every tick (field 186, else ``nvmlDeviceGetPowerUsage``), which
    splits each counter interval between phases and draws the timeline. Whichever of the two works
    is kept: without the counter, energy is the power samples' integral; without power, the counter
    is split by time.
    """

    max_power_w = 2_000.0
    counter_period_s = COUNTER_PERIOD_S
    energy_interval_s = COUNTER_INTERVAL_S
    phase_read_after_s = None

    def __init__(
        self,
        handle: Any,
        index: int,
        name: str,
        uuid: str,
        shared_by_mig: bool = False,
        kind: GpuKind | None = None,
    ) -> None:
        self._nvml = _pynvml()
        self._handle = handle
        self._deadline = Deadline(f"gpu{index}")  # every NVML call of this GPU: off the caller's thread, bounded
        self._last_energy_mj: int | None = None
        self._last_sample: tuple[float, float] | None = None  # (time, W) of the last power sample
        self._samples_j = 0.0  # integral of the power samples since the last energy read
        self.lost_at_s: float | None = None
        self.use_counter = True
        self.use_instant_field = True
        self.kind = kind or GpuKind(None, None)
        limit_w = self._power_limit_w()
        details: dict[str, Any] = {"index": index, "uuid": uuid, "power_limit_w": limit_w}
        if self.kind.architecture is not None:
            details["architecture"] = self.kind.architecture
        if self.kind.compute_capability is not None:
            details["compute_capability"] = "{}.{}".format(*self.kind.compute_capability)
        notes = []
        if shared_by_mig:
            details["mig_shared"] = True
            notes.append("MIG slice visible: the parent GPU is measured; its energy is shared with other slices.")
        if self.kind.partial_power_sampling:
            notes.append(PARTIAL_SAMPLING_NOTE)
        if limit_w is not None:
            self.max_power_w = max(limit_w * 2.0, 100.0)
        self.info = SensorInfo(
            device_id=f"gpu:{uuid}", component="gpu", name=name, method=METHOD_COUNTER, details=details, notes=notes
        )

    def _power_limit_w(self) -> float | None:
        try:
            limit_mw: float = self._deadline.call(lambda: self._nvml.nvmlDeviceGetPowerManagementLimit(self._handle))
            return limit_mw / 1000.0
        except (self._nvml.NVMLError, ReadTimedOut):
            return None

    def _power_w(self) -> float:
        if self.use_instant_field:
            value = self._nvml.nvmlDeviceGetFieldValues(self._handle, [FIELD_POWER_INSTANT])[0]
            if value.nvmlReturn == 0:
                result: float = value.value.uiVal / 1000.0
                return result
            self.use_instant_field = False
        usage_mw: float = self._nvml.nvmlDeviceGetPowerUsage(self._handle)
        return usage_mw / 1000.0

    def start(self, now_s: float) -> None:
        """Find which of counter and power work, and take the baselines.

        Raises:
            NVMLError: neither the energy counter nor power can be read (the GPU is not measured).

        """
        nvml = self._nvml
        self._last_sample, self._samples_j = None, 0.0
        counter_problem: Exception | None = None
        power_problem: Exception | None = None
        try:
            self._last_energy_mj = self._deadline.call(lambda: nvml.nvmlDeviceGetTotalEnergyConsumption(self._handle))
        except nvml.NVMLError as exc:
            if isinstance(exc, nvml.NVMLError_GpuIsLost):
                raise
            self.use_counter, counter_problem = False, exc
        try:
            power = self._deadline.call(self._power_w)
        except nvml.NVMLError as exc:
            if isinstance(exc, nvml.NVMLError_GpuIsLost):
                raise
            self.has_power, power_problem = False, exc
        else:
            self.has_power = True
            self._last_sample = (now_s, power)
        if not self.use_counter and not self.has_power and power_problem is not None:
            raise power_problem  # neither works: the sampler reports the GPU as not measured
        source = "instant-power field 186" if self.use_instant_field else "nvmlDeviceGetPowerUsage"
        averaged = self.has_power and not self.use_instant_field and self.kind.averaged_power_usage is not False
        self.info.details["power_source"] = source if self.has_power else None
        if self.use_counter:
            self.info.method = METHOD_COUNTER
            self.energy_interval_s = COUNTER_INTERVAL_S
            # With instant power the samples split a counter interval at a phase switch; with a 1-s
            # average they lag, so a switch makes the sampler read the counter instead.
            self.phase_read_after_s = COUNTER_PERIOD_S if averaged or not self.has_power else None
            if not self.has_power:
                self.info.notes.append(
                    f"Power cannot be read ({type(power_problem).__name__}): energy comes from the counter, "
                    "split between phases and over the timeline by time."
                )
        else:
            self.info.method = METHOD_POWER
            self.energy_interval_s = 0.0
            self.phase_read_after_s = None
            self.info.model = f"trapezoid over {source} samples"
            self.info.notes.append(
                f"This GPU's total-energy counter cannot be read ({type(counter_problem).__name__}: pre-Volta, "
                f"many vGPUs): energy is integrated from {source} samples."
            )
        if averaged:
            self.info.notes.append("nvmlDeviceGetPowerUsage is a 1-second average on this GPU (Ampere and newer).")

    def _lost(self, now_s: float, why: str = "NVML GPU_IS_LOST") -> None:
        self.lost_at_s = now_s
        self.info.notes.append(
            f"GPU lost during the run ({why}): energy until then is kept; the rest of the run is a gap for this device."
        )

    def _timed_out(self, now_s: float, exc: ReadTimedOut) -> None:
        self._lost(now_s, f"an NVML call did not return within {self._deadline.timeout_s:g} s")

    def read_power(self, now_s: float) -> float | None:
        """A power sample (W); its trapezoid since the previous sample is kept for the energy read."""
        try:
            power_w = self._deadline.call(self._power_w)
        except self._nvml.NVMLError_GpuIsLost:
            self._lost(now_s)
            return None
        except ReadTimedOut as exc:
            self._timed_out(now_s, exc)
            return None
        if self._last_sample is not None:
            last_s, last_w = self._last_sample
            self._samples_j += trapezoid_j(last_w, power_w, now_s - last_s)
        self._last_sample = (now_s, power_w)
        return power_w

    def read_energy(self, now_s: float) -> Measurement:
        """Energy since the last read: the counter's difference, or the power samples' integral.

        A counter that went back (a driver reload) is bridged with the power samples of that interval.
        """
        samples_j, self._samples_j = self._samples_j, 0.0
        if not self.use_counter:
            return Measurement(samples_j)
        try:
            energy_mj = self._deadline.call(lambda: self._nvml.nvmlDeviceGetTotalEnergyConsumption(self._handle))
        except self._nvml.NVMLError_GpuIsLost:
            self._lost(now_s)
            return Measurement(None)
        except ReadTimedOut as exc:
            self._timed_out(now_s, exc)
            return Measurement(None)
        except Exception:
            self._samples_j += samples_j  # the next read covers this interval
            raise
        previous, self._last_energy_mj = self._last_energy_mj, energy_mj
        if energy_mj < previous:
            return Measurement(samples_j if self.has_power else None, bridged=self.has_power)
        return Measurement((energy_mj - previous) / 1000.0)

    @property
    def active(self) -> bool:
        """False once the GPU was lost."""
        return self.lost_at_s is None

    def close(self) -> None:
        """End this GPU's worker thread (a hung one is left to its call)."""
        self._deadline.close()


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
        A GPU that cannot be read is skipped with a note; the others are measured.

    """
    result = NvmlDiscovery()
    if visible is None and use_env:
        visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if nvml_library_missing():
        result.notes.append(NO_LIBRARY_NOTE)
        return result
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
    except Exception as exc:  # noqa: BLE001
        result.notes.append(f"NVML failed while listing GPUs ({_describe_error(exc)}); no GPU measured.")
        return result
    gpus = []
    for index in range(count):
        try:
            handle = nvml.nvmlDeviceGetHandleByIndex(index)
            gpus.append(
                _Gpu(
                    index,
                    handle,
                    _text(nvml.nvmlDeviceGetName(handle)),
                    _text(nvml.nvmlDeviceGetUUID(handle)),
                    gpu_kind(nvml, handle),
                )
            )
        except Exception as exc:  # noqa: BLE001 - one broken GPU must not hide the others
            result.notes.append(
                f"GPU {index} (NVML index) cannot be read ({_describe_error(exc)}): not measured; the other GPUs are."
            )
    for gpu, shared in _select(nvml, gpus, _visible_tokens(visible), result.notes):
        result.sensors.append(GpuSensor(gpu.handle, gpu.index, gpu.name, gpu.uuid, shared_by_mig=shared, kind=gpu.kind))
    if not result.sensors and not result.notes:
        result.notes.append("NVML found no visible GPU (CUDA_VISIBLE_DEVICES may hide them).")
    return result


@struct(frozen=True)
class _Gpu:
    index: int  # NVML's index (PCI bus order)
    handle: Any
    name: str
    uuid: str
    kind: GpuKind


def _select(nvml: Any, gpus: list[_Gpu], tokens: list[str] | None, notes: list[str]) -> list[tuple[_Gpu, bool]]:
    """The visible GPUs, each once, with whether a MIG slice of it was named."""
    if tokens is None:
        return [(gpu, False) for gpu in gpus]
    if any(token.isdigit() for token in tokens):
        cuda_gpus = _torch_visible(gpus)
        if cuda_gpus:  # CUDA already applied the selection: its devices are the visible GPUs
            return [(gpu, False) for gpu in cuda_gpus]
    chosen: dict[int, tuple[_Gpu, bool]] = {}
    order: list[_Gpu] | None = None
    for token in tokens:
        if token.isdigit():
            if order is None:
                order = cuda_order(gpus, notes)
            gpu, shared = (order[int(token)] if int(token) < len(order) else None), False
        else:
            gpu, shared = _resolve(nvml, token, gpus)
        if gpu is None:
            notes.append(
                f"CUDA_VISIBLE_DEVICES entry {token!r} matches no GPU; entries after it are ignored, as CUDA does."
            )
            break
        previous = chosen.get(gpu.index)
        chosen[gpu.index] = (gpu, shared or (previous is not None and previous[1]))
    return list(chosen.values())


def cuda_order(gpus: list[_Gpu], notes: list[str]) -> list[_Gpu]:
    """The GPUs in the order CUDA numbers them, which is what an index in ``CUDA_VISIBLE_DEVICES`` means.

    NVML numbers GPUs by PCI bus; CUDA does too with ``CUDA_DEVICE_ORDER=PCI_BUS_ID``, but by default
    it puts the fastest first. Identical GPUs keep the PCI order; for mixed GPUs "fastest" is taken
    as the highest compute capability, with a note. (Where torch has already initialised CUDA, its
    device UUIDs are used instead: see :func:`_select`.)
    """
    if os.environ.get("CUDA_DEVICE_ORDER", "FASTEST_FIRST").strip().upper() == "PCI_BUS_ID":
        return list(gpus)
    if len({(gpu.name, gpu.kind.compute_capability) for gpu in gpus}) <= 1:
        return list(gpus)  # identical GPUs: fastest-first keeps the PCI order
    ordered = sorted(gpus, key=lambda gpu: tuple(-v for v in (gpu.kind.compute_capability or (0, 0))))
    notes.append(
        "CUDA_VISIBLE_DEVICES indices refer to CUDA's fastest-first order, which was assumed to be the highest "
        "compute capability first on these mixed GPUs; set CUDA_DEVICE_ORDER=PCI_BUS_ID or use GPU UUIDs "
        "to make the mapping certain."
    )
    return ordered


def _torch_visible(gpus: list[_Gpu]) -> list[_Gpu]:
    """The GPUs torch's CUDA devices are, if torch is imported and has initialised CUDA (else none)."""
    cuda_uuids = torch_cuda_uuids()
    if not cuda_uuids:
        return []
    by_uuid = {_bare_uuid(gpu.uuid): gpu for gpu in gpus}
    return [by_uuid[u] for u in map(_bare_uuid, cuda_uuids) if u in by_uuid]


def torch_cuda_uuids() -> list[str] | None:
    """UUIDs of torch's CUDA devices in its order, only if torch is imported and CUDA already initialised."""
    torch = sys.modules.get("torch")
    if torch is None:
        return None
    try:
        if not torch.cuda.is_initialized():
            return None
        return [str(torch.cuda.get_device_properties(i).uuid) for i in range(torch.cuda.device_count())]
    except Exception:  # noqa: BLE001 - a CPU build or an odd torch: no answer from torch
        return None


def _bare_uuid(uuid: str) -> str:
    uuid = uuid.strip().lower()
    return uuid[4:] if uuid.startswith("gpu-") else uuid


def _resolve(nvml: Any, token: str, gpus: list[_Gpu]) -> tuple[_Gpu | None, bool]:
    if token.startswith("MIG-"):
        try:
            mig = nvml.nvmlDeviceGetHandleByUUID(token)
            parent = nvml.nvmlDeviceGetDeviceHandleFromMigDeviceHandle(mig)
            parent_uuid = _text(nvml.nvmlDeviceGetUUID(parent))
        except nvml.NVMLError:
            return None, False
        return next((gpu for gpu in gpus if gpu.uuid == parent_uuid), None), True
    if token.startswith("GPU-"):
        matches = [gpu for gpu in gpus if gpu.uuid.startswith(token)]  # CUDA accepts unique prefixes
        return (matches[0], False) if len(matches) == 1 else (None, False)
    return None, False


def _describe_error(exc: BaseException) -> str:
    name = type(exc).__name__
    if name == "NVMLError_LibraryNotFound":
        return NO_LIBRARY
    if name == "NVMLError_DriverNotLoaded":
        return "the NVIDIA driver is not loaded"
    if name == "NVMLError_NoPermission":
        return "no permission to use NVML"
    return f"{name}: {exc}"
