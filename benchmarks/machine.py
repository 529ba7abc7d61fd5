"""Machine description recorded beside every benchmark result."""

from __future__ import annotations

import os
import platform
import sys
from pathlib import Path

from l2h.io import package_versions


def machine_info(packages: tuple[str, ...] = ("l2h", "numpy", "scipy")) -> dict:
    """CPU model, cores, RAM, platform, load average now (the machine may be shared) and package versions."""
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    mem_kib = next(
        int(line.split()[1]) for line in Path("/proc/meminfo").read_text().splitlines() if line.startswith("MemTotal")
    )
    info = {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "ram_gib": round(mem_kib / 2**20, 1),
        "load_average_1m": os.getloadavg()[0],
        "platform": platform.platform(),
        "packages": package_versions(packages),
    }
    torch = sys.modules.get("torch")
    if torch is not None:
        info["torch_threads"] = torch.get_num_threads()
        if torch.cuda.is_available():
            info["gpu"] = torch.cuda.get_device_name(0)
    return info
