"""Make every collective nn_tracker issues on the job's own (default) group fail, as it would on NCCL.

NCCL serves only CUDA tensors (and objects only on the right CUDA device), so nn_tracker must use a
group of its own. Imported by the distributed job scripts: ``nccl_like.install()``.
"""

import functools
import sys

import torch.distributed as dist


def _nccl_like(function):
    """Fail a collective that nn_tracker issues on the job's (default) group."""

    @functools.wraps(function)
    def wrapper(*args, **kwargs):
        caller = sys._getframe(1).f_globals.get("__name__", "")
        if caller.startswith("nn_tracker") and kwargs.get("group") is None:
            raise RuntimeError("No backend type associated with device type cpu")
        return function(*args, **kwargs)

    return wrapper


def install() -> None:
    for name in ("all_reduce", "all_gather", "all_gather_object", "broadcast", "broadcast_object_list", "barrier"):
        setattr(dist, name, _nccl_like(getattr(dist, name)))
