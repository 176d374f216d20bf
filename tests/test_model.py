"""The network against `transformers`' SegGPT and against the release's feature-ensemble rule."""

from __future__ import annotations

import pytest
import torch
from oracle import correct_merge_block, oracle_forward, oracle_from

import seggpt_video.model.seggpt as seggpt_module
from seggpt_video.model import PRESETS, SegGPT, SegGPTConfig
from seggpt_video.model.checkpoint import hf_to_official, load_weights_strict, official_to_hf

SMALL = PRESETS["test-small"]
# A second small shape: odd head count, more blocks, merge later, non-square pretraining grid.
WIDER = SegGPTConfig(
    image_size=(96, 48),
    patch_size=8,
    embed_dim=48,
    depth=6,
    num_heads=3,
    pretrain_image_size=32,
    merge_index=2,
    feature_depths=(2, 3, 4, 5),
    decoder_embed_dim=8,
)
SEG_TYPES = [(1, "instance"), (0, "semantic")]


def random_model(config: SegGPTConfig, seed: int = 0) -> SegGPT:
    """A model whose every parameter is random (zero-initialised tables included)."""
    torch.manual_seed(seed)
    model = SegGPT(config).eval()
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.normal_(0, 0.2)
    return model


def release_inputs(config: SegGPTConfig, batch: int, seed: int = 1):
    """Stacked inputs as the release builds them: query half of the target masked."""
    generator = torch.Generator().manual_seed(seed)
    height, width = config.image_size
    imgs = torch.randn(batch, 3, height, width, generator=generator)
    masks = torch.randn(batch, 3, height // 2, width, generator=generator)
    tgts = torch.cat([masks, masks], dim=2)
    bool_masked_pos = torch.zeros(1, config.num_patches, dtype=torch.bool)
    bool_masked_pos[:, config.num_patches // 2 :] = True
    return imgs, tgts, bool_masked_pos


@pytest.mark.parametrize("config", [SMALL, WIDER], ids=["small", "wider"])
@pytest.mark.parametrize("seg_type,embedding_type", SEG_TYPES)
def test_one_prompt_matches_transformers_from_both_formats(config, seg_type, embedding_type):
    source = random_model(config)
    oracle = oracle_from(source)
    imgs, tgts, bool_masked_pos = release_inputs(config, batch=2)
    expected = oracle_forward(oracle, imgs, tgts, bool_masked_pos, embedding_type)
    seg = torch.full((2,), seg_type)
    for state in (source.state_dict(), hf_to_official(official_to_hf(source.state_dict()))):
        model = SegGPT(config).eval()
        load_weights_strict(model, state, "test")
        with torch.no_grad():
            ours = model(imgs, tgts, bool_masked_pos, seg)
        assert ours.shape == expected.shape
        assert (ours - expected).abs().max().item() < 1e-5
    # The two seg types really are different inputs (else the test could not tell them apart).
    with torch.no_grad():
        other = model(imgs, tgts, bool_masked_pos, 1 - seg)
    assert (other - expected).abs().max().item() > 1e-3


@pytest.mark.parametrize("config", [SMALL, WIDER], ids=["small", "wider"])
@pytest.mark.parametrize("seg_type,embedding_type", SEG_TYPES)
def test_feature_ensemble_follows_the_release(config, seg_type, embedding_type):
    model = random_model(config)
    oracle = oracle_from(model)
    imgs, tgts, bool_masked_pos = release_inputs(config, batch=3)
    query = imgs[:1, :, config.image_size[0] // 2 :]
    imgs[:, :, config.image_size[0] // 2 :] = query  # three prompts, one query
    seg = torch.full((3,), seg_type)
    with torch.no_grad():
        ours = model(imgs, tgts, bool_masked_pos, seg, feature_ensemble=True)
    uncorrected = oracle_forward(oracle, imgs, tgts, bool_masked_pos, embedding_type, True)
    correct_merge_block(oracle)
    corrected = oracle_forward(oracle, imgs, tgts, bool_masked_pos, embedding_type, True)
    assert (ours - corrected).abs().max().item() < 1e-5
    # transformers as shipped averages over both streams in the merge block: visibly different.
    assert (ours - uncorrected).abs().max().item() > 1e-4  # ten times the tolerance
    # The ensembled query halves agree across prompts, but for the seam row, where the decoder's
    # 3x3 convolution sees each prompt's own last row.
    bottom = ours[:, :, config.image_size[0] // 2 + 1 :]
    assert (bottom - bottom[:1]).abs().max().item() < 1e-5


def test_groups_of_prompts_equal_separate_queries():
    """Several queries in one batch, each with its own prompts, equal one run per query."""
    model = random_model(SMALL)
    imgs, tgts, bool_masked_pos = release_inputs(SMALL, batch=6)
    seg = torch.ones(6)
    with torch.no_grad():
        together = model.forward_features(imgs, tgts, bool_masked_pos, seg, prompts_per_query=3)
        together = model.forward_decoder(together)
        apart = [
            model(imgs[i : i + 3], tgts[i : i + 3], bool_masked_pos, seg[:3], True) for i in (0, 3)
        ]
    assert (together - torch.cat(apart)).abs().max().item() < 1e-5


@pytest.mark.parametrize("impl", ["sdpa", "bias", "folded"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_fused_attention_equals_plain_softmax(dtype, impl):
    """Both fused forms (bias as a mask; bias folded into q and k) compute the same attention."""
    model = random_model(WIDER).to(dtype)
    assert model.blocks[0].attn.rel_pos_h.abs().min() > 0  # a bias that really matters
    imgs, tgts, bool_masked_pos = release_inputs(WIDER, batch=2)
    imgs, tgts = imgs.to(dtype), tgts.to(dtype)
    seg = torch.ones(2)
    with torch.no_grad():
        model.set_attention(impl)
        fused = model(imgs, tgts, bool_masked_pos, seg, feature_ensemble=True)
        model.set_attention("math")
        plain = model(imgs, tgts, bool_masked_pos, seg, feature_ensemble=True)
    tolerance = 1e-5 if dtype == torch.float32 else 0.1
    assert (fused.float() - plain.float()).abs().max().item() < tolerance


def test_folded_attention_buffers_equal_the_autograd_form():
    """Without autograd the folded q', k', v' are buffers reused between blocks and calls; every
    call still gives exactly what the freshly concatenated form (used under autograd) gives."""
    model = random_model(WIDER).to(torch.bfloat16)
    model.set_attention("folded")
    attention = model.blocks[0].attn
    rows, cols = WIDER.grid
    width = 3 * WIDER.embed_dim
    generator = torch.Generator().manual_seed(3)
    calls = [torch.randn(batch, rows, cols, width, generator=generator) for batch in (2, 2, 1, 2)]
    buffers = []
    for qkv in calls:
        qkv = qkv.to(torch.bfloat16)
        with torch.enable_grad():
            expected = attention.attend(qkv.requires_grad_())
        with torch.inference_mode():
            got = attention.attend(qkv.detach())
            buffers.append(seggpt_module._folded_buffers.tensors[1])
        assert torch.equal(got, expected.detach())
    # The second call of a shape reused the first's buffers; a new shape got its own.
    assert buffers[1] is buffers[0]
    assert buffers[2].shape[0] == 1 and buffers[3].shape[0] == 2
    # A whole forward lets them go when it ends: no memory stays held between frames.
    imgs, tgts, bool_masked_pos = release_inputs(WIDER, batch=1)
    with torch.inference_mode():
        model(imgs.to(torch.bfloat16), tgts.to(torch.bfloat16), bool_masked_pos, torch.ones(1))
    assert seggpt_module._folded_buffers.tensors is None


def test_resized_position_embedding_is_kept_until_the_parameter_changes():
    model = random_model(SMALL)
    with torch.no_grad():
        first = model.position_embedding()
        assert model.position_embedding() is first
        model.pos_embed.mul_(2.0)
        second = model.position_embedding()
        assert torch.equal(second, model._resized_position_embedding())
        assert not torch.equal(second, first)
    # With autograd the resize runs in the graph, so the parameter gets its gradient.
    model.position_embedding().sum().backward()
    assert model.pos_embed.grad is not None


def test_masked_target_patches_are_ignored():
    """Whatever lies under the mask tokens cannot change the output."""
    model = random_model(SMALL)
    imgs, tgts, bool_masked_pos = release_inputs(SMALL, batch=1)
    scrambled = tgts.clone()
    scrambled[:, :, SMALL.image_size[0] // 2 :] = torch.randn_like(scrambled[:, :, 32:])
    with torch.no_grad():
        a = model(imgs, tgts, bool_masked_pos, torch.ones(1))
        b = model(imgs, scrambled, bool_masked_pos, torch.ones(1))
        c = model(imgs, scrambled, torch.zeros_like(bool_masked_pos), torch.ones(1))
    assert torch.equal(a, b)
    assert (a - c).abs().max().item() > 1e-3


@pytest.mark.slow
@pytest.mark.parametrize("seg_type,embedding_type", SEG_TYPES)
def test_full_vit_large_matches_transformers(seg_type, embedding_type):
    config = PRESETS["seggpt-vit-large"]
    model = random_model(config)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.mul_(0.1)  # keep 24 random blocks from overflowing the residual stream
    oracle = oracle_from(model)
    imgs, tgts, bool_masked_pos = release_inputs(config, batch=1)
    with torch.no_grad():
        ours = model(imgs, tgts, bool_masked_pos, torch.full((1,), seg_type))
    expected = oracle_forward(oracle, imgs, tgts, bool_masked_pos, embedding_type)
    assert (ours - expected).abs().max().item() < 1e-5
    # Three prompts: the release's feature ensemble, against the corrected oracle.
    imgs, tgts, bool_masked_pos = release_inputs(config, batch=3)
    imgs[:, :, 448:] = imgs[:1, :, 448:]
    with torch.no_grad():
        ours = model(imgs, tgts, bool_masked_pos, torch.full((3,), seg_type), True)
    correct_merge_block(oracle)
    expected = oracle_forward(oracle, imgs, tgts, bool_masked_pos, embedding_type, True)
    assert (ours - expected).abs().max().item() < 1e-5
