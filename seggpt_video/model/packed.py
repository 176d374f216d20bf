"""Linear layers with their weights reordered once for the CPU's bf16 GEMM, for inference.

A plain CPU bf16 matmul (oneDNN) reorders its weight into the AMX/AVX-512 blocked layout on
every call: for ViT-L that is all 300 M weights, every frame. Packing once when the model is set
up is what inductor's freezing pass does for compiled CPU models; here it is done eagerly, with
the same torch ops, which also fuse the MLP's GELU into its matmul. (MKL's packed fp32 linear
was measured too and made a ViT-L frame 7% slower, so fp32 keeps nn.Linear: README, Speed.)
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

Activation = Literal["none", "gelu"]


def packing_available(dtype: torch.dtype) -> bool:
    """Whether this torch build packs CPU linear weights of ``dtype`` (bf16 with oneDNN)."""
    return (
        dtype == torch.bfloat16
        and torch.backends.mkldnn.is_available()
        and torch.ops.mkldnn._is_mkldnn_bf16_supported()
    )


class PackedLinear(nn.Linear):
    """An ``nn.Linear`` (same parameters, same state dict) that runs on a packed weight.

    The pack is made from the weight as it is when first needed without autograd, and made
    again if the weight changes (dtype, device, storage or an in-place update). With autograd
    on, or off the CPU, it is the plain linear. ``activation="gelu"`` applies the exact GELU
    after the linear (fused into the packed GEMM, where it acts before rounding to bf16).
    """

    def __init__(self, linear: nn.Linear, activation: Activation = "none") -> None:
        nn.Module.__init__(self)
        self.in_features, self.out_features = linear.in_features, linear.out_features
        self.weight, self.bias = linear.weight, linear.bias
        self.activation = activation
        self._packed: torch.Tensor | None = None
        self._packed_from: tuple | None = None

    def _pack(self) -> torch.Tensor | None:
        """The packed weight, or None where it cannot be packed; decided when the weight changes."""
        weight = self.weight
        source = (weight.device, weight.dtype, weight.data_ptr(), weight._version)
        if source != self._packed_from:
            self._packed = None
            if weight.device.type == "cpu" and packing_available(weight.dtype):
                rows = 1024  # a size hint for the GEMM's blocking; any input size works
                self._packed = torch.ops.mkldnn._reorder_linear_weight(weight.detach(), rows)
            self._packed_from = source
        return self._packed

    def __getstate__(self) -> dict:
        """Copies and pickles leave the pack out (an opaque tensor); it is remade when needed."""
        state = super().__getstate__()
        return {**state, "_packed": None, "_packed_from": None}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        plain = torch.is_grad_enabled() or torch.is_autocast_enabled(x.device.type)
        packed = None if plain else self._pack()
        gelu = self.activation == "gelu"
        if packed is None or x.dtype != self.weight.dtype:
            out = F.linear(x, self.weight, self.bias)
        else:
            attr, algorithm = ("gelu", "none") if gelu else ("none", "")
            out = torch.ops.mkldnn._linear_pointwise(x, packed, self.bias, attr, [], algorithm)
            gelu = False
        return F.gelu(out) if gelu else out


def pack_linears(model: nn.Module) -> None:
    """Swap the transformer's and decoder's linears for :class:`PackedLinear`, in place.

    Each MLP's GELU moves into its first linear. Parameters and state dict are unchanged, and
    with autograd on the model computes as before, so it can still be trained or tuned.
    """
    if isinstance(model.decoder_embed, PackedLinear):
        return
    for block in model.blocks:
        block.attn.qkv = PackedLinear(block.attn.qkv)
        block.attn.proj = PackedLinear(block.attn.proj)
        block.mlp.fc1 = PackedLinear(block.mlp.fc1, activation="gelu")
        block.mlp.act = nn.Identity()
        block.mlp.fc2 = PackedLinear(block.mlp.fc2)
    model.decoder_embed = PackedLinear(model.decoder_embed)
