"""The engine's CPU matmuls for its frozen base weights: oneDNN with each weight reordered once, at load time.

PyTorch's float32 `F.linear` on CPU calls MKL, whose small-batch GEMMs run a slow generic path on AMD CPUs: on
an AMD EPYC (AVX-512, one thread) a decode step's [19, 576] x [576, 1536] took 598 us with MKL and 224 us with
oneDNN and a prepacked weight (2.6x; the lm_head 24 ms -> 7.5 ms). oneDNN (shipped inside PyTorch as mkldnn)
picks its kernels by CPU features, not vendor. The results differ from MKL's only by float32 rounding (another
summation order). Used only where oneDNN is built in and the weight's dtype is float32; elsewhere (and for
GPUs) `F.linear` stays.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

PACKED_DTYPES = frozenset({torch.float32})


def can_prepack(weight: torch.Tensor) -> bool:
    """Whether this weight gets a oneDNN copy: a float32 CPU matrix, with oneDNN built into this PyTorch."""
    return (
        weight.device.type == "cpu"
        and weight.dtype in PACKED_DTYPES
        and weight.dim() == 2
        and torch.backends.mkldnn.is_available()
        and hasattr(torch.ops.mkldnn, "_reorder_linear_weight")
    )


class PackedLinear:
    """y = x W^T (+ b) with W held in oneDNN's blocked layout (an opaque tensor: not readable as a matrix)."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None) -> None:
        self.out_features, self.in_features = weight.shape
        self.weight = torch.ops.mkldnn._reorder_linear_weight(weight.detach().contiguous(), None)
        self.bias = None if bias is None else bias.detach().contiguous()

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        x2 = x.reshape(-1, self.in_features)
        if not x2.is_contiguous():
            x2 = x2.contiguous()
        y = torch.ops.mkldnn._linear_pointwise(x2, self.weight, self.bias, "none", [], "")
        return y.view(*x.shape[:-1], self.out_features)


def linear_for(weight: torch.Tensor, bias: torch.Tensor | None):
    """The fastest exact-in-float32 matmul for this frozen weight: a `PackedLinear`, or `F.linear` over it."""
    if can_prepack(weight):
        return PackedLinear(weight, bias)
    return lambda x: F.linear(x, weight, bias)
