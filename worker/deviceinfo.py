"""What a worker tells the server about its machine at registration."""
from __future__ import annotations

import os
import platform

import torch


def device_info(device: torch.device) -> dict[str, object]:
    info: dict[str, object] = {
        "torch": torch.__version__,
        "device": str(device),
        "cpu_count": os.cpu_count(),
        "threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "platform": platform.platform(terse=True),
    }
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    return info
