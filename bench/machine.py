"""What machine a benchmark ran on, for the figures it prints."""

from __future__ import annotations

import os
import platform
import time
from collections.abc import MutableMapping


def cpu_model() -> str:
    """The CPU model name from /proc/cpuinfo (Linux), as platform.processor() is often empty."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "model unknown"


def load_average() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def print_summary(summary: MutableMapping[str, object], load_start: str, began: float) -> None:
    """The closing `--- summary ---` block, with the load and the run's length."""
    summary["loadavg_start"] = load_start
    summary["loadavg_end"] = load_average()
    summary["elapsed_s"] = f"{time.perf_counter() - began:.0f}"
    print("\n--- summary ---")
    for key, value in summary.items():
        print(f"{key}={value}")
