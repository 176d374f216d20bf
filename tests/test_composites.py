"""Multi-object composites (training.composites): pastes, scales, late entries, training samples.

Sequences are tiny and made here: a flat grey frame with a red box moving right (the base), and a
black frame with a blue disc (the pasted object), so every pasted pixel is told apart by colour.
"""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from seggpt_video.crops import WINDOW_PER_OBJECT
from seggpt_video.errors import UserError
from seggpt_video.training.coloring import TrainConfig, build_sources
from seggpt_video.training.composites import (
    BENCH_SCALES,
    QUERY_WINDOW_SHIFT,
    TRAIN_SCALES,
    CompositePairs,
    LateAnnotation,
    Sequence,
    benchmark_pairs,
    compose,
    make_composite,
    object_windows,
    paste,
    read_sequence,
)
from seggpt_video.training.pairs import INSTANCE, SEMANTIC, DavisPairs, paint_frames

HEIGHT, WIDTH = 60, 80


def base_sequence(frames: int = 12, name: str = "base") -> Sequence:
    images, ids = [], []
    for t in range(frames):
        image = np.full((HEIGHT, WIDTH, 3), 100, np.uint8)
        mask = np.zeros((HEIGHT, WIDTH), np.uint8)
        mask[10:30, 5 + t : 25 + t] = 1
        image[mask > 0] = (200, 0, 0)
        images.append(image)
        ids.append(mask)
    return Sequence(name, images, ids)


def disc_sequence(frames: int = 12, name: str = "disc") -> Sequence:
    images, ids = [], []
    y, x = np.mgrid[0:HEIGHT, 0:WIDTH]
    for t in range(frames):
        mask = ((y - 30) ** 2 + (x - 30 - t) ** 2 <= 15**2).astype(np.uint8)
        image = np.zeros((HEIGHT, WIDTH, 3), np.uint8)
        image[mask > 0] = (0, 0, 255)
        images.append(image)
        ids.append(mask)
    return Sequence(name, images, ids)


def test_pasted_mask_is_exactly_where_its_pixels_went():
    base, disc = base_sequence(), disc_sequence()
    frame, ids = paste(base.frames[0], base.ids[0], disc.frames[0], disc.ids[0], 0.5, 20, 30, 2)
    # The disc's red channel is 0 and the base's never is: a changed pixel is a pasted one.
    changed = (frame != base.frames[0]).any(axis=-1)
    assert changed.any()
    assert np.array_equal(changed, ids == 2)
    assert (frame[ids == 2, 0] == 0).all()
    # The base object keeps every pixel the disc does not cover.
    assert np.array_equal(ids == 1, (base.ids[0] == 1) & (ids != 2))


def test_paste_drops_what_falls_outside_the_frame():
    base, disc = base_sequence(), disc_sequence()
    _, inside = paste(base.frames[0], base.ids[0], disc.frames[0], disc.ids[0], 0.5, 0, 0, 2)
    _, cut = paste(base.frames[0], base.ids[0], disc.frames[0], disc.ids[0], 0.5, -15, -15, 2)
    assert 0 < (cut == 2).sum() < (inside == 2).sum()


@pytest.mark.parametrize("scale", [0.3, 0.6])
def test_pasted_object_is_scaled_by_the_scale(scale):
    base, disc = base_sequence(), disc_sequence()
    clip = make_composite(base, disc, scale, "both", np.random.default_rng(0))
    ratio = (clip.labels[0] == 2).sum() / (disc.ids[0] > 0).sum()
    assert ratio == pytest.approx(scale**2, rel=0.15)


def test_benchmark_pairs_are_fixed_distinct_and_scaled_in_range():
    names = ["a", "b", "c", "d"]
    pairs = benchmark_pairs(names, 6, seed=3)
    assert pairs == benchmark_pairs(names, 6, seed=3)
    assert pairs != benchmark_pairs(names, 6, seed=4)
    assert len(set(pairs)) == 6 and all(base != pasted for base, pasted, _ in pairs)
    assert all(BENCH_SCALES[0] <= scale <= BENCH_SCALES[1] for *_, scale in pairs)


def test_late_entry_is_annotated_on_its_entry_frame_and_absent_before():
    base, disc = base_sequence(frames=12), disc_sequence()
    clip = make_composite(base, disc, 0.5, "late", np.random.default_rng(1))
    assert clip.entry == 4  # a third of 12 frames
    assert sorted(clip.annotations) == [0, 4]
    assert set(np.unique(clip.annotations[0])) == {0, 1}
    assert np.array_equal(clip.annotations[4], np.where(clip.labels[4] == 2, 2, 0))
    assert not (clip.labels[:4] == 2).any()
    assert all((clip.labels[t] == 2).any() for t in range(4, 12))
    assert np.array_equal(clip.frames[:4], np.stack(base.frames[:4]))


def test_both_variant_annotates_both_objects_on_frame_zero():
    clip = make_composite(base_sequence(), disc_sequence(), 0.4, "both", np.random.default_rng(2))
    assert list(clip.annotations) == [0]
    assert set(np.unique(clip.annotations[0])) == {0, 1, 2}


def test_bad_variant_and_too_few_sequences_are_one_line_errors():
    with pytest.raises(UserError, match="variant 'middle'"):
        make_composite(base_sequence(), disc_sequence(), 0.4, "middle", np.random.default_rng(0))
    with pytest.raises(UserError, match="two or more sequences"):
        CompositePairs([(base_sequence().frames, base_sequence().ids)], 16)


def _sources() -> list[tuple[list[np.ndarray], list[np.ndarray]]]:
    return [(s.frames, s.ids) for s in (base_sequence(), disc_sequence(), base_sequence(name="b"))]


def test_training_layers_are_scaled_within_the_training_range_and_shown_where_placed():
    source = CompositePairs(_sources(), 32)
    rng = np.random.default_rng(0)
    scales = []
    for _ in range(30):
        for layer in source.layers(rng, 0, (2, 6), entry=2):
            scales.append(layer.scale)
            assert layer.source_index(1) is None and layer.source_index(2) == layer.start
            assert layer.source.ids[layer.start].any()
    assert all(TRAIN_SCALES[0] <= s <= TRAIN_SCALES[1] for s in scales)
    assert min(scales) < 0.25  # reaches small objects


def _colours(painted: np.ndarray, ids: np.ndarray) -> dict[int, tuple]:
    out = {}
    for object_id in np.unique(ids[ids > 0]):
        colours = {tuple(c) for c in painted[ids == object_id]}
        assert len(colours) == 1
        out[int(object_id)] = colours.pop()
    return out


@pytest.mark.parametrize("seg_type", [INSTANCE, SEMANTIC])
def test_sampler_yields_multi_object_samples_with_a_distinct_colour_per_instance(seg_type):
    source, rng = CompositePairs(_sources(), 32), np.random.default_rng(5)
    several = 0
    for _ in range(20):
        pair = source.sample(rng)
        prompt, query = paint_frames([pair.prompt_ids, pair.query_ids], pair.classes, seg_type, rng)
        colours = _colours(prompt, pair.prompt_ids)
        several += len(colours) >= 2
        assert len(set(colours.values())) == len(colours)  # one colour per instance
        for object_id, colour in _colours(query, pair.query_ids).items():
            assert colours.get(object_id, colour) == colour  # the same object, the same colour
    assert several >= 15


def test_late_groups_annotate_the_entering_object_first_and_lack_it_on_the_earlier_frame():
    source, rng = CompositePairs(_sources(), 32, late_share=1.0), np.random.default_rng(6)
    for _ in range(10):
        group = source.sample_group(rng, prompts=3)
        entered, earlier = (set(np.unique(ids)) - {0} for ids in group.prompt_ids[:2])
        assert len(group.prompt_ids) == 3
        assert 1 in earlier and not earlier - {1}  # the earlier frame: the base object only
        assert entered - {1}  # the entry frame shows pasted objects


def test_late_annotation_hides_one_object_until_the_nearest_prompt_annotates_it():
    source = LateAnnotation(CompositePairs(_sources(), 32), share=1.0)
    rng, late, older_hidden = np.random.default_rng(7), 0, 0
    for _ in range(30):
        group = source.sample_group(rng, prompts=4)
        shown = [set(np.unique(ids)) - {0} for ids in group.prompt_ids]
        for hidden in shown[1] - shown[0]:
            late += 1
            # Hidden from the older recent prompts (predicted before it was annotated) or not.
            older_hidden += hidden not in shown[3]
            assert hidden not in shown[3] or hidden in shown[2]  # older ones hidden first
    assert late >= 15 and 0 < older_hidden < late


def _write_davis(root, sequences: int = 3) -> None:
    for s, sequence in enumerate(
        [base_sequence(6), disc_sequence(6), base_sequence(6)][:sequences]
    ):
        images = root / "JPEGImages" / "240p" / f"seq{s}"
        masks = root / "Annotations" / "240p" / f"seq{s}"
        images.mkdir(parents=True)
        masks.mkdir(parents=True)
        for f, (image, ids) in enumerate(zip(sequence.frames, sequence.ids)):
            Image.fromarray(image).save(images / f"{f:05d}.jpg")
            Image.fromarray(ids * 255).save(masks / f"{f:05d}.png")


def test_train_options_split_the_davis_weight_between_single_and_multi_object(tmp_path):
    _write_davis(tmp_path)
    config = TrainConfig(davis=[str(tmp_path)], davis_weight=0.4, davis_composites=0.25)
    sources, weights = build_sources(config, 16)
    names = [s.name for s in sources]
    assert names == ["synthetic", "davis", "composites+late"]
    assert weights == pytest.approx([1.0, 0.3, 0.1])
    assert isinstance(sources[1], DavisPairs)  # single-object DAVIS stays in the mix
    with pytest.raises(UserError, match="davis_composites 1.5"):
        build_sources(TrainConfig(davis=[str(tmp_path)], davis_composites=1.5), 16)
    config = TrainConfig(davis=[str(tmp_path)], davis_composites=0.5, object_windows=0.5)
    assert build_sources(config, 16)[0][2].source.window_share == 0.5
    with pytest.raises(UserError, match="object_windows -0.5"):
        build_sources(TrainConfig(davis=[str(tmp_path)], object_windows=-0.5), 16)


def test_read_sequence_reads_a_davis_sequence_at_its_size(tmp_path):
    _write_davis(tmp_path)
    sequence = read_sequence(tmp_path, "seq1")
    assert len(sequence) == 6 and sequence.frames[0].shape == (HEIGHT, WIDTH, 3)
    assert set(np.unique(sequence.ids[0])) == {0, 1}
    with pytest.raises(UserError, match="no sequence 'seq9'"):
        read_sequence(tmp_path, "seq9")


def test_an_object_too_small_for_its_scale_is_left_out_not_an_error():
    """DAVIS train has frames whose object is a few pixels: at a small scale it can vanish (a
    training run crashed there at step 647 of seed 1)."""
    speck = base_sequence(name="speck")
    for mask in speck.ids:
        mask[:] = 0
        mask[41, 41] = 1  # one pixel: most scales below 0.5 lose it
    source = CompositePairs(
        [(base_sequence().frames, base_sequence().ids), (speck.frames, speck.ids)], 32
    )
    rng = np.random.default_rng(0)
    pasted = 0
    for _ in range(40):
        for layer in source.layers(rng, 0, (2, 6), entry=2):  # no error: left out, or shown
            _, ids = compose(source.sequences[0], [layer], 2)
            assert (ids == layer.object_id).any()
            pasted += 1
    assert pasted < 40  # it was left out at least once
    for _ in range(10):
        source.sample(rng)


def _square_ids(rows: list[int], cols: list[int], side: int = 10) -> list[np.ndarray]:
    """Frames of 120x160 ids: object 1 a large block (not small), object 2 a side x side square
    at (rows[k], cols[k]) in frame k, or absent where rows[k] is None."""
    out = []
    for row, col in zip(rows, cols):
        ids = np.zeros((120, 160), np.uint8)
        ids[:60, 100:] = 1  # 18.75 % of the frame: no crop pass for it
        if row is not None:
            ids[row : row + side, col : col + side] = 2
        out.append(ids)
    return out


def test_object_windows_cut_prompts_around_the_small_object_and_move_the_query_a_little():
    ids = _square_ids([70, None, 80, 90], [10, 0, 30, 50], side=30)
    for seed in range(20):
        object_id, boxes = object_windows(ids, np.random.default_rng(seed))
        assert object_id == 2  # the only object under the crop pass's area
        side = int(WINDOW_PER_OBJECT * 30)
        assert all(b[2] == b[3] == side for b in boxes)
        # prompts: centred on the square in their frame (moved inside it); absent: the last one
        assert boxes[0] == (55, 0, 60, 60) and boxes[1] == boxes[0]
        assert boxes[2] == (60, 15, 60, 60)
        top, left = boxes[3][:2]
        assert abs(top - 60) <= QUERY_WINDOW_SHIFT * side and top + side <= 120
        assert abs(left - 35) <= QUERY_WINDOW_SHIFT * side + 1
    assert object_windows(_square_ids([None], [0]), np.random.default_rng(0)) is None


def test_windowed_samples_show_one_object_in_every_prompt():
    source = CompositePairs(_sources(), 32, window_share=1.0)
    plain = CompositePairs(_sources(), 32)
    rng = np.random.default_rng(0)
    windowed = 0
    for _ in range(20):
        group = source.sample_group(rng, 3)
        objects = [set(np.unique(ids).tolist()) - {0} for ids in group.prompt_ids]
        if len(set().union(*objects)) == 1:
            windowed += 1
            assert all(objects)  # the crop pass's prompts all show their object
    assert windowed >= 10
    # window_share 0 draws nothing more: the batches of earlier recipes are unchanged
    a, b = np.random.default_rng(3), np.random.default_rng(3)
    first = CompositePairs(_sources(), 32, window_share=0.0).sample_group(a, 3)
    second = plain.sample_group(b, 3)
    assert all(np.array_equal(x, y) for x, y in zip(first.prompt_ids, second.prompt_ids))
