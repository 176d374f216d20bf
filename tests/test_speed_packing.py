"""Linears packed for the CPU's GEMM compute what nn.Linear computes, and follow their weights."""

from __future__ import annotations

import copy

import pytest
import torch
from test_model import random_model, release_inputs
from torch import nn

from seggpt_video.model import PRESETS
from seggpt_video.model.packed import PackedLinear, pack_linears, packing_available
from seggpt_video.predictor import SegGPTPredictor

SMALL = PRESETS["test-small"]
PACKABLE = [torch.bfloat16] if packing_available(torch.bfloat16) else []


@pytest.mark.parametrize("dtype", PACKABLE)
def test_packed_model_equals_the_plain_model(dtype):
    plain = random_model(SMALL).to(dtype)
    packed = copy.deepcopy(plain)
    pack_linears(packed)
    assert isinstance(packed.blocks[0].mlp.fc1, PackedLinear)
    assert packed.state_dict().keys() == plain.state_dict().keys()
    imgs, tgts, masked = release_inputs(SMALL, batch=2)
    imgs, tgts = imgs.to(dtype), tgts.to(dtype)
    seg = torch.ones(2)
    with torch.inference_mode():
        expected = plain(imgs, tgts, masked, seg).float()
        got = packed(imgs, tgts, masked, seg).float()
    # The fused GELU acts on the fp32 accumulator instead of the bf16-rounded linear.
    assert (got - expected).abs().max().item() < 0.1
    assert packed.blocks[0].attn.qkv._packed is not None  # the packed path really ran
    # With autograd on (training, tuning) it is the plain model, to the bit.
    with torch.enable_grad():
        assert torch.equal(packed(imgs, tgts, masked, seg), plain(imgs, tgts, masked, seg))


@pytest.mark.parametrize("dtype", PACKABLE)
def test_pack_follows_weight_updates(dtype):
    linear = nn.Linear(16, 24).to(dtype)
    packed = PackedLinear(copy.deepcopy(linear), activation="gelu")
    x = torch.randn(5, 7, 16).to(dtype)
    for _ in range(2):
        with torch.no_grad():
            got = packed(x).float()
            expected = nn.functional.gelu(linear(x)).float()
            assert (got - expected).abs().max().item() < 0.05
            # An in-place update (an optimiser step) must make the next call repack.
            linear.weight.mul_(-2.0)
            packed.weight.mul_(-2.0)
    # A copy drops the pack and makes its own.
    clone = copy.deepcopy(packed)
    assert clone._packed is None
    with torch.no_grad():
        assert torch.equal(clone(x), packed(x))


@pytest.mark.skipif(not PACKABLE, reason="this torch build has no oneDNN bf16")
def test_predictor_packs_bf16_on_the_cpu_only():
    predictor = SegGPTPredictor(random_model(SMALL), "cpu", torch.bfloat16)
    assert isinstance(predictor.model.decoder_embed, PackedLinear)
    assert isinstance(predictor.model.blocks[-1].mlp.act, nn.Identity)
    # fp32 keeps nn.Linear (MKL's packed fp32 GEMM was slower), as does a compiled model.
    for dtype, compile_mode in ((torch.float32, None), (torch.bfloat16, "default")):
        predictor = SegGPTPredictor(random_model(SMALL), "cpu", dtype, compile=compile_mode)
        assert type(predictor.model.decoder_embed) is nn.Linear
