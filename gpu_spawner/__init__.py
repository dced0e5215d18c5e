"""GPU slots for JupyterHub user servers: inventory, allocator, home seeding, spawners, KubeSpawner profiles."""

from .allocator import Slot, SlotAllocator, clear_shared_allocators, shared_allocator
from .home import ensure_home, seed_home
from .inventory import GPUDevice, detect_gpus, parse_gpu_spec
from .kube import CPUOffer, GPUOffer, MIGOffer, build_profile_list
from .spawner import CPU_ENV, GPUSlotMixin, GPUSpawner, SharedUserGPUSpawner, no_slot_error

__all__ = [
    "CPU_ENV",
    "CPUOffer",
    "GPUDevice",
    "GPUOffer",
    "GPUSlotMixin",
    "GPUSpawner",
    "MIGOffer",
    "SharedUserGPUSpawner",
    "Slot",
    "SlotAllocator",
    "build_profile_list",
    "clear_shared_allocators",
    "detect_gpus",
    "ensure_home",
    "no_slot_error",
    "parse_gpu_spec",
    "seed_home",
    "shared_allocator",
]
