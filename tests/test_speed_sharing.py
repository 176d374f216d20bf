"""Work shared or skipped for speed gives the plain path's results (fp32, within 1e-5)."""

from __future__ import annotations

import pytest
import torch
from test_model import random_model, release_inputs

from seggpt_video.model import PRESETS
from seggpt_video.model.seggpt import run_blocks, split_shared
from seggpt_video.predictor import PromptTensors, SegGPTPredictor
from seggpt_video.runtime import physical_cores, tune_cpu_runtime

SMALL = PRESETS["test-small"]


def random_prompts(count: int, size: int, seed: int) -> PromptTensors:
    generator = torch.Generator().manual_seed(seed)
    return PromptTensors(
        torch.randn(count, 3, size, size, generator=generator),
        torch.randn(count, 3, size, size, generator=generator),
    )


def plain_paint(predictor: SegGPTPredictor, prompts: PromptTensors, query: torch.Tensor):
    """One query the release's way: full stacked forward, both streams, full decoder."""
    count = len(prompts)
    imgs = torch.cat([prompts.images, query.expand(count, -1, -1, -1)], dim=2)
    tgts = torch.cat([prompts.masks, prompts.masks], dim=2)
    masked = torch.zeros(1, SMALL.num_patches, dtype=torch.bool)
    masked[:, SMALL.num_patches // 2 :] = True
    with torch.no_grad():
        out = predictor.model(imgs, tgts, masked, torch.ones(count), feature_ensemble=count > 1)
    half = out[:1, :, SMALL.image_size[0] // 2 :]
    return half * predictor._std + predictor._mean


@pytest.mark.parametrize("num_prompts", [1, 3])
def test_paint_equals_the_plain_forward(num_prompts):
    predictor = SegGPTPredictor(random_model(SMALL))
    prompts = random_prompts(num_prompts, SMALL.prompt_size, seed=2)
    queries = torch.randn(4, 3, SMALL.prompt_size, SMALL.prompt_size)
    painted = predictor.paint(prompts, queries)
    for index in range(4):
        expected = plain_paint(predictor, prompts, queries[index : index + 1]).clamp(0, 255)
        assert (painted[index : index + 1] - expected).abs().max().item() < 1e-5 * 255
    # The queries really differ, so sharing the target stream across them was not trivial.
    assert (painted[0] - painted[1]).abs().max().item() > 1.0


def test_query_decoder_equals_the_bottom_half():
    model = random_model(SMALL)
    imgs, tgts, masked = release_inputs(SMALL, batch=2)
    with torch.no_grad():
        features = model.forward_features(imgs, tgts, masked, torch.ones(2))
        full = model.forward_decoder(features)
        query = model.forward_query_decoder(features)
    assert query.shape == (2, 3, SMALL.image_size[0] // 2, SMALL.image_size[1])
    assert (query - full[:, :, SMALL.image_size[0] // 2 :]).abs().max().item() < 1e-5
    # Decoding the query half's own patch rows alone (no seam row) would not be exact.
    with torch.no_grad():
        unseamed = model.forward_decoder([f[:, f.shape[1] // 2 :] for f in features])
    assert (unseamed - query).abs().max().item() > 1e-4


def test_shared_targets_broadcast_over_queries():
    model = random_model(SMALL)
    imgs, tgts, masked = release_inputs(SMALL, batch=3)
    seg = torch.ones(6)
    imgs = torch.cat([imgs, imgs.flip(0)])  # two queries' items, three prompts each
    with torch.no_grad():
        targets = model.encode_targets(tgts, masked, seg[:3], prompts_per_query=3)
        shared = model.forward_features(imgs, None, masked, seg, 3, targets=targets)
        plain = model.forward_features(imgs, tgts.repeat(2, 1, 1, 1), masked, seg, 3)
        with pytest.raises(ValueError, match="targets for 3 items"):
            model.forward_features(imgs, None, masked, seg, 2, targets=targets)
    for a, b in zip(shared, plain, strict=True):
        assert (a - b).abs().max().item() < 1e-5


def test_jobs_with_as_many_prompts_share_one_model_call():
    """A frame's full pass and its crop passes: one walk through the blocks, the same paintings."""
    predictor = SegGPTPredictor(random_model(SMALL))
    size = SMALL.prompt_size
    jobs = [
        (random_prompts(2, size, seed=20), torch.randn(1, 3, size, size)),
        (random_prompts(2, size, seed=21), torch.randn(2, 3, size, size)),
        (random_prompts(1, size, seed=22), torch.randn(1, 3, size, size)),
    ]
    alone = [predictor.paint(prompts, queries) for prompts, queries in jobs]
    predictor.forget_targets()
    calls, encodes = [], []
    paint, encode = predictor._paint, predictor.model.encode_target_prompts

    def counting_paint(images, targets, queries):
        calls.append(queries.shape[0])
        return paint(images, targets, queries)

    def counting_encode(*args, **kwargs):
        encodes.append(args[0].shape[0])
        return encode(*args, **kwargs)

    predictor._paint, predictor.model.encode_target_prompts = counting_paint, counting_encode
    together = predictor.paint_each(jobs)
    assert calls == [3, 1]  # the two-prompt jobs' three queries in one call, then the other
    assert encodes == [4, 1]  # their target streams too
    for a, b in zip(together, alone, strict=True):
        assert a.shape == b.shape
        assert (a - b).abs().max().item() < 1e-3


def test_target_stream_is_cached_by_mask_content():
    predictor = SegGPTPredictor(random_model(SMALL))
    calls = []
    encode = predictor.model.encode_target_prompts

    def counting(*args, **kwargs):
        calls.append(args[0].shape[0])
        return encode(*args, **kwargs)

    predictor.model.encode_target_prompts = counting
    prompts = random_prompts(2, SMALL.prompt_size, seed=3)
    queries = torch.randn(2, 3, SMALL.prompt_size, SMALL.prompt_size)
    first = predictor.paint(prompts, queries)
    # New tensors, same masks (the engine concatenates the memory anew every frame): a hit.
    again = PromptTensors(prompts.images.clone(), prompts.masks.clone())
    assert torch.equal(predictor.paint(again, queries), first)
    assert calls == [2]
    changed = PromptTensors(prompts.images, prompts.masks.flip(-1))
    assert not torch.equal(predictor.paint(changed, queries), first)
    assert calls == [2, 2]
    # Older sets stay cached (per-object passes alternate), up to a number of prompts.
    predictor.paint(prompts, queries)
    assert calls == [2, 2]
    for seed in range(8):
        predictor.paint(random_prompts(2, SMALL.prompt_size, seed=10 + seed), queries)
    assert sum(len(masks) for masks, _ in predictor._targets) <= 16
    assert len(predictor._prompt_parts) <= 16
    predictor.paint(prompts, queries)
    assert len(calls) == 2 + 8 + 1


def test_a_memory_that_moves_on_pays_the_first_target_block_for_its_new_frame_only():
    """Frames 0, 1, 2 then 0, 2, 3 as prompts: only frame 3's first block is computed, and the
    target streams equal those encode_targets gives the whole set."""
    model = random_model(SMALL)
    predictor = SegGPTPredictor(model)
    frames = random_prompts(4, SMALL.prompt_size, seed=30)

    def prompt_set(indices: list[int]) -> PromptTensors:
        return PromptTensors(frames.images[indices], frames.masks[indices])

    encoded = []
    encode = model.encode_target_prompts

    def counting(*args, **kwargs):
        encoded.append(args[0].shape[0])
        return encode(*args, **kwargs)

    model.encode_target_prompts = counting
    predictor.prompt_targets([prompt_set([0, 1, 2])])
    (moved,) = predictor.prompt_targets([prompt_set([0, 2, 3])])
    assert encoded == [3, 1]
    masks = frames.masks[[0, 2, 3]]
    with torch.no_grad():
        plain = model.encode_targets(
            torch.cat([masks, masks], dim=2), predictor._masked_query(), torch.ones(3), 3
        )
    assert (moved - plain).abs().max().item() < 1e-5
    with pytest.raises(ValueError, match="query halves differ"):
        model.encode_target_prompts(
            torch.cat([masks, masks], dim=2), predictor._masked_query(), torch.tensor([1, 0, 1])
        )


def test_out_of_memory_splits_the_batch_and_remembers():
    predictor = SegGPTPredictor(random_model(SMALL))
    prompts = random_prompts(2, SMALL.prompt_size, seed=4)
    queries = torch.randn(5, 3, SMALL.prompt_size, SMALL.prompt_size)
    expected = predictor.paint(prompts, queries)
    sizes = []
    real = predictor._paint

    def small_memory(images, targets, queries):
        sizes.append(queries.shape[0])
        if queries.shape[0] > 2:
            raise torch.OutOfMemoryError("injected: CUDA out of memory")
        return real(images, targets, queries)

    predictor._paint = small_memory
    assert (predictor.paint(prompts, queries) - expected).abs().max().item() < 1e-3
    assert sizes == [5, 2, 2, 1]
    assert predictor.max_queries == 2
    sizes.clear()
    predictor.paint(prompts, queries)
    assert sizes == [2, 2, 1]  # remembered: no failed attempt the second time
    predictor.max_queries = None

    def no_memory(images, targets, queries):
        raise torch.OutOfMemoryError("injected")

    predictor._paint = no_memory
    with pytest.raises(torch.OutOfMemoryError):
        predictor.paint(prompts, queries[:1])


def test_cpu_threads_follow_physical_cores(monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    before = torch.get_num_threads()
    try:
        assert tune_cpu_runtime(threads=1) == 1
        assert torch.get_num_threads() == 1
        assert tune_cpu_runtime() == physical_cores() >= 1
    finally:
        torch.set_num_threads(before)


def test_shared_query_halves_equal_the_plain_blocks():
    model = random_model(SMALL)
    generator = torch.Generator().manual_seed(5)
    x = torch.randn(6, *SMALL.grid, SMALL.embed_dim, generator=generator)
    half = SMALL.grid[0] // 2
    x[:, half:] = x[::3, half:].repeat_interleave(3, dim=0)  # two queries, three prompts each
    assert split_shared(x, 3)[1].shape[0] == 2
    with torch.no_grad():
        shared = run_blocks(model.blocks, x, prompts=3)
        plain = x
        for block in model.blocks:
            plain = block(plain, prompts=3)
    assert (shared - plain).abs().max().item() < 1e-5
    # The ensemble mattered: without it the result is different.
    with torch.no_grad():
        alone = x
        for block in model.blocks:
            alone = block(alone)
    assert (alone - plain).abs().max().item() > 1e-3
    # Query halves that differ within a query cannot be shared.
    x[1, half:] += 1
    assert split_shared(x, 3) is None
    assert split_shared(x, 1) is None
