"""Training pairs for in-context coloring: two views of the same objects, coloured at random.

A pair source yields a prompt and a query (images and object ids) showing the same objects:
two frames of one synthetic clip (:class:`SyntheticPairs`) or of one DAVIS sequence
(:class:`DavisPairs`). :func:`make_batch` paints both masks with colours drawn afresh for every
pair (the same object or class gets the same colour in prompt and query), stacks prompt over
query, normalises, and picks which target patches are hidden behind the mask token.
A source also yields a :class:`Group`: one query with the prompts a video engine gives it (an
early annotated frame and the frames just before the query), which :func:`make_group_batch`
turns into a feature-ensemble batch.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from seggpt_video.errors import UserError
from seggpt_video.objects import object_colours
from seggpt_video.predictor import IMAGENET_MEAN, IMAGENET_STD
from seggpt_video.training.synthetic import Scene, random_scene, render

SEMANTIC, INSTANCE = 0, 1


@dataclass
class Pair:
    """Prompt and query, each an image (S, S, 3) uint8 and object ids (S, S) uint8 (0 = background).

    ``classes`` maps an object id to its class, used by semantic colouring (one colour per class).
    """

    prompt_image: np.ndarray
    prompt_ids: np.ndarray
    query_image: np.ndarray
    query_ids: np.ndarray
    classes: dict[int, int] = field(default_factory=dict)


@dataclass
class Group:
    """A query and its prompts as in a video: ``prompt_images[0]`` an earlier "annotated" frame,
    the others the frames just before the query, nearest first. Arrays as in :class:`Pair`.
    """

    prompt_images: list[np.ndarray]
    prompt_ids: list[np.ndarray]
    query_image: np.ndarray
    query_ids: np.ndarray
    classes: dict[int, int] = field(default_factory=dict)


def group_positions(rng: np.random.Generator, prompts: int, length: int) -> tuple[int, list[int]]:
    """Frame indices for a group in a clip of ``length`` frames: the query, then its prompts.

    The first prompt is frame 0 or any frame before the query (the annotated one); the others are
    the ``prompts - 1`` frames just before the query, 1-2 frames apart (the engine's recent memory;
    near the start of a clip they repeat frame 0, as the engine's memory is then short).
    """
    query = int(rng.integers(1, length))
    stride = int(rng.integers(1, 3))
    recent = [max(0, query - stride * k) for k in range(1, prompts)]
    annotated = 0 if rng.random() < 0.5 else int(rng.integers(0, query))
    return query, [annotated, *recent]


class SyntheticPairs:
    """Pairs of frames of random synthetic clips (see :mod:`synthetic`), size x size pixels."""

    name = "synthetic"

    def __init__(self, size: int, max_objects: int = 4) -> None:
        self.size = size
        self.max_objects = max_objects

    def sample(self, rng: np.random.Generator) -> Pair:
        num_objects = int(rng.integers(1, self.max_objects + 1))
        while True:
            scene = self._scene(rng, num_objects)
            t0, t1 = rng.uniform(0, 1, size=2)
            gap = rng.random()
            if gap < 0.2:  # the same moment (new sensor noise): teaches copying early on
                t1 = t0
            elif gap < 0.6:  # nearby frames, as the engine's memory of recent predictions
                t1 = float(np.clip(t0 + rng.normal(0, 0.05), 0, 1))
            prompt_image, prompt_ids = render(scene, t0, self.size, self.size, rng)
            if prompt_ids.any():
                break
        query_image, query_ids = render(scene, t1, self.size, self.size, rng)
        classes = {k + 1: obj.shape_class for k, obj in enumerate(scene.objects)}
        return Pair(prompt_image, prompt_ids, query_image, query_ids, classes)

    def sample_group(self, rng: np.random.Generator, prompts: int) -> Group:
        """A query and ``prompts`` prompts from one clip of 20-60 frames (see group_positions)."""
        num_objects = int(rng.integers(1, self.max_objects + 1))
        length = int(rng.integers(20, 61))
        while True:
            scene = self._scene(rng, num_objects)
            query, positions = group_positions(rng, prompts, length)
            frames = [
                render(scene, i / (length - 1), self.size, self.size, rng)
                for i in [*positions, query]
            ]
            if frames[0][1].any():
                break
        images, ids = [f[0] for f in frames], [f[1] for f in frames]
        classes = {k + 1: obj.shape_class for k, obj in enumerate(scene.objects)}
        return Group(images[:-1], ids[:-1], images[-1], ids[-1], classes)

    @staticmethod
    def _scene(rng: np.random.Generator, num_objects: int) -> Scene:
        return random_scene(rng, num_objects, motion=float(rng.uniform(0.3, 1.3)))


class DavisPairs:
    """Pairs of frames (at most ``max_gap`` apart) of one sequence of a DAVIS-layout folder.

    Reads ``JPEGImages/<res>/<seq>/*.jpg`` and ``Annotations/<res>/<seq>/*.png`` (0/255 or palette
    ids), all held in memory, downscaled so the short side is ``2 * size`` at most. ``exclude``
    names sequences kept out (a validation split of one's own). ``augment`` adds what 30 real
    sequences lack: colour jitter shared by both frames (another camera, the same scene) and a
    query crop box moved and scaled against the prompt's (more motion than the sequences show).
    """

    name = "davis"

    def __init__(
        self,
        root: Path | str,
        size: int,
        resolution: str | None = None,
        max_gap: int = 40,
        exclude: frozenset[str] | set[str] = frozenset(),
        augment: bool = False,
    ) -> None:
        root = Path(root)
        self.size = size
        self.max_gap = max_gap
        self.augment = augment
        image_root = _single_subfolder(root / "JPEGImages", resolution)
        mask_root = root / "Annotations" / image_root.name
        if not mask_root.is_dir():
            raise UserError(f"{mask_root}: no annotation folder matching {image_root}")
        self.sequences: list[tuple[list[np.ndarray], list[np.ndarray]]] = []
        for sequence in sorted(p for p in image_root.iterdir() if p.is_dir()):
            if sequence.name in exclude:
                continue
            frames, masks = [], []
            for image_path in sorted(sequence.glob("*.jpg")):
                mask_path = mask_root / sequence.name / (image_path.stem + ".png")
                if not mask_path.exists():
                    continue
                frame, ids = _read_downscaled(image_path, mask_path, 2 * size)
                frames.append(frame)
                masks.append(ids)
            if len(frames) >= 2:
                self.sequences.append((frames, masks))
        unknown = set(exclude) - {p.name for p in image_root.iterdir()}
        if unknown:
            raise UserError(f"{root}: no sequence named {', '.join(sorted(unknown))} to exclude")
        if not self.sequences:
            raise UserError(f"{root}: no sequence with two or more annotated frames")

    def __len__(self) -> int:
        return sum(len(frames) for frames, _ in self.sequences)

    def sample(self, rng: np.random.Generator) -> Pair:
        while True:
            frames, masks = self.sequences[rng.integers(len(self.sequences))]
            first = int(rng.integers(len(frames)))
            low, high = max(0, first - self.max_gap), min(len(frames), first + self.max_gap + 1)
            second = int(rng.integers(low, high))
            if masks[first].any():
                break
        # One crop box for both frames: at inference both are whole frames of one camera.
        box = _random_box(masks[first].shape, rng)
        for _ in range(10 if self.augment else 0):  # a prompt crop that shows the object
            top, left, crop_h, crop_w = box
            if masks[first][top : top + crop_h, left : left + crop_w].any():
                break
            box = _random_box(masks[first].shape, rng)
        flip = rng.random() < 0.5
        query_box = _moved_box(box, masks[first].shape, rng) if self.augment else box
        prompt_image, prompt_ids = _crop(frames[first], masks[first], box, self.size, flip)
        query_image, query_ids = _crop(frames[second], masks[second], query_box, self.size, flip)
        if self.augment:
            prompt_image, query_image = _jitter_colours([prompt_image, query_image], rng)
        # One object per DAVIS 2016 sequence; in DAVIS 2017 each id is its own class.
        classes = {int(i): int(i) for i in np.unique(prompt_ids) if i}
        return Pair(prompt_image, prompt_ids, query_image, query_ids, classes)

    def sample_group(self, rng: np.random.Generator, prompts: int) -> Group:
        """A query and ``prompts`` prompts of one sequence (see group_positions)."""
        while True:
            frames, masks = self.sequences[rng.integers(len(self.sequences))]
            length = min(len(frames), self.max_gap + 1)
            offset = int(rng.integers(len(frames) - length + 1))
            query, positions = group_positions(rng, prompts, length)
            query, positions = query + offset, [p + offset for p in positions]
            if masks[positions[0]].any():
                break
        box = _random_box(masks[positions[0]].shape, rng)
        flip = rng.random() < 0.5
        crops = [_crop(frames[i], masks[i], box, self.size, flip) for i in [*positions, query]]
        classes = {int(i): int(i) for i in np.unique(masks[positions[0]]) if i}
        images, ids = [c[0] for c in crops], [c[1] for c in crops]
        return Group(images[:-1], ids[:-1], images[-1], ids[-1], classes)


def _single_subfolder(folder: Path, name: str | None) -> Path:
    """``folder/name``, or the only resolution folder inside ``folder`` when name is None."""
    if not folder.is_dir():
        raise UserError(f"{folder}: not found (expected a DAVIS layout: JPEGImages/<resolution>/)")
    if name is not None:
        return folder / name
    choices = sorted(p for p in folder.iterdir() if p.is_dir())
    if len(choices) != 1:
        names = ", ".join(p.name for p in choices) or "none"
        raise UserError(f"{folder}: expected one resolution folder, found {names}")
    return choices[0]


def _read_downscaled(image_path: Path, mask_path: Path, short_side: int) -> tuple[np.ndarray, ...]:
    """Frame (H, W, 3) uint8 and ids (H, W) uint8, the short side at most ``short_side``."""
    try:
        image = Image.open(image_path).convert("RGB")
        mask = Image.open(mask_path)
        mask.load()
    except OSError as error:
        raise UserError(f"{image_path}: unreadable ({error})") from None
    ids = np.asarray(mask)
    if ids.ndim == 3:
        ids = ids[..., 0]
    if mask.mode != "P":
        ids = (ids > 127).astype(np.uint8)  # DAVIS 2016: 0/255 grayscale
    scale = short_side / min(image.size)
    if scale < 1:
        size = (round(image.width * scale), round(image.height * scale))
        image = image.resize(size, Image.Resampling.BICUBIC)
        ids = np.asarray(Image.fromarray(ids).resize(size, Image.Resampling.NEAREST))
    return np.asarray(image), np.ascontiguousarray(ids)


def _random_box(shape: tuple[int, int], rng: np.random.Generator) -> tuple[int, int, int, int]:
    """A random crop box (top, left, height, width), 50-100% of each side of a (H, W) frame."""
    height, width = shape
    crop_h = int(height * rng.uniform(0.5, 1.0))
    crop_w = int(width * rng.uniform(0.5, 1.0))
    top = int(rng.integers(0, height - crop_h + 1))
    left = int(rng.integers(0, width - crop_w + 1))
    return top, left, crop_h, crop_w


def _moved_box(
    box: tuple[int, int, int, int], shape: tuple[int, int], rng: np.random.Generator
) -> tuple[int, int, int, int]:
    """Half the time the same box; otherwise moved by up to 10% and scaled by 0.9-1.1, in frame."""
    if rng.random() < 0.5:
        return box
    height, width = shape
    top, left, crop_h, crop_w = box
    scale = rng.uniform(0.9, 1.1)
    crop_h, crop_w = min(height, int(crop_h * scale)), min(width, int(crop_w * scale))
    top = int(np.clip(top + rng.uniform(-0.1, 0.1) * crop_h, 0, height - crop_h))
    left = int(np.clip(left + rng.uniform(-0.1, 0.1) * crop_w, 0, width - crop_w))
    return top, left, crop_h, crop_w


def _jitter_colours(images: list[np.ndarray], rng: np.random.Generator) -> list[np.ndarray]:
    """The same random brightness, contrast, saturation and channel gains on every image."""
    brightness, contrast, saturation = rng.uniform(0.7, 1.3, size=3)
    gains = rng.uniform(0.9, 1.1, size=3)
    out = []
    for image in images:
        pixels = image.astype(np.float32) * brightness * gains
        grey = pixels.mean(axis=2, keepdims=True)
        pixels = grey + saturation * (pixels - grey)
        pixels = pixels.mean() + contrast * (pixels - pixels.mean())
        out.append(np.clip(pixels, 0, 255).astype(np.uint8))
    return out


def _crop(
    frame: np.ndarray, ids: np.ndarray, box: tuple[int, int, int, int], size: int, flip: bool
) -> tuple[np.ndarray, np.ndarray]:
    """Crop a frame and its ids to ``box``, squash to size x size as the engine does, flip."""
    top, left, crop_h, crop_w = box
    image = Image.fromarray(frame[top : top + crop_h, left : left + crop_w])
    labels = Image.fromarray(ids[top : top + crop_h, left : left + crop_w])
    image = np.asarray(image.resize((size, size), Image.Resampling.BICUBIC))
    labels = np.asarray(labels.resize((size, size), Image.Resampling.NEAREST))
    if flip:
        image, labels = image[:, ::-1], labels[:, ::-1]
    return image, labels


# -- colouring ------------------------------------------------------------------------------------
def random_colours(count: int, rng: np.random.Generator, palette_share: float = 0.3) -> np.ndarray:
    """``count`` colours (count, 3) uint8, far from black and from each other.

    Mostly uniform random RGB (the paper's random colouring); with probability ``palette_share``
    the engine's own object colours in random order, so the colours used at inference are seen.
    """
    if rng.random() < palette_share:
        return object_colours(count)[rng.permutation(count)]
    colours: list[np.ndarray] = []
    while len(colours) < count:
        candidate = rng.integers(0, 256, size=3)
        far_from_black = np.linalg.norm(candidate) > 110
        far_from_others = all(np.linalg.norm(candidate - c) > 90 for c in colours)
        if far_from_black and far_from_others:
            colours.append(candidate)
    return np.stack(colours).astype(np.uint8)


def paint_pair(
    pair: Pair, seg_type: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Painted prompt and query masks, (S, S, 3) uint8 each; background black.

    seg_type 1 (instance): a colour per object; 0 (semantic): a colour per class.
    """
    prompt, query = paint_frames([pair.prompt_ids, pair.query_ids], pair.classes, seg_type, rng)
    return prompt, query


def paint_frames(
    ids: list[np.ndarray], classes: dict[int, int], seg_type: int, rng: np.random.Generator
) -> list[np.ndarray]:
    """Object ids (S, S) of frames of one scene -> painted masks (S, S, 3) uint8, with colours
    drawn afresh but the same in every frame; see :func:`paint_pair`."""
    present = set().union(*(np.unique(frame_ids).tolist() for frame_ids in ids))
    object_ids = sorted(int(i) for i in present - {0})
    groups = [classes.get(i, i) if seg_type == SEMANTIC else i for i in object_ids]
    distinct = sorted(set(groups))
    colours = random_colours(len(distinct), rng) if distinct else np.zeros((0, 3), np.uint8)
    lookup = np.zeros((256, 3), dtype=np.uint8)
    for object_id, group in zip(object_ids, groups):
        lookup[object_id] = colours[distinct.index(group)]
    return [lookup[frame_ids] for frame_ids in ids]


# -- masking of the target ------------------------------------------------------------------------
def block_mask(rows: int, cols: int, rng: np.random.Generator, ratio: float = 0.5) -> np.ndarray:
    """Random rectangular blocks covering ``ratio`` of a (rows, cols) patch grid: bool (rows, cols).

    The release's block-wise masking (as in BEiT): each block covers between 4 patches and a
    quarter of the grid, aspect ratio log-uniform in [0.3, 3.3].
    """
    target = int(rows * cols * ratio)
    mask = np.zeros((rows, cols), dtype=bool)
    max_block = max(4, rows * cols // 4)
    for _ in range(1000):
        remaining = target - int(mask.sum())
        if remaining <= 0:
            break
        area = rng.uniform(4, max(4, min(max_block, remaining)) + 1e-6)
        aspect = np.exp(rng.uniform(np.log(0.3), np.log(1 / 0.3)))
        height = min(rows, max(1, int(round(np.sqrt(area * aspect)))))
        width = min(cols, max(1, int(round(np.sqrt(area / aspect)))))
        top = int(rng.integers(0, rows - height + 1))
        left = int(rng.integers(0, cols - width + 1))
        mask[top : top + height, left : left + width] = True
    return mask


def target_mask(
    rows: int, cols: int, rng: np.random.Generator, half_mask_ratio: float
) -> np.ndarray:
    """Which target patches the model must paint: bool (rows * cols,), row-major.

    With probability ``half_mask_ratio`` the whole query half (the inference task), otherwise
    random blocks over half of the stacked grid.
    """
    if rng.random() < half_mask_ratio:
        return query_half_mask(rows, cols)
    return block_mask(rows, cols, rng).reshape(-1)


def query_half_mask(rows: int, cols: int) -> np.ndarray:
    """The inference task's mask: the whole query half (bottom rows) hidden."""
    mask = np.zeros((rows, cols), dtype=bool)
    mask[rows // 2 :] = True
    return mask.reshape(-1)


def _grow(mask: np.ndarray, radius: int) -> np.ndarray:
    """Binary dilation of a bool (H, W) mask by a (2r + 1) square."""
    padded = np.pad(mask, radius)
    height, width = mask.shape
    grown = np.zeros_like(mask)
    for dy in range(2 * radius + 1):
        for dx in range(2 * radius + 1):
            grown |= padded[dy : dy + height, dx : dx + width]
    return grown


def degrade_prompt(ids: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Object ids (S, S) as the model's own earlier prediction might have them: each object
    eroded or dilated by 1-3 pixels, shifted by up to two pixels, and/or with an outline from a
    2x or 4x coarser grid.

    In a video most prompts are the model's own predictions. Trained only on true prompt masks,
    the model learns to trust the prompt's outline, and its errors pile up frame after frame (a
    model trained so shrank every object a little more each frame: README, Training); from
    degraded prompts it learns to take the outline from the query image.
    """
    height, width = ids.shape
    out = ids.copy()
    for k in np.unique(ids[ids > 0]):
        change = rng.random()
        radius = int(rng.integers(1, 4))
        if change < 0.35:  # erode: pixels near the outline become background (never all)
            rim = (out == k) & _grow(out != k, radius)
            if rim.sum() < (out == k).sum():
                out[rim] = 0
        elif change < 0.7:  # dilate into the background
            out[_grow(out == k, radius) & (out == 0)] = k
    if rng.random() < 0.7:
        dy, dx = (int(v) for v in rng.integers(-2, 3, size=2))
        shifted = np.zeros_like(out)
        shifted[max(dy, 0) : height + min(dy, 0), max(dx, 0) : width + min(dx, 0)] = out[
            max(-dy, 0) : height + min(-dy, 0), max(-dx, 0) : width + min(-dx, 0)
        ]
        out = shifted
    if rng.random() < 0.7:
        factor = int(rng.choice([2, 4]))
        coarse = out[factor // 2 :: factor, factor // 2 :: factor]
        out = np.repeat(np.repeat(coarse, factor, axis=0), factor, axis=1)[:height, :width]
    return out


# -- batches --------------------------------------------------------------------------------------
@dataclass
class Batch:
    """Model inputs and the painted targets; normalised (N, 3, 2S, S), masks (N, L) bool.

    ``prompts`` > 1: the items are N / prompts queries, each with that many prompts (query-major),
    for feature ensemble.
    """

    imgs: torch.Tensor
    tgts: torch.Tensor
    bool_masked_pos: torch.Tensor
    seg_type: torch.Tensor
    prompts: int = 1


def normalise(pixels: np.ndarray) -> torch.Tensor:
    """(N, H, W, 3) uint8 -> (N, 3, H, W) float32, ImageNet mean/std after /255."""
    tensor = torch.from_numpy(np.ascontiguousarray(pixels)).permute(0, 3, 1, 2).float() / 255
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    return (tensor - mean) / std


def make_batch(
    sources: list,
    weights: list[float],
    batch_size: int,
    grid: tuple[int, int],
    rng: np.random.Generator,
    half_mask_ratio: float = 0.5,
    prompt_noise: float = 0.0,
) -> Batch:
    """One batch of coloured pairs drawn from ``sources`` in proportion to ``weights``.

    prompt_noise: share of the inference-task pairs (whole query hidden) whose prompt mask is
    degraded (:func:`degrade_prompt`); only there is the prompt half outside the loss.
    """
    probabilities = np.asarray(weights, dtype=np.float64) / sum(weights)
    images, targets, masked, seg_types = [], [], [], []
    for _ in range(batch_size):
        source = sources[rng.choice(len(sources), p=probabilities)]
        pair = source.sample(rng)
        seg_type = int(rng.integers(2))
        hidden = target_mask(*grid, rng, half_mask_ratio)
        # Its own stream, so that the noise setting changes nothing else in the batch.
        noise_rng = np.random.default_rng(rng.integers(2**63))
        if np.array_equal(hidden, query_half_mask(*grid)) and noise_rng.random() < prompt_noise:
            pair.prompt_ids = degrade_prompt(pair.prompt_ids, noise_rng)
        prompt_mask, query_mask = paint_pair(pair, seg_type, rng)
        images.append(np.concatenate([pair.prompt_image, pair.query_image], axis=0))
        targets.append(np.concatenate([prompt_mask, query_mask], axis=0))
        masked.append(hidden)
        seg_types.append(seg_type)
    return Batch(
        imgs=normalise(np.stack(images)),
        tgts=normalise(np.stack(targets)),
        bool_masked_pos=torch.from_numpy(np.stack(masked)),
        seg_type=torch.tensor(seg_types),
    )


def make_group_batch(
    sources: list,
    weights: list[float],
    items: int,
    prompts: int,
    grid: tuple[int, int],
    rng: np.random.Generator,
    prompt_noise: float = 0.0,
) -> Batch:
    """A feature-ensemble batch: ``items // prompts`` queries (at least one), each hidden whole
    and prompted by one :class:`Group` of ``prompts`` frames, as the engine prompts a video frame.

    The first prompt keeps its true mask (the user's annotation); each other prompt's mask is
    degraded (:func:`degrade_prompt`) with probability ``prompt_noise``, as the model's own
    earlier predictions are.
    """
    probabilities = np.asarray(weights, dtype=np.float64) / sum(weights)
    hidden = query_half_mask(*grid)
    images, targets, seg_types = [], [], []
    for _ in range(max(1, items // prompts)):
        source = sources[rng.choice(len(sources), p=probabilities)]
        group = source.sample_group(rng, prompts)
        seg_type = int(rng.integers(2))
        noise_rng = np.random.default_rng(rng.integers(2**63))
        prompt_ids = [group.prompt_ids[0]] + [
            degrade_prompt(ids, noise_rng) if noise_rng.random() < prompt_noise else ids
            for ids in group.prompt_ids[1:]
        ]
        *prompt_masks, query_mask = paint_frames(
            [*prompt_ids, group.query_ids], group.classes, seg_type, rng
        )
        for image, mask in zip(group.prompt_images, prompt_masks):
            images.append(np.concatenate([image, group.query_image], axis=0))
            targets.append(np.concatenate([mask, query_mask], axis=0))
            seg_types.append(seg_type)
    return Batch(
        imgs=normalise(np.stack(images)),
        tgts=normalise(np.stack(targets)),
        bool_masked_pos=torch.from_numpy(hidden).expand(len(images), -1).clone(),
        seg_type=torch.tensor(seg_types),
        prompts=prompts,
    )
