"""Every Python example of the README and the docs runs, so none can rot.

Each ```python block runs on its own, after the imports of the blocks before it on the same page (a
page's later examples continue its first). What an example leaves to the reader (``model``,
``train_one_epoch()``, ``Trainer``...) is supplied: real stand-ins where nn_tracker works with the
object (a tiny Lightning module and a real Lightning ``Trainer``, a tiny BERT and a real transformers
``Trainer``, a started ``ServingTracker``, a one-process ``torch.distributed`` group for an NCCL
example), a ``MagicMock`` for the reader's own functions. Names nn_tracker exports are never supplied:
an example must import what it uses. Prometheus endpoints listen on 127.0.0.1 only, on a free port.
"""

from __future__ import annotations

import ast
import asyncio
import builtins
import functools
import inspect
import socket
from collections import defaultdict
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
from test_docs import python_blocks

import nn_tracker
import nn_tracker.serving as serving_module

OURS = {"nn_tracker", *nn_tracker.__all__, "ServingTracker", "DistributedTracker", "NNTrackerCallback"}


class ReaderCode(dict):
    """Builtins that answer a name no example defines with a stand-in, else a ``MagicMock``."""

    def __init__(self, stand_ins: dict[str, Any]) -> None:
        super().__init__(vars(builtins))
        self.stand_ins = stand_ins
        self.supplied: list[str] = []

    def __missing__(self, name: str) -> Any:
        if name in OURS:
            raise NameError(f"{name!r} is used but not imported by the example")
        value = self.stand_ins[name]() if name in self.stand_ins else mock.MagicMock(name=name)
        self.supplied.append(name)
        self[name] = value
        return value


def lightning_stand_ins(tmp_path: Path) -> dict[str, Any]:
    from lightning_models import TinyRegressor, loader, pl

    trainer = functools.partial(
        pl.Trainer,
        accelerator="cpu",
        devices=1,
        default_root_dir=tmp_path,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    return {
        "Trainer": lambda: trainer,
        "model": TinyRegressor,
        "train_loader": loader,
        "val_loader": lambda: loader(32),
        "test_loader": lambda: loader(32),
    }


def transformers_stand_ins(tmp_path: Path) -> dict[str, Any]:
    from hf_models import Sentences, arguments, tiny_bert
    from transformers import Trainer

    return {
        "Trainer": lambda: Trainer,
        "model": tiny_bert,
        "args": lambda: arguments(tmp_path / "hf"),
        "train": lambda: Sentences(32),
        "val": lambda: Sentences(16, seed=1),
        "test_set": lambda: Sentences(16, seed=2),
    }


async def asgi_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """The reader's ASGI application."""


def common_stand_ins(started: list[Any]) -> dict[str, Any]:
    def serving() -> Any:
        tracker = serving_module.ServingTracker(location="FR", write_report=False).start()
        started.append(tracker)
        return tracker

    return {
        "serving": serving,
        "samples_seen": lambda: 128,
        "prompt": lambda: "hello",
        "batch_slots": lambda: 2,
        "app": lambda: asgi_app,
    }


def stand_ins_for(code: str, tmp_path: Path, started: list[Any]) -> dict[str, Any]:
    found = common_stand_ins(started)
    if "nn_tracker.integrations.lightning" in code:
        found.update(lightning_stand_ins(tmp_path))
    if "nn_tracker.integrations.transformers" in code:
        found.update(transformers_stand_ins(tmp_path))
    return found


def imports_of(code: str) -> str:
    """The import statements of a block (a page's later blocks continue from them)."""
    tree = ast.parse(code)
    return "\n".join(ast.unparse(n) for n in tree.body if isinstance(n, (ast.Import, ast.ImportFrom)))


@pytest.fixture
def one_process_group(monkeypatch):
    """``torch.distributed`` as one process on gloo: an NCCL example's own calls, on this CPU-only machine."""
    import torch
    import torch.distributed as dist

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    for name, value in {
        "RANK": "0",
        "WORLD_SIZE": "1",
        "LOCAL_RANK": "0",
        "MASTER_ADDR": "127.0.0.1",
        "MASTER_PORT": str(port),
    }.items():
        monkeypatch.setenv(name, value)
    real_init = dist.init_process_group
    monkeypatch.setattr(dist, "init_process_group", lambda backend=None, **kw: real_init("gloo", **kw))
    monkeypatch.setattr(torch.cuda, "set_device", lambda device: None)
    yield
    if dist.is_initialized():
        dist.destroy_process_group()


def blocks_by_page() -> dict[str, list[tuple[int, str]]]:
    pages: dict[str, list[tuple[int, str]]] = defaultdict(list)
    for where, line, code in python_blocks():
        pages[where].append((line, code))
    return pages


@pytest.mark.parametrize("page", sorted(blocks_by_page()))
def test_every_python_example_runs(page, tmp_path, monkeypatch, one_process_group):
    monkeypatch.chdir(tmp_path)  # reports go to ./nn_tracker_reports here
    real_export = serving_module._prometheus_export

    def local_only(serving, registry, port, addr):
        return real_export(serving, registry, None if port is None else 0, "127.0.0.1")

    monkeypatch.setattr(serving_module, "_prometheus_export", local_only)
    earlier_imports = ""
    started: list[Any] = []
    try:
        for line, code in blocks_by_page()[page]:
            reader = ReaderCode(stand_ins_for(code, tmp_path, started))
            namespace: dict[str, Any] = {"__name__": "__docs__", "__builtins__": reader}
            exec(compile(earlier_imports, f"{page} (earlier imports)", "exec"), namespace)
            compiled = compile(code, f"{page}:{line}", "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)
            result = eval(compiled, namespace)
            if inspect.iscoroutine(result):  # an example with `async with` at its top, as in a handler
                asyncio.run(result)
            earlier_imports += imports_of(code) + "\n"
    finally:
        for tracker in started:
            tracker.stop()


def test_a_name_nn_tracker_exports_is_never_supplied():
    reader = ReaderCode({})
    with pytest.raises(NameError, match="'Tracker' is used but not imported"):
        exec("Tracker(location='FR')", {"__builtins__": reader})
    exec("train_one_epoch()", {"__builtins__": reader})
    assert reader.supplied == ["train_one_epoch"]
