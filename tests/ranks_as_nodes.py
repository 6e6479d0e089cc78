"""For the DDP job scripts: make this process a simulated node of its own with one simulated GPU."""

import os


def become_a_node_of_its_own() -> None:
    """Rank N (``LOCAL_RANK``) is node ``node-N`` with GPU ``GPU-rN`` drawing 200 + 100 x N W (before NVML starts)."""
    rank = int(os.environ.get("LOCAL_RANK", "0"))
    os.environ.update(
        NN_TRACKER_NODE_ID=f"node-{rank}",
        FAKE_NVML_DEVICES=f"Sim GPU|GPU-r{rank}|{200 + 100 * rank}",
        FAKE_NVML_REALTIME="1",
    )
