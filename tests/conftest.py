"""Shared fixtures: a simulated NVML driver, fake powercap trees, a manual clock."""

from __future__ import annotations

import ctypes
import os
import shutil
import subprocess
from pathlib import Path

import pytest

HERE = Path(__file__).parent


@pytest.fixture(scope="session")
def fake_nvml_build(tmp_path_factory) -> Path:
    """Compile tests/fake_nvml.c once per session with the system C compiler."""
    compiler = shutil.which("cc") or shutil.which("gcc")
    assert compiler, "a C compiler is required to build the simulated NVML library"
    out = tmp_path_factory.mktemp("nvml") / "libnvidia-ml.so.1"
    subprocess.run(
        [
            compiler,
            "-shared",
            "-fPIC",
            "-O1",
            "-Wl,-soname,libnvidia-ml.so.1",
            "-o",
            str(out),
            str(HERE / "fake_nvml.c"),
        ],
        check=True,
    )
    return out


# NVML architecture and CUDA compute capability of the GPU models the tests plug in (by a word of the name).
ARCHITECTURES = {
    "K80": (2, 3, 7),
    "P100": (4, 6, 0),
    "V100": (5, 7, 0),
    "T4": (6, 7, 5),
    "A100": (7, 8, 0),
    "A10G": (7, 8, 6),
    "L4": (8, 8, 9),
    "H100": (9, 9, 0),
    "H200": (9, 9, 0),
    "B200": (10, 10, 0),
}
TRACE = HERE / "data" / "h200-nvml-poll.csv"


class FakeNvml:
    """Python handle on the simulated driver's control functions."""

    COUNTER, POWER_USAGE, FIELD_INSTANT, FIELD_ENERGY, OTHER = range(5)  # functions with a latency

    def __init__(self, lib: ctypes.CDLL, path: Path) -> None:
        self.lib = lib
        self.path = path
        lib.fake_advance.argtypes = [ctypes.c_double]
        lib.fake_add_device.argtypes = [
            ctypes.c_char_p,
            ctypes.c_char_p,
            ctypes.c_uint,
            ctypes.c_uint,
            ctypes.c_ulonglong,
        ]
        lib.fake_set_energy.argtypes = [ctypes.c_int, ctypes.c_ulonglong]
        lib.fake_set_step.argtypes = [ctypes.c_int, ctypes.c_double, ctypes.c_double]
        lib.fake_set_latency_us.argtypes = [ctypes.c_int, ctypes.c_double]
        lib.fake_load_trace.argtypes = [ctypes.c_int, ctypes.c_char_p]
        lib.fake_load_trace.restype = ctypes.c_double
        lib.fake_now.restype = ctypes.c_double
        lib.fake_true_energy.restype = ctypes.c_double
        lib.fake_calls.restype = ctypes.c_longlong
        lib.fake_counter_calls.restype = ctypes.c_longlong
        self.devices = 0

    def add(
        self,
        name: str,
        uuid: str,
        power_w: float,
        limit_w: float = 400,
        energy_mj: int = 10_000_000,
        arch: tuple[int, int, int] | None = None,
    ) -> int:
        """Plug in a GPU; returns its index. ``arch``: (NVML architecture, CUDA major, minor)."""
        self.lib.fake_add_device(name.encode(), uuid.encode(), int(power_w * 1000), int(limit_w * 1000), energy_mj)
        index = self.devices
        self.devices += 1
        known = next((v for k, v in ARCHITECTURES.items() if k in name.split() or f"{k}-" in name), None)
        if arch or known:
            self.lib.fake_set_arch(index, *(arch or known))
        return index

    def set_power(self, index: int, power_w: float) -> None:
        self.lib.fake_set_power(index, int(power_w * 1000))

    def advance(self, seconds: float) -> None:
        self.lib.fake_advance(seconds)

    def set_latency_us(self, function: int, us: float) -> None:
        self.lib.fake_set_latency_us(function, us)

    def no_latency(self) -> None:
        """Make every call instant (for tests that make thousands of calls)."""
        for function in range(5):
            self.set_latency_us(function, 0)

    def load_trace(self, index: int, path: Path = TRACE) -> float:
        """Replay a recorded trace on device ``index`` from now; returns its duration in seconds."""
        duration = self.lib.fake_load_trace(index, str(path).encode())
        assert duration > 0, f"cannot read {path}"
        return duration

    def __getattr__(self, name: str):
        return getattr(self.lib, f"fake_{name}")


@pytest.fixture
def fake_nvml(fake_nvml_build, tmp_path, monkeypatch) -> FakeNvml:
    """A fresh simulated driver, loaded by the real pynvml bindings."""
    import pynvml

    copy = tmp_path / "libnvidia-ml.so.1"
    shutil.copy(fake_nvml_build, copy)  # a fresh copy is a fresh driver state
    lib = ctypes.CDLL(str(copy))
    monkeypatch.setattr(pynvml, "nvmlLib", lib)
    monkeypatch.setattr(pynvml, "_nvmlGetFunctionPointer_cache", {})
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    return FakeNvml(lib, copy)


@pytest.fixture
def no_nvml(monkeypatch):
    """Make sure no real or simulated NVML library is found."""
    import pynvml

    def refuse(*args, **kwargs):
        raise OSError("libnvidia-ml.so.1: cannot open shared object file")

    monkeypatch.setattr(pynvml, "nvmlLib", None)
    monkeypatch.setattr(pynvml, "_nvmlGetFunctionPointer_cache", {})
    monkeypatch.setattr(pynvml, "CDLL", refuse)


def make_zone(path: Path, name: str, energy_uj: int, max_uj: int = 262_143_328_850) -> Path:
    path.mkdir(parents=True)
    (path / "name").write_text(name + "\n")
    (path / "energy_uj").write_text(f"{energy_uj}\n")
    (path / "max_energy_range_uj").write_text(f"{max_uj}\n")
    return path


@pytest.fixture
def intel_tree(tmp_path) -> Path:
    """Two packages with core, uncore and dram subzones, psys, and an mmio duplicate."""
    root = tmp_path / "powercap"
    make_zone(root / "intel-rapl:0", "package-0", 1_000_000)
    make_zone(root / "intel-rapl:0" / "intel-rapl:0:0", "core", 500_000)
    make_zone(root / "intel-rapl:0" / "intel-rapl:0:1", "uncore", 100_000)
    make_zone(root / "intel-rapl:0" / "intel-rapl:0:2", "dram", 2_000_000)
    make_zone(root / "intel-rapl:1", "package-1", 3_000_000)
    make_zone(root / "intel-rapl:1" / "intel-rapl:1:0", "dram", 4_000_000)
    make_zone(root / "intel-rapl:2", "psys", 9_000_000)
    make_zone(root / "intel-rapl-mmio:0", "package-0", 7_000_000)
    return root


@pytest.fixture
def amd_tree(tmp_path) -> Path:
    """An AMD Zen package without a DRAM zone."""
    root = tmp_path / "powercap"
    make_zone(root / "intel-rapl:0", "package-0", 0, max_uj=65_532_610_987)
    make_zone(root / "intel-rapl:0" / "intel-rapl:0:0", "core", 0, max_uj=65_532_610_987)
    return root


def set_energy(zone: Path, energy_uj: int) -> None:
    (zone / "energy_uj").write_text(f"{energy_uj}\n")


@pytest.fixture
def fake_gpu_env(fake_nvml_build):
    env = dict(
        os.environ,
        LD_LIBRARY_PATH=str(fake_nvml_build.parent),
        FAKE_NVML_DEVICES="NVIDIA A100-SXM4-80GB|GPU-aaaa|300;NVIDIA A100-SXM4-80GB|GPU-bbbb|200",
        FAKE_NVML_REALTIME="1",
        PYTHONUNBUFFERED="1",
    )
    for name in ("CUDA_VISIBLE_DEVICES", "NN_TRACKER_NODE_ID"):
        env.pop(name, None)
    return env
