"""Synthetic scenes, training pairs, random colouring and target masking."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from seggpt_video.errors import UserError
from seggpt_video.predictor import IMAGENET_MEAN, IMAGENET_STD
from seggpt_video.training.pairs import (
    INSTANCE,
    SEMANTIC,
    DavisPairs,
    Pair,
    SyntheticPairs,
    block_mask,
    degrade_prompt,
    group_positions,
    make_batch,
    make_group_batch,
    paint_frames,
    paint_pair,
    query_half_mask,
    target_mask,
)
from seggpt_video.training.synthetic import make_clip, random_scene, render


def test_clip_is_deterministic_by_seed_and_seeds_differ():
    frames, labels = make_clip(7, num_frames=5, height=40, width=56, num_objects=3)
    again, again_labels = make_clip(7, num_frames=5, height=40, width=56, num_objects=3)
    other, _ = make_clip(8, num_frames=5, height=40, width=56, num_objects=3)
    assert frames.shape == (5, 40, 56, 3) and frames.dtype == np.uint8
    assert labels.shape == (5, 40, 56) and labels.dtype == np.uint8
    np.testing.assert_array_equal(frames, again)
    np.testing.assert_array_equal(labels, again_labels)
    assert np.abs(frames.astype(int) - other.astype(int)).mean() > 10


def test_clip_objects_visible_first_then_move_and_change_size():
    _, labels = make_clip(3, num_frames=12, height=64, width=64, num_objects=3)
    assert set(np.unique(labels[0])) == {0, 1, 2, 3}
    for object_id in (1, 2, 3):
        first, last = labels[0] == object_id, labels[-1] == object_id
        # Each object moved or changed size: its masks in the first and last frame differ.
        assert (first ^ last).sum() > 0.2 * max(first.sum(), 1)


def test_objects_occlude_each_other():
    # The rendered ids equal the front-most object: somewhere in some clip a front object
    # covers part of one behind it (alone, the object behind would be larger).
    rng = np.random.default_rng(0)
    occluded = 0
    for _ in range(20):
        scene = random_scene(rng, 3)
        _, ids = render(scene, 0.5, 48, 48)
        for index, obj in enumerate(scene.objects):
            y, x = (np.mgrid[0:48, 0:48] + 0.5) / 48
            alone = obj.inside(*obj.local_coordinates(0.5, x, y)).sum()
            occluded += int((ids == index + 1).sum() < alone)
    assert occluded > 0


def _pair() -> Pair:
    prompt = np.zeros((8, 8), np.uint8)
    prompt[:4, :4], prompt[4:, 4:], prompt[:2, 6:] = 1, 2, 3
    query = np.roll(prompt, 1, axis=1)
    image = np.zeros((8, 8, 3), np.uint8)
    return Pair(image, prompt, image, query, classes={1: 5, 2: 5, 3: 9})


def _colour_of(painted: np.ndarray, ids: np.ndarray, object_id: int) -> tuple:
    colours = {tuple(c) for c in painted[ids == object_id]}
    assert len(colours) == 1
    return colours.pop()


def test_instance_colouring_same_colour_in_prompt_and_query_distinct_per_object():
    pair = _pair()
    prompt, query = paint_pair(pair, INSTANCE, np.random.default_rng(0))
    colours = [_colour_of(prompt, pair.prompt_ids, i) for i in (1, 2, 3)]
    assert len(set(colours)) == 3
    assert [_colour_of(query, pair.query_ids, i) for i in (1, 2, 3)] == colours
    assert (prompt[pair.prompt_ids == 0] == 0).all() and (query[pair.query_ids == 0] == 0).all()


def test_semantic_colouring_one_colour_per_class():
    pair = _pair()
    prompt, _ = paint_pair(pair, SEMANTIC, np.random.default_rng(1))
    one, two, three = (_colour_of(prompt, pair.prompt_ids, i) for i in (1, 2, 3))
    assert one == two != three


def test_colours_are_drawn_afresh_for_every_pair():
    pair, rng = _pair(), np.random.default_rng(2)
    drawn = {_colour_of(paint_pair(pair, INSTANCE, rng)[0], pair.prompt_ids, 1) for _ in range(10)}
    assert len(drawn) >= 5


def test_block_mask_covers_half_in_blocks_and_half_mask_is_the_query():
    rng = np.random.default_rng(0)
    for _ in range(10):
        mask = block_mask(16, 8, rng)
        assert 64 <= mask.sum() <= 64 + 32  # at least the ratio, overshoot below one block
    half = target_mask(16, 8, rng, half_mask_ratio=1.0).reshape(16, 8)
    assert half[8:].all() and not half[:8].any()


def test_make_batch_shapes_and_normalisation():
    rng = np.random.default_rng(0)
    batch = make_batch([SyntheticPairs(32)], [1.0], 3, (8, 4), rng, half_mask_ratio=1.0)
    assert batch.imgs.shape == batch.tgts.shape == (3, 3, 64, 32)
    assert batch.bool_masked_pos.shape == (3, 32) and batch.bool_masked_pos.dtype == torch.bool
    assert set(batch.seg_type.tolist()) <= {0, 1}
    # Background of the painted target is black: the normalised value of pixel 0.
    black = torch.tensor([-m / s for m, s in zip(IMAGENET_MEAN, IMAGENET_STD)])
    assert torch.isclose(batch.tgts.amin(dim=(2, 3)), black[None], atol=1e-5).all()


def test_degraded_prompt_keeps_its_objects_near_where_they_were():
    rng = np.random.default_rng(0)
    ids = np.zeros((64, 64), np.uint8)
    ids[10:30, 20:44] = 1
    ids[40:60, 8:20] = 2
    changed = 0
    for _ in range(50):
        degraded = degrade_prompt(ids, rng)
        assert degraded.shape == ids.shape and set(np.unique(degraded)) == {0, 1, 2}
        for k in (1, 2):
            rows, cols = np.nonzero(degraded == k)
            true_rows, true_cols = np.nonzero(ids == k)
            # Erosion or dilation (3 px), shift (2 px) and a coarser grid (4 px): at most 9 px.
            assert abs(rows.min() - true_rows.min()) <= 9 and abs(cols.max() - true_cols.max()) <= 9
        changed += not np.array_equal(degraded, ids)
    assert changed >= 40  # every step skipped, or no-ops: rare


def test_prompt_noise_degrades_only_prompts_of_whole_query_pairs():
    def batch(noise: float, half: float):
        rng = np.random.default_rng(3)
        return make_batch([SyntheticPairs(32)], [1.0], 6, (8, 4), rng, half, prompt_noise=noise)

    clean, noisy = batch(0.0, 1.0), batch(1.0, 1.0)
    assert torch.equal(clean.imgs, noisy.imgs)
    assert torch.equal(clean.tgts[:, :, 32:], noisy.tgts[:, :, 32:])  # the query: the truth
    assert not torch.equal(clean.tgts[:, :, :32], noisy.tgts[:, :, :32])  # prompts degraded
    # With block masking the prompt half is in the loss: its target stays the truth.
    assert torch.equal(batch(0.0, 0.0).tgts, batch(1.0, 0.0).tgts)


def _write_davis(root, sequences: int = 2, frames: int = 3):
    for s in range(sequences):
        (root / "JPEGImages" / "240p" / f"seq{s}").mkdir(parents=True)
        (root / "Annotations" / "240p" / f"seq{s}").mkdir(parents=True)
        for f in range(frames):
            image = np.full((24, 40, 3), 40 * f, np.uint8)
            mask = np.zeros((24, 40), np.uint8)
            mask[5:15, 10 + f : 20 + f] = 255
            Image.fromarray(image).save(root / "JPEGImages" / "240p" / f"seq{s}" / f"{f:05d}.jpg")
            Image.fromarray(mask).save(root / "Annotations" / "240p" / f"seq{s}" / f"{f:05d}.png")


def test_davis_pairs_read_a_davis_folder(tmp_path):
    _write_davis(tmp_path)
    source = DavisPairs(tmp_path, size=16)
    assert len(source) == 6
    pair = source.sample(np.random.default_rng(0))
    assert pair.prompt_image.shape == (16, 16, 3) and pair.query_ids.shape == (16, 16)
    assert set(np.unique(pair.prompt_ids)) == {0, 1}  # 0/255 masks become object 1


def test_davis_pairs_keep_excluded_sequences_out_and_name_unknown_ones(tmp_path):
    _write_davis(tmp_path, sequences=3)
    source = DavisPairs(tmp_path, size=16, exclude={"seq1"})
    assert len(source.sequences) == 2 and len(source) == 6
    # seq1's frames are the only ones left out: the kept masks are seq0's and seq2's
    with pytest.raises(UserError, match="no sequence named seqX"):
        DavisPairs(tmp_path, size=16, exclude={"seq1", "seqX"})


def test_davis_augmentation_jitters_both_frames_alike_and_keeps_objects_in_the_prompt(tmp_path):
    _write_davis(tmp_path, sequences=1, frames=3)
    plain, augmented = DavisPairs(tmp_path, size=16), DavisPairs(tmp_path, size=16, augment=True)
    rng_a, rng_b = np.random.default_rng(5), np.random.default_rng(5)
    changed = 0
    for _ in range(20):
        a, b = plain.sample(rng_a), augmented.sample(rng_b)
        assert b.prompt_ids.any()  # the prompt crop always shows the object
        changed += not np.array_equal(a.prompt_image, b.prompt_image)
        rng_a, rng_b = (
            np.random.default_rng(rng_a.integers(2**32)),
            np.random.default_rng(rng_b.integers(2**32)),
        )
    assert changed >= 15
    # one frame, same box: the jitter is the same on both images
    twin = DavisPairs(tmp_path, size=16, augment=True)
    twin.sequences = [(twin.sequences[0][0][:1] * 2, twin.sequences[0][1][:1] * 2)]
    same_box = 0
    for seed in range(10):
        pair = twin.sample(np.random.default_rng(seed))
        if np.array_equal(pair.prompt_ids, pair.query_ids):
            same_box += 1
            assert np.abs(pair.prompt_image.astype(int) - pair.query_image.astype(int)).max() <= 1
    assert same_box >= 2


def test_davis_pairs_name_the_folder_when_it_is_not_davis(tmp_path):
    with pytest.raises(UserError, match="JPEGImages"):
        DavisPairs(tmp_path, size=16)


def test_group_positions_are_an_earlier_frame_then_the_frames_just_before_the_query():
    rng = np.random.default_rng(0)
    for _ in range(200):
        query, positions = group_positions(rng, 4, 30)
        assert 1 <= query < 30 and len(positions) == 4
        assert 0 <= positions[0] < query
        recent = positions[1:]
        stride = query - recent[0]
        assert stride in (1, 2) or recent[0] == 0
        assert recent == [max(0, query - stride * k) for k in (1, 2, 3)]


def test_paint_frames_gives_an_object_one_colour_in_every_frame():
    a = np.array([[0, 1], [2, 2]], np.uint8)
    b = np.array([[2, 0], [0, 3]], np.uint8)
    painted = paint_frames([a, b], {}, INSTANCE, np.random.default_rng(0))
    np.testing.assert_array_equal(painted[0][1, 0], painted[1][0, 0])  # object 2
    assert not painted[0][0, 0].any() and not painted[1][0, 1].any()  # background black
    colours = {tuple(painted[0][0, 1]), tuple(painted[0][1, 0]), tuple(painted[1][1, 1])}
    assert len(colours) == 3


def test_group_batch_holds_queries_with_their_prompts_query_major():
    rng = np.random.default_rng(5)
    batch = make_group_batch([SyntheticPairs(32)], [1.0], 7, 3, (8, 4), rng)
    assert batch.prompts == 3 and batch.imgs.shape == (6, 3, 64, 32)  # two queries of three
    queries = batch.imgs[:, :, 32:]
    assert torch.equal(queries[0], queries[2]) and torch.equal(queries[3], queries[5])
    assert not torch.equal(queries[0], queries[3])
    assert torch.equal(batch.tgts[0, :, 32:], batch.tgts[2, :, 32:])  # one painted query
    assert batch.seg_type[0] == batch.seg_type[2] and batch.seg_type[3] == batch.seg_type[5]
    hidden = torch.from_numpy(query_half_mask(8, 4))
    assert all(torch.equal(row, hidden) for row in batch.bool_masked_pos)


def test_group_noise_spares_the_annotated_prompt_and_the_query():
    def batch(noise: float):
        rng = np.random.default_rng(11)
        return make_group_batch([SyntheticPairs(32)], [1.0], 8, 4, (8, 4), rng, noise)

    clean, noisy = batch(0.0), batch(1.0)
    assert torch.equal(clean.imgs, noisy.imgs)
    assert torch.equal(clean.tgts[:, :, 32:], noisy.tgts[:, :, 32:])
    first = slice(None, None, 4)  # the annotated prompt of each query keeps its true mask
    assert torch.equal(clean.tgts[first], noisy.tgts[first])
    assert not torch.equal(clean.tgts[1:4, :, :32], noisy.tgts[1:4, :, :32])


def test_davis_groups_are_frames_of_one_sequence(tmp_path):
    _write_davis(tmp_path, sequences=1, frames=6)
    group = DavisPairs(tmp_path, size=16).sample_group(np.random.default_rng(2), 3)
    assert len(group.prompt_images) == len(group.prompt_ids) == 3
    assert group.query_image.shape == (16, 16, 3) and group.query_ids.shape == (16, 16)
    assert group.prompt_ids[0].any()
