"""Several objects in one clip, made from single-object sequences by copy-paste.

DAVIS 2016 has one object per sequence, so a model trained on it never sees two, a small one or
one that enters late (issue 24). Here the object of one sequence is scaled down and pasted over
another sequence frame by frame, its mask becoming a second object: :func:`make_composite` makes
the benchmark's clips (both objects annotated on frame 0, or the second entering at a third of
the clip and annotated there), :class:`CompositePairs` the training pairs and groups, and
:class:`LateAnnotation` turns any source's groups into ones where an object is first annotated
on a later frame. Hard pastes: an object's mask is exactly where its pixels went.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
from PIL import Image

from seggpt_video.crops import Window, is_small, object_box, window_around
from seggpt_video.errors import UserError
from seggpt_video.training.pairs import (
    Group,
    Pair,
    _crop,
    _random_box,
    _read_downscaled,
    _single_subfolder,
    group_positions,
)

BENCH_SCALES = (0.3, 0.6)
"""Linear size of a pasted object against its own video's, in the benchmark."""
TRAIN_SCALES = (0.15, 0.6)
"""The same in training: down to small objects, a few model pixels at 64x64."""
VARIANTS = ("both", "late")
"""Both objects annotated on frame 0; the second entering at a third of the clip."""
WINDOW_MIN_SIDES = (0.13, 0.27)
"""A training window's least side over the frame's shorter side: the packaged model's 64-pixel
input in a 480p or a 240p frame, the least window the engine's crop pass uses there."""
QUERY_WINDOW_SHIFT = 0.15
"""The query's window is moved by up to this share of its side: the engine places it around
the object's box in the frame before, which the object has since left a little."""


@dataclass
class Sequence:
    """One video: frames (H, W, 3) uint8 and object ids (H, W) uint8 per frame (0 = background)."""

    name: str
    frames: list[np.ndarray]
    ids: list[np.ndarray]

    def __len__(self) -> int:
        return len(self.frames)


def read_sequence(root: Path | str, name: str, resolution: str | None = None) -> Sequence:
    """Sequence ``name`` of a DAVIS-layout folder at its own size (frames with a mask only)."""
    image_root = _single_subfolder(Path(root) / "JPEGImages", resolution)
    folder = image_root / name
    mask_folder = Path(root) / "Annotations" / image_root.name / name
    if not folder.is_dir() or not mask_folder.is_dir():
        raise UserError(f"{root}: no sequence {name!r} (with its annotations)")
    frames, ids = [], []
    for image_path in sorted(folder.glob("*.jpg")):
        mask_path = mask_folder / (image_path.stem + ".png")
        if mask_path.exists():
            frame, labels = _read_downscaled(image_path, mask_path, 1 << 30)
            frames.append(frame)
            ids.append(labels)
    if not frames:
        raise UserError(f"{folder}: no frame with a mask")
    return Sequence(name, frames, ids)


@dataclass(frozen=True)
class Layer:
    """An object pasted over a base video: composite frame t shows ``source`` frame
    ``t - entry + start`` (held at its last frame past the end), scaled by ``scale`` with its
    top-left corner at (top, left) of the composite (pixels; may be negative). Absent before
    ``entry``."""

    source: Sequence
    object_id: int
    scale: float
    top: int
    left: int
    entry: int = 0
    start: int = 0

    def source_index(self, t: int) -> int | None:
        if t < self.entry:
            return None
        return min(t - self.entry + self.start, len(self.source) - 1)


def _scaled_size(shape: tuple[int, ...], scale: float) -> tuple[int, int]:
    """(width, height) of an (H, W, ...) array scaled by ``scale``, at least one pixel each."""
    return max(1, round(shape[1] * scale)), max(1, round(shape[0] * scale))


def _scaled(image: np.ndarray, ids: np.ndarray, scale: float) -> tuple[np.ndarray, np.ndarray]:
    """A frame (H, W, 3) and its object mask (H, W) bool, both scaled by ``scale``."""
    size = _scaled_size(ids.shape, scale)
    pixels = np.asarray(Image.fromarray(image).resize(size, Image.Resampling.BICUBIC))
    return pixels, _scaled_mask(ids, scale)


def _scaled_mask(ids: np.ndarray, scale: float) -> np.ndarray:
    """An object mask (H, W) scaled by ``scale`` (nearest), bool: a few-pixel object can vanish."""
    size = _scaled_size(ids.shape, scale)
    mask = Image.fromarray((ids > 0).astype(np.uint8)).resize(size, Image.Resampling.NEAREST)
    return np.asarray(mask) > 0


def _window(
    shape: tuple[int, int], mask_shape: tuple[int, int], top: int, left: int
) -> tuple[tuple[slice, slice], tuple[slice, slice]] | None:
    """Where a (h, w) mask with its corner at (top, left) meets a (H, W) frame: the frame's
    slices and the mask's, or None when they do not meet."""
    height, width = shape
    y0, x0 = max(top, 0), max(left, 0)
    y1, x1 = min(top + mask_shape[0], height), min(left + mask_shape[1], width)
    if y1 <= y0 or x1 <= x0:
        return None
    return (slice(y0, y1), slice(x0, x1)), (slice(y0 - top, y1 - top), slice(x0 - left, x1 - left))


def paste(
    frame: np.ndarray,
    ids: np.ndarray,
    source_frame: np.ndarray,
    source_ids: np.ndarray,
    scale: float,
    top: int,
    left: int,
    object_id: int,
) -> tuple[np.ndarray, np.ndarray]:
    """The source's object, scaled, pasted over a frame (H, W, 3) with ids (H, W): new copies.

    Whatever falls outside the frame is dropped; the pasted object hides what is under it.
    """
    pixels, mask = _scaled(source_frame, source_ids, scale)
    frame, ids = frame.copy(), ids.copy()
    window = _window(ids.shape, mask.shape, top, left)
    if window is not None:
        inside, part = window
        where = mask[part]
        frame[inside][where] = pixels[part][where]
        ids[inside][where] = object_id
    return frame, ids


def compose(base: Sequence, layers: list[Layer], t: int) -> tuple[np.ndarray, np.ndarray]:
    """Composite frame t: the base frame (H, W, 3) uint8 and ids (H, W) uint8 (its object 1,
    or its own ids), each layer pasted on top in order."""
    frame, ids = base.frames[t], np.where(base.ids[t] > 0, base.ids[t], 0).astype(np.uint8)
    for layer in layers:
        index = layer.source_index(t)
        if index is not None:
            frame, ids = paste(
                frame,
                ids,
                layer.source.frames[index],
                layer.source.ids[index],
                layer.scale,
                layer.top,
                layer.left,
                layer.object_id,
            )
    return frame, ids


def place(
    base_ids: np.ndarray,
    source_ids: np.ndarray,
    scale: float,
    rng: np.random.Generator,
    tries: int = 16,
) -> tuple[int, int]:
    """Where to paste (top, left): the scaled object wholly inside a (H, W) frame, over as little
    of the base's objects as ``tries`` random places find (so that both stay visible)."""
    mask = _scaled_mask(source_ids, scale)
    if not mask.any():
        raise UserError("place: the source frame shows no object to paste")
    rows, cols = np.nonzero(mask)
    y0, y1, x0, x1 = rows.min(), rows.max() + 1, cols.min(), cols.max() + 1
    height, width = base_ids.shape
    best, best_overlap = (0, 0), None
    for _ in range(tries):
        top = int(rng.integers(-y0, max(-y0, height - y1) + 1))
        left = int(rng.integers(-x0, max(-x0, width - x1) + 1))
        window = _window(base_ids.shape, mask.shape, top, left)
        overlap = 0
        if window is not None:
            inside, part = window
            overlap = int(np.count_nonzero(mask[part] & (base_ids[inside] > 0)))
        if best_overlap is None or overlap < best_overlap:
            best, best_overlap = (top, left), overlap
    return best


@dataclass
class Composite:
    """A multi-object clip: frames (T, H, W, 3) uint8, true ids (T, H, W) uint8 (1: the base
    sequence's object, 2: the pasted one) and the annotations a user would give (frame -> ids
    (H, W) of the objects first annotated there)."""

    name: str
    frames: np.ndarray
    labels: np.ndarray
    annotations: dict[int, np.ndarray]
    scale: float
    entry: int = 0
    layers: list[Layer] = field(default_factory=list)


def make_composite(
    base: Sequence,
    pasted: Sequence,
    scale: float,
    variant: str,
    rng: np.random.Generator,
    max_frames: int | None = None,
) -> Composite:
    """``pasted``'s object scaled by ``scale`` over ``base``, from ``pasted``'s frame 0 on.

    variant 'both': it is there from frame 0 and both objects are annotated on frame 0; 'late':
    it enters at a third of the clip (``T // 3``) and is annotated there. T is the base's
    length, at most ``max_frames``.
    """
    if variant not in VARIANTS:
        raise UserError(f"variant {variant!r}: expected {' or '.join(VARIANTS)}")
    length = len(base) if max_frames is None else min(len(base), max_frames)
    if length < 4:
        raise UserError(f"{base.name}: {length} frames; a composite needs 4 or more")
    entry = length // 3 if variant == "late" else 0
    top, left = place(base.ids[entry], pasted.ids[0], scale, rng)
    layer = Layer(pasted, 2, scale, top, left, entry=entry)
    frames, labels = zip(*(compose(base, [layer], t) for t in range(length)))
    labels = np.stack(labels)
    if variant == "both":
        annotations = {0: labels[0]}
    else:
        annotations = {
            0: np.where(labels[0] == 1, 1, 0).astype(np.uint8),
            entry: np.where(labels[entry] == 2, 2, 0).astype(np.uint8),
        }
    name = f"{base.name}+{pasted.name}-{variant}"
    return Composite(name, np.stack(frames), labels, annotations, scale, entry, [layer])


def benchmark_pairs(names: list[str], count: int, seed: int = 0) -> list[tuple[str, str, float]]:
    """A fixed list of ``count`` (base, pasted, scale) from ``names``: distinct ordered pairs in
    a seeded order, scales uniform in BENCH_SCALES."""
    if len(names) < 2:
        raise UserError(f"composites need two or more sequences, got {len(names)}")
    rng = np.random.default_rng(seed)
    ordered = [(a, b) for a in sorted(names) for b in sorted(names) if a != b]
    chosen = [ordered[i] for i in rng.permutation(len(ordered))[:count]]
    return [(a, b, round(float(rng.uniform(*BENCH_SCALES)), 3)) for a, b in chosen]


# -- training samples -----------------------------------------------------------------------------
class CompositePairs:
    """Training pairs and groups of DAVIS sequences with 1-2 objects of other sequences pasted
    over them (scale log-uniform in TRAIN_SCALES), each object its own id and class, so each gets
    its own colour. ``late_share`` of the groups have a pasted object enter between the annotated
    frame and the query, annotated on its entry frame (see :meth:`sample_group`).

    ``window_share`` of the samples are cut as the engine's crop pass sees a small object (see
    :func:`object_windows`).

    sequences: (frames, ids) lists as :class:`~seggpt_video.training.pairs.DavisPairs` holds them.
    """

    name = "composites"

    def __init__(
        self,
        sequences: list[tuple[list[np.ndarray], list[np.ndarray]]],
        size: int,
        max_gap: int = 40,
        late_share: float = 0.0,
        scales: tuple[float, float] = TRAIN_SCALES,
        max_pasted: int = 2,
        window_share: float = 0.0,
    ) -> None:
        if len(sequences) < 2:
            raise UserError(f"composites need two or more sequences, got {len(sequences)}")
        self.sequences = [Sequence(str(i), list(f), list(m)) for i, (f, m) in enumerate(sequences)]
        self.size = size
        self.max_gap = max_gap
        self.late_share = late_share
        self.scales = scales
        self.max_pasted = max_pasted
        self.window_share = window_share

    def layers(
        self, rng: np.random.Generator, base: int, span: tuple[int, int], entry: int
    ) -> list[Layer]:
        """1-``max_pasted`` objects of other sequences, shown over base frames ``span`` (first,
        last) from ``entry`` on, placed on base frame ``max(entry, first)``."""
        others = [i for i in range(len(self.sequences)) if i != base]
        count = int(rng.integers(1, min(self.max_pasted, len(others)) + 1))
        layers = []
        first, last = max(entry, span[0]), span[1]
        low, high = np.log(self.scales[0]), np.log(self.scales[1])
        for k, index in enumerate(rng.choice(others, size=count, replace=False)):
            source = self.sequences[int(index)]
            shown = [i for i in range(len(source)) if source.ids[i].any()]
            if not shown:
                continue
            # The source frame at ``first`` shows its object; later ones follow it (or hold).
            start = int(rng.choice(shown[: max(1, len(shown) - (last - first))]))
            scale = float(np.exp(rng.uniform(low, high)))
            if not _scaled_mask(source.ids[start], scale).any():
                continue  # a few-pixel object vanishes at this scale (DAVIS has such frames)
            _, placed_on = compose(self.sequences[base], layers, first)
            top, left = place(placed_on, source.ids[start], scale, rng)
            layers.append(Layer(source, k + 2, scale, top, left, entry=entry, start=start))
        return layers

    def _frames(self, base: int, layers: list[Layer], indices: list[int], rng) -> tuple:
        """The composite frames ``indices``, cropped by one random box showing most objects, or
        (``window_share`` of them) by windows around one small object (:meth:`_windowed`)."""
        composed = [compose(self.sequences[base], layers, t) for t in indices]
        # Drawn only when asked for, so that the batches of earlier recipes stay as they were.
        if self.window_share > 0 and rng.random() < self.window_share:
            windowed = self._windowed(composed, rng)
            if windowed is not None:
                return windowed
        first_ids = composed[0][1]
        wanted = len(np.unique(first_ids[first_ids > 0]))
        box = _random_box(first_ids.shape, rng)
        for _ in range(10):  # a crop that keeps every object of the first frame, when one does
            top, left, height, width = box
            inside = first_ids[top : top + height, left : left + width]
            if len(np.unique(inside[inside > 0])) == wanted:
                break
            box = _random_box(first_ids.shape, rng)
        flip = rng.random() < 0.5
        crops = [_crop(frame, ids, box, self.size, flip) for frame, ids in composed]
        return [c[0] for c in crops], [c[1] for c in crops]

    def _windowed(self, composed: list[tuple[np.ndarray, np.ndarray]], rng) -> tuple | None:
        """Composite frames cut as the crop pass sees a small object (object_windows), that
        object alone; None when the first frame has no small object. The crop pass's prompts
        all show the object, so a prompt frame without it is the annotated frame once more."""
        windowed = object_windows([ids for _, ids in composed], rng)
        if windowed is None:
            return None
        object_id, windows = windowed
        flip = rng.random() < 0.5
        shown = [k if (ids == object_id).any() else 0 for k, (_, ids) in enumerate(composed)]
        shown[-1] = len(composed) - 1  # the query stays, shown or not
        crops = []
        for k in shown:
            frame, ids = composed[k]
            alone = np.where(ids == object_id, object_id, 0).astype(np.uint8)
            crops.append(_crop(frame, alone, windows[k], self.size, flip))
        return [c[0] for c in crops], [c[1] for c in crops]

    def sample(self, rng: np.random.Generator) -> Pair:
        """Two frames (at most ``max_gap`` apart) of one composite, every object on both."""
        while True:
            base = int(rng.integers(len(self.sequences)))
            length = len(self.sequences[base])
            first = int(rng.integers(length))
            second = int(
                rng.integers(max(0, first - self.max_gap), min(length, first + self.max_gap + 1))
            )
            span = (min(first, second), max(first, second))
            layers = self.layers(rng, base, span, entry=span[0])
            images, ids = self._frames(base, layers, [first, second], rng)
            if ids[0].any():
                break
        return Pair(images[0], ids[0], images[1], ids[1], _own_classes(ids))

    def sample_group(self, rng: np.random.Generator, prompts: int) -> Group:
        """A query and ``prompts`` prompts of one composite, as the engine prompts a frame.

        With probability ``late_share`` (and two prompts or more) the pasted objects enter at a
        frame ``e`` between the annotated frame ``a`` and the query: the prompts are ``e`` (where
        they are annotated), ``a`` and the frames just before the query, those before ``e``
        without them, as the engine's memory is after ``--mask a:... --mask e:...``.
        """
        while True:
            base = int(rng.integers(len(self.sequences)))
            length = min(len(self.sequences[base]), self.max_gap + 1)
            offset = int(rng.integers(len(self.sequences[base]) - length + 1))
            late = prompts >= 2 and rng.random() < self.late_share
            query, positions = group_positions(rng, prompts - 1 if late else prompts, length)
            query, positions = query + offset, [p + offset for p in positions]
            entry = positions[0]
            if late:
                if query - 1 <= positions[0]:
                    continue  # no frame between the annotated one and the query: draw again
                entry = int(rng.integers(positions[0] + 1, query))
                positions = [entry, *positions]
            indices = [*positions, query]
            layers = self.layers(rng, base, (min(indices), max(indices)), entry)
            images, ids = self._frames(base, layers, indices, rng)
            if ids[0].any():
                break
        return Group(images[:-1], ids[:-1], images[-1], ids[-1], _own_classes(ids))


def object_windows(
    ids: list[np.ndarray], rng: np.random.Generator
) -> tuple[int, list[tuple[int, int, int, int]]] | None:
    """A small object of the first frame's ids and a crop box (top, left, side, side) per frame,
    as the engine's crop pass (seggpt_video.crops) cuts prompts and query: each prompt's window
    around the object's box in its frame (the last window where it is absent), the query's
    (the last frame) around its box moved a little. None when no object of the first frame is
    under the crop pass's area.

    The least side is drawn in WINDOW_MIN_SIDES: the model's input in frame pixels at 240p-480p.
    """
    first = ids[0]
    small = [int(i) for i in np.unique(first) if i and is_small(first, int(i))]
    if not small:
        return None
    object_id = int(rng.choice(small))
    least = max(1, round(rng.uniform(*WINDOW_MIN_SIDES) * min(first.shape)))
    windows: list[Window] = []
    for k, frame_ids in enumerate(ids):
        box = object_box(frame_ids == object_id)
        if box is None:
            windows.append(windows[-1])
            continue
        window = window_around(box, frame_ids.shape, least)
        if k == len(ids) - 1:
            window = _shifted(window, frame_ids.shape, rng)
        windows.append(window)
    return object_id, [(w.top, w.left, w.side, w.side) for w in windows]


def _shifted(window: Window, shape: tuple[int, int], rng: np.random.Generator) -> Window:
    """The window moved by up to QUERY_WINDOW_SHIFT of its side each way, kept in the frame."""
    dy, dx = (rng.uniform(-QUERY_WINDOW_SHIFT, QUERY_WINDOW_SHIFT, size=2) * window.side).round()
    top = int(np.clip(window.top + dy, 0, shape[0] - window.side))
    left = int(np.clip(window.left + dx, 0, shape[1] - window.side))
    return Window(top, left, window.side)


def _own_classes(ids: list[np.ndarray]) -> dict[int, int]:
    """Every object its own class: semantic colouring then also gives each its own colour."""
    present = set().union(*(np.unique(frame_ids).tolist() for frame_ids in ids)) - {0}
    return {int(i): int(i) for i in present}


class LateAnnotation:
    """Another source's groups where, with probability ``share``, one object of two or more is
    first annotated on the nearest prompt: left out of the first prompt's mask (visible but not
    annotated there) and of a random number of the older recent prompts (predicted before its
    annotation). The engine's memory after ``--mask 0:a.png --mask 10:b.png``: frame 0's prompt
    and the predictions before frame 10 paint b as background, only frame 10's shows it."""

    def __init__(self, source, share: float) -> None:
        self.source = source
        self.share = share
        self.name = f"{source.name}+late"

    def sample(self, rng: np.random.Generator) -> Pair:
        return self.source.sample(rng)

    def sample_group(self, rng: np.random.Generator, prompts: int) -> Group:
        group = self.source.sample_group(rng, prompts)
        objects = [int(i) for i in np.unique(group.prompt_ids[0]) if i]
        if prompts < 2 or len(objects) < 2 or rng.random() >= self.share:
            return group
        hidden = int(rng.choice(objects))
        if not (group.prompt_ids[1] == hidden).any():  # the nearest prompt must show it
            return group
        older = int(rng.integers(0, prompts - 1))  # recent prompts 2.. are nearest first
        unannotated = set(range(prompts - older, prompts)) | {0}
        ids = [
            np.where(frame_ids == hidden, 0, frame_ids).astype(np.uint8)
            if k in unannotated
            else frame_ids
            for k, frame_ids in enumerate(group.prompt_ids)
        ]
        return replace(group, prompt_ids=ids)
