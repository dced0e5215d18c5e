"""Where the attribution harness's numbers go: merge-written into one JSON file, each section with its run record.

Sections are written independently (`--only lds`, `--only farming`, ...), so every section carries the command,
machine, dtype and threads that produced it; keys of other sections already in the file are kept as they are.
"""

from __future__ import annotations

import json
import os
import platform
import shlex
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from openledger_sdk.hardware import native_bfloat16

# The CPU features that decide which dtypes are fast here (bf16 matmuls need AMX or AVX512-BF16).
FLAGS_OF_INTEREST = ("avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile", "fma")


def cpu_description(cpuinfo: str | None = None) -> dict[str, Any]:
    """CPU model and the flags of interest, from /proc/cpuinfo (or the text given)."""
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text(encoding="utf-8")
        except OSError:
            cpuinfo = ""
    model, flags = "", set()
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "model name" and not model:
            model = value.strip()
        elif key.strip() == "flags" and not flags:
            flags = set(value.split())
    model = model or platform.processor() or "unknown"
    return {"cpu_model": model, "cpu_flags": [f for f in FLAGS_OF_INTEREST if f in flags]}


def run_record(dtype: str = "float32") -> dict[str, Any]:
    """What produced a section: command line, CPU, bf16 support, dtype, threads, torch, load."""
    return {
        "command": " ".join(["python bench/attribution_eval.py", *(shlex.quote(a) for a in sys.argv[1:])]),
        **cpu_description(),
        "native_bfloat16": native_bfloat16("cpu"),
        "dtype": dtype,
        "threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "load_average_1_5_15": [round(load, 2) for load in os.getloadavg()],
        "torch": torch.__version__,
        "device": "cpu",
    }


def merge_write(path: str | Path, sections: Mapping[str, Any]) -> dict[str, Any]:
    """Replace `sections` (top-level keys) in the JSON file at `path`, keeping every other key; return the whole."""
    path = Path(path)
    current: dict[str, Any] = {}
    if path.is_file():
        current = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(current, dict):
            raise ValueError(f"{path} does not hold a JSON object; not overwriting it")
    current.update(sections)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(current, indent=1) + "\n", encoding="utf-8")
    tmp.replace(path)
    return current
