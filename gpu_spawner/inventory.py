"""Which GPUs this host has: `nvidia-smi` detection and the `spawner.gpus` settings value."""

from __future__ import annotations

import logging
import re
import subprocess
from dataclasses import asdict, dataclass
from typing import Any

log = logging.getLogger(__name__)

NVIDIA_SMI = "nvidia-smi"
QUERY_ARGS = ["--query-gpu=index,uuid,name,memory.total", "--format=csv,noheader,nounits"]
# nvidia-smi can hang for many seconds on a wedged driver; the hub must still start.
DETECT_TIMEOUT_S = 15.0

# `nvidia-smi -L` lines: "GPU 0: NVIDIA A100 (UUID: GPU-...)" and, under a GPU in MIG mode,
# "  MIG 1g.10gb     Device  0: (UUID: MIG-...)".
_GPU_LINE = re.compile(r"^GPU\s+(\d+):.*\(UUID:\s*([^)\s]+)\)")
_MIG_LINE = re.compile(r"^\s+MIG\s+(\S+)\s+Device\s+\d+:\s*\(UUID:\s*([^)\s]+)\)")
_MIG_MEMORY = re.compile(r"\.(\d+)gb", re.IGNORECASE)


@dataclass(frozen=True)
class GPUDevice:
    """One GPU (or one MIG instance of a GPU) that a user server can be given."""

    index: int
    uuid: str | None = None
    name: str = ""
    memory_mib: int = 0
    mig_profile: str | None = None  # e.g. "1g.10gb" when this device is a MIG instance

    @property
    def cuda_id(self) -> str:
        """The value for CUDA_VISIBLE_DEVICES: the uuid when known (stable across reboots and
        the only way to name a MIG instance), else the nvidia-smi index."""
        return self.uuid or str(self.index)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> GPUDevice:
        return cls(
            index=int(data["index"]),
            uuid=data.get("uuid") or None,
            name=str(data.get("name") or ""),
            memory_mib=int(data.get("memory_mib") or 0),
            mig_profile=data.get("mig_profile") or None,
        )


def _run_nvidia_smi(args: list[str]) -> str | None:
    """stdout of nvidia-smi, or None when it is missing, fails or hangs (never raises)."""
    try:
        result = subprocess.run(
            [NVIDIA_SMI, *args], capture_output=True, text=True, timeout=DETECT_TIMEOUT_S, check=False
        )
    except (OSError, subprocess.SubprocessError) as err:
        log.info("no GPUs detected: cannot run %s (%s)", NVIDIA_SMI, err)
        return None
    if result.returncode != 0:
        log.warning("no GPUs detected: %s exited with %s: %s", NVIDIA_SMI, result.returncode, result.stderr.strip())
        return None
    return result.stdout


def _parse_memory(value: str) -> int:
    try:
        return int(float(value))
    except ValueError:
        return 0  # "[N/A]" on some virtualised GPUs; memory is informational only


def parse_query_csv(text: str) -> list[GPUDevice]:
    """Parse `nvidia-smi --query-gpu=index,uuid,name,memory.total --format=csv,noheader,nounits` output."""
    devices = []
    for line in text.splitlines():
        if not line.strip():
            continue
        parts = [part.strip() for part in line.split(",")]
        if len(parts) < 4:
            log.warning("ignoring unexpected nvidia-smi line: %r", line)
            continue
        # The name is the only field that could contain a comma, so take it as the middle.
        index, uuid, memory = parts[0], parts[1], parts[-1]
        name = ", ".join(parts[2:-1])
        try:
            index_value = int(index)
        except ValueError:
            log.warning("ignoring nvidia-smi line with a non-numeric index: %r", line)
            continue
        devices.append(GPUDevice(index_value, uuid or None, name, _parse_memory(memory)))
    return devices


def parse_mig_listing(text: str) -> dict[str, list[tuple[str, str]]]:
    """Parse `nvidia-smi -L`: {parent GPU uuid: [(MIG profile, MIG uuid), ...]} for GPUs in MIG mode."""
    instances: dict[str, list[tuple[str, str]]] = {}
    parent: str | None = None
    for line in text.splitlines():
        if match := _GPU_LINE.match(line):
            parent = match.group(2)
        elif (match := _MIG_LINE.match(line)) and parent is not None:
            instances.setdefault(parent, []).append((match.group(1), match.group(2)))
    return instances


def _expand_mig(devices: list[GPUDevice], listing: dict[str, list[tuple[str, str]]]) -> list[GPUDevice]:
    """Replace each GPU in MIG mode by its MIG instances: CUDA can only use a MIG GPU through them."""
    expanded = []
    for device in devices:
        migs = listing.get(device.uuid or "")
        if not migs:
            expanded.append(device)
            continue
        for profile, mig_uuid in migs:
            memory = _MIG_MEMORY.search(profile)
            memory_mib = int(memory.group(1)) * 1024 if memory else 0
            expanded.append(GPUDevice(device.index, mig_uuid, f"{device.name} MIG {profile}", memory_mib, profile))
    return expanded


def detect_gpus() -> list[GPUDevice]:
    """The GPUs nvidia-smi reports (MIG instances instead of their parent GPU); [] when there are none.

    Never raises: a host without a driver simply has no GPUs, and the hub falls back to CPU servers.
    """
    output = _run_nvidia_smi(QUERY_ARGS)
    if output is None:
        return []
    devices = parse_query_csv(output)
    if devices:
        # MIG instances are not in --query-gpu output; a failing `-L` just leaves the whole GPUs.
        listing = _run_nvidia_smi(["-L"])
        if listing:
            devices = _expand_mig(devices, parse_mig_listing(listing))
    return devices


def parse_gpu_spec(spec: str) -> list[GPUDevice]:
    """The devices named by the `spawner.gpus` setting.

    "auto": detect with nvidia-smi; "none": no GPUs (every server on CPU); "0,1": those nvidia-smi
    indices, without detection (e.g. to keep GPU 2 for the shared inference server).
    """
    value = spec.strip().lower()
    if value == "auto":
        return detect_gpus()
    if value == "none":
        return []
    expected = 'expected "auto", "none" or a comma-separated list of GPU indices like "0,1"'
    if not value:
        raise ValueError(f"empty GPU spec: {expected}")
    indices: list[int] = []
    for item in value.split(","):
        item = item.strip()
        if not re.fullmatch(r"[0-9]+", item):  # str.isdigit() would accept "²"
            raise ValueError(f"bad GPU spec {spec!r}: {item!r} is not a GPU index; {expected}")
        index = int(item)
        if index in indices:
            raise ValueError(f"bad GPU spec {spec!r}: GPU {index} is listed twice")
        indices.append(index)
    return [GPUDevice(index=index) for index in indices]
