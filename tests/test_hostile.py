"""A bad day and an attacker: reads that block, FIFOs and devices where files should be, signals at bad moments.

Each test failed on the code before the fix it pins (issue 21).
"""

import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

from fakes import ConstantPower, sensor_set

from nn_tracker import Tracker

ROOT = Path(__file__).resolve().parents[1]
BLOCK_US = 600e6  # ten minutes: a driver that does not answer


def block_nvml(fake_nvml):
    for function in (fake_nvml.COUNTER, fake_nvml.POWER_USAGE, fake_nvml.FIELD_INSTANT, fake_nvml.FIELD_ENERGY):
        fake_nvml.set_latency_us(function, BLOCK_US)


def test_a_gpu_whose_reads_block_is_lost_and_stop_returns_within_seconds(fake_nvml, tmp_path):
    fake_nvml.add("NVIDIA H100 80GB HBM3", "GPU-stuck", 300)
    fake_nvml.add("NVIDIA H100 80GB HBM3", "GPU-fine", 200)
    fake_nvml.set_realtime(1)
    tracker = Tracker(output_dir=tmp_path, intensity_g_per_kwh=100, interval_s=0.05, node_sensors=False).start()
    time.sleep(1.3)
    fake_nvml.set_latency_us(fake_nvml.FIELD_INSTANT, 0)
    block_nvml(fake_nvml)
    time.sleep(0.5)
    started = time.monotonic()
    report = tracker.stop()
    assert time.monotonic() - started < 8
    assert report.status == "completed"
    gpus = [d for d in report.devices if d.component == "gpu"]
    assert all(d.lost_at_s is not None for d in gpus)  # both ask the one blocked driver
    assert any("did not return within 2 s" in n for d in gpus for n in d.notes)
    assert all(d.energy_kwh and d.energy_kwh > 0 for d in gpus)  # what was measured before is kept
    assert json.loads(Path(report.paths[0]).read_text())["status"] == "completed"


def test_sigterm_ends_the_process_even_when_a_gpu_read_blocks(fake_gpu_env, tmp_path):
    script = tmp_path / "job.py"
    script.write_text(
        textwrap.dedent(f"""
        import ctypes, sys, time
        sys.path.insert(0, {str(ROOT)!r})
        import pynvml
        import nn_tracker
        tracker = nn_tracker.Tracker(output_dir={str(tmp_path)!r}, intensity_g_per_kwh=100, run_id="stuck",
                                     interval_s=0.05, node_sensors=False)
        tracker.start()
        time.sleep(0.3)
        lib = pynvml.nvmlLib
        lib.fake_set_latency_us.argtypes = [ctypes.c_int, ctypes.c_double]
        for function in range(4):
            lib.fake_set_latency_us(function, {BLOCK_US})
        print("ready", flush=True)
        time.sleep(60)
    """)
    )
    process = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True, env=fake_gpu_env)
    assert process.stdout.readline().strip() == "ready"
    time.sleep(0.3)
    started = time.monotonic()
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=30) == -signal.SIGTERM
    assert time.monotonic() - started < 15
    assert json.loads((tmp_path / "nn_tracker-stuck.json").read_text())["status"] == "terminated"


def test_a_fifo_in_place_of_a_rapl_counter_never_blocks(intel_tree, tmp_path):
    energy = intel_tree / "intel-rapl:0" / "energy_uj"
    energy.unlink()
    os.mkfifo(energy)
    tracker = Tracker(
        output_dir=tmp_path, intensity_g_per_kwh=100, interval_s=0.05, gpus=False, rapl_root=str(intel_tree)
    )
    done = threading.Event()
    threading.Thread(target=lambda: (tracker.start(), time.sleep(0.2), tracker.stop(), done.set()), daemon=True).start()
    assert done.wait(10), "a FIFO blocked the tracker"
    assert tracker.report().status == "completed"


def test_stop_never_waits_for_a_checkpoint_that_waits_for_stop(tmp_path):
    """stop() joined the sampler while holding the lock the sampler's checkpoint needs: 5-s stalls."""

    class CheckpointsAtEveryTick(Tracker):
        def _on_tick(self, now_s):  # a checkpoint due at every tick: the sampler's thread takes the state lock
            with self._state_lock:
                time.sleep(0.001)

    class SlowRead(ConstantPower):
        def read_energy(self, now_s):  # the sampler's thread is in a tick most of the time
            time.sleep(0.008)
            return super().read_energy(now_s)

    worst = 0.0
    for i in range(8):
        tracker = CheckpointsAtEveryTick(
            output_dir=tmp_path / str(i), intensity_g_per_kwh=100, interval_s=0.01, sensors=sensor_set(SlowRead())
        ).start()
        time.sleep(0.1 + 0.0025 * i)  # stop at different moments of the sampler's cycle (about 20 ms)
        started = time.monotonic()
        tracker.stop()
        worst = max(worst, time.monotonic() - started)
    assert worst < 2.0, f"stop() took {worst:.1f} s"
