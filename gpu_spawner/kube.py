"""KubeSpawner `profile_list` entries for the GPU kinds a cluster offers (plain dicts: no kubespawner import).

Each entry sets KubeSpawner traits through `kubespawner_override`: `extra_resource_limits` /
`extra_resource_guarantees` (the NVIDIA device plugin's `nvidia.com/gpu` or, with the GPU operator's
"mixed" MIG strategy, `nvidia.com/mig-<profile>` resources), `node_selector` (the GPU feature discovery
label `nvidia.com/gpu.product`), `tolerations` (GPU nodes are usually tainted) and `environment`.
KubeSpawner merges dict overrides into the global settings key by key, so every profile states its
`nvidia.com/gpu` count explicitly — "0" included — rather than inheriting a global one.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

GPU_RESOURCE = "nvidia.com/gpu"
PRODUCT_LABEL = "nvidia.com/gpu.product"
DEFAULT_GPU_TOLERATIONS: tuple[dict[str, str], ...] = (
    {"key": GPU_RESOURCE, "operator": "Exists", "effect": "NoSchedule"},
)

_MIG_PROFILE = re.compile(r"[1-9][0-9]*g\.[1-9][0-9]*gb")
# Kubernetes label values: at most 63 characters, alphanumerics, "-", "_", "." inside.
_LABEL_VALUE = re.compile(r"[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?")


@dataclass(frozen=True)
class CPUOffer:
    """The CPU-only profile."""

    display_name: str = "CPU only"
    description: str = "No GPU: browsing datanets, dashboards and small experiments."
    default: bool = False


@dataclass(frozen=True)
class GPUOffer:
    """`count` whole GPUs of one product, e.g. GPUOffer("NVIDIA-H100-80GB-HBM3")."""

    product: str  # value of the node label nvidia.com/gpu.product
    count: int = 1
    display_name: str = ""
    description: str = ""
    default: bool = False


@dataclass(frozen=True)
class MIGOffer:
    """`count` MIG instances of one profile, e.g. MIGOffer("1g.10gb"); `product` optionally pins the GPU model."""

    profile: str
    count: int = 1
    product: str = ""
    display_name: str = ""
    description: str = ""
    default: bool = False


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def _check_count(what: str, count: Any) -> None:
    if isinstance(count, bool) or not isinstance(count, int) or count < 1:
        raise ValueError(f"{what}: count must be a whole number of at least 1, not {count!r}")


def _check_product(what: str, product: str) -> None:
    if not _LABEL_VALUE.fullmatch(product):
        raise ValueError(
            f"{what}: product {product!r} is not a node label value; use the value of the node label "
            f"{PRODUCT_LABEL} (kubectl get nodes -L {PRODUCT_LABEL}), e.g. NVIDIA-H100-80GB-HBM3"
        )


def _override(resources: dict[str, str], node_selector: dict[str, str], tolerations: list[dict], env: dict) -> dict:
    override: dict[str, Any] = {
        "extra_resource_limits": dict(resources),
        # Extended resources cannot be overcommitted: Kubernetes wants the request equal to the limit.
        "extra_resource_guarantees": dict(resources),
        "environment": env,
    }
    if node_selector:
        override["node_selector"] = node_selector
    if tolerations:
        override["tolerations"] = [dict(toleration) for toleration in tolerations]  # no list shared by profiles
    return override


def _cpu_profile(offer: CPUOffer) -> dict[str, Any]:
    # An explicit 0 overrides any global GPU limit; NVIDIA_VISIBLE_DEVICES=void stops the NVIDIA runtime from
    # exposing every GPU of the node to a CUDA image (whose own env says "all") that requested none.
    env = {"OPENLEDGER_DEVICE": "cpu", "CUDA_VISIBLE_DEVICES": "", "NVIDIA_VISIBLE_DEVICES": "void"}
    return {
        "display_name": offer.display_name,
        "slug": "cpu",
        "description": offer.description,
        "kubespawner_override": _override({GPU_RESOURCE: "0"}, {}, [], env),
    }


def _gpu_profile(offer: GPUOffer, tolerations: list[dict]) -> dict[str, Any]:
    what = f"GPU offer {offer.product!r}"
    _check_count(what, offer.count)
    _check_product(what, offer.product)
    plural = "s" if offer.count > 1 else ""
    return {
        "display_name": offer.display_name or f"{offer.count} x {offer.product} GPU{plural}",
        "slug": _slug(f"gpu-{offer.product}" + (f"-x{offer.count}" if offer.count > 1 else "")),
        "description": offer.description or f"{offer.count} whole {offer.product} GPU{plural}.",
        "kubespawner_override": _override(
            {GPU_RESOURCE: str(offer.count)},
            {PRODUCT_LABEL: offer.product},
            tolerations,
            {"OPENLEDGER_DEVICE": "cuda"},
        ),
    }


def _mig_profile(offer: MIGOffer, tolerations: list[dict]) -> dict[str, Any]:
    what = f"MIG offer {offer.profile!r}"
    if not _MIG_PROFILE.fullmatch(offer.profile):
        raise ValueError(f"{what}: a MIG profile looks like 1g.10gb or 3g.40gb (<compute>g.<memory>gb)")
    _check_count(what, offer.count)
    if offer.product:
        _check_product(what, offer.product)
    on = f" on {offer.product}" if offer.product else ""
    resources = {f"nvidia.com/mig-{offer.profile}": str(offer.count), GPU_RESOURCE: "0"}
    return {
        "display_name": offer.display_name or f"{offer.count} x MIG {offer.profile}{on}",
        "slug": _slug(f"mig-{offer.profile}-{offer.product}" + (f"-x{offer.count}" if offer.count > 1 else "")),
        "description": offer.description or f"{offer.count} MIG slice(s) {offer.profile} of a GPU{on}.",
        "kubespawner_override": _override(
            resources,
            {PRODUCT_LABEL: offer.product} if offer.product else {},
            tolerations,
            {"OPENLEDGER_DEVICE": "cuda"},
        ),
    }


def build_profile_list(
    offers: Sequence[GPUOffer | MIGOffer],
    *,
    cpu: CPUOffer | None = CPUOffer(),  # frozen: safe as a default
    gpu_tolerations: Sequence[dict[str, str]] = DEFAULT_GPU_TOLERATIONS,
) -> list[dict[str, Any]]:
    """`c.KubeSpawner.profile_list` for a CPU profile (unless `cpu` is None) and the given GPU offers.

    Exactly one entry is the default: the one marked `default=True`, else the CPU profile, else the first.
    Raises ValueError on a bad offer, duplicate offers, several defaults or nothing to offer.
    """
    tolerations = [dict(toleration) for toleration in gpu_tolerations]
    profiles: list[dict[str, Any]] = []
    marked: list[str] = []
    if cpu is not None:
        profiles.append(_cpu_profile(cpu))
        if cpu.default:
            marked.append("cpu")
    for offer in offers:
        if isinstance(offer, GPUOffer):
            profile = _gpu_profile(offer, tolerations)
        elif isinstance(offer, MIGOffer):
            profile = _mig_profile(offer, tolerations)
        else:
            raise TypeError(f"expected GPUOffer or MIGOffer, not {type(offer).__name__}")
        if offer.default:
            marked.append(profile["slug"])
        profiles.append(profile)
    if not profiles:
        raise ValueError("nothing to offer: give at least one GPU offer or keep the CPU profile")
    slugs = [profile["slug"] for profile in profiles]
    duplicates = sorted({slug for slug in slugs if slugs.count(slug) > 1})
    if duplicates:
        raise ValueError(f"the same offer is listed twice: {', '.join(duplicates)}")
    if len(marked) > 1:
        raise ValueError(f"only one profile can be the default, not {', '.join(marked)}")
    default = marked[0] if marked else slugs[0]
    for profile in profiles:
        profile["default"] = profile["slug"] == default
    return profiles
