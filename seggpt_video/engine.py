"""Propagation: segments every frame of a video from annotated frames and its own predictions.

The prompt memory has one owner here. For frame t the prompts are every annotated frame before t
(with the masks as propagated at that frame) plus the last K predicted frames, combined by
feature ensemble. Several frames can go through the model together; they then share the memory as
it stood before the batch (``batch_size=1`` is the release's recipe exactly).

Resuming: an interrupted run restarts at the batch that holds its first unfinished frame, with the
memory rebuilt from what the earlier run kept (the ids at the model's size, as the memory holds
them), so a resumed run gives the same masks as one never interrupted.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
import torch
import torch.nn.functional as F

from seggpt_video.crops import (
    CROP_MODES,
    Window,
    is_small,
    object_box,
    paste,
    rests,
    window_around,
)
from seggpt_video.errors import UserError
from seggpt_video.model.checkpoint import PACKAGED_MODEL
from seggpt_video.objects import MAX_OBJECTS, DecodedBatch, ObjectPalette, decode_batch, hard_alpha
from seggpt_video.predictor import PromptTensors, SegGPTPredictor, to_tensor_images
from seggpt_video.refine import DEFAULT_REFINE, DEFAULT_SETTINGS, REFINE_MODES, RefineSettings

DEFAULT_MEMORY = 8
"""Predicted frames kept as prompts: the paper's best on DAVIS-17 (Table 4b; README)."""
MEMORY_BY_MODEL = {PACKAGED_MODEL: 2}
"""Models whose default memory is not DEFAULT_MEMORY. The packaged seggpt-tiny keeps 2: on 8
DAVIS 2016 train sequences it never trained on, memory 2 scored J&F 0.537 against 0.536 for 4 and
0.543 for 8, and `run` at 480p on 2 CPU cores makes 7.9 frames/s against 6.1 and 4.1 (README)."""


def default_memory(model_name: str) -> int:
    """--memory when none is given, for the model of that name (see predictor.model_name)."""
    return MEMORY_BY_MODEL.get(model_name, DEFAULT_MEMORY)


@dataclass
class SegmenterOptions:
    """How to propagate.

    memory: number K of most recent predicted frames used as prompts besides annotated frames.
    batch_size: frames that go through the model together (they share the prompt memory).
    per_object: one pass per object, each painted white on black (slower, no colour confusion).
    upsample: how the painted prediction returns to frame size before decoding ('bilinear' gives
        smoother boundaries; 'nearest' is the release's choice).
    extra_prompts: prompts used for every frame, e.g. a tuned prompt from ``seggpt-video tune``.
    ensemble: how several prompts combine: 'feature' (averaged inside attention, the paper's
        best for video) or 'spatial' (tiled in a grid and shrunk to one prompt).
    refine: 'guided': the upsampled prediction is refined along the frame's edges before the
        ids are decided (see refine.py); 'none': decoded as painted. The prompt memory keeps the
        ids decoded at the model's size either way.
    refine_settings: the guided filter's settings.
    soft: also hand out soft mattes (``SegmentedFrame.alpha``).
    crops: 'auto': objects smaller than crops.CROP_BELOW of the frame where they are annotated
        are segmented on a window around them (seggpt_video/crops.py), not with ``soft``;
        'on': every annotated object; 'off': none.
    """

    memory: int = DEFAULT_MEMORY
    batch_size: int = 1
    per_object: bool = False
    upsample: str = "bilinear"
    extra_prompts: PromptTensors | None = None
    ensemble: str = "feature"
    refine: str = DEFAULT_REFINE
    refine_settings: RefineSettings = DEFAULT_SETTINGS
    soft: bool = False
    crops: str = "auto"


@dataclass
class SegmentedFrame:
    """One frame's result, handed out in video order with the frame it belongs to.

    frame: (H, W, 3) uint8 RGB as decoded. labels: (H, W) uint8 object ids at the frame's size
    (the output). model_labels: (S, S) uint8 ids at the model's input size (what the prompt
    memory keeps; a resumed run needs them); None for a frame read back that the memory did not
    need. recalled: read back from an earlier run. alpha: with ``soft``, the soft mattes
    (1 + K, H, W) uint8 0-255, channel 0 the union of the objects and channel k the run's k-th
    object (ids increasing), above 127 exactly where ``labels`` has them (see
    ``objects.soft_alpha``; an annotated frame's are hard); None otherwise.
    """

    index: int
    frame: np.ndarray
    labels: np.ndarray
    model_labels: np.ndarray | None
    recalled: bool = False
    alpha: np.ndarray | None = None

    @property
    def image(self) -> np.ndarray:
        """The frame, (H, W, 3) uint8 RGB (the Python API's name for it)."""
        return self.frame


def check_options(options: SegmenterOptions) -> SegmenterOptions:
    """The options, or UserError naming the one out of range (needs no model)."""
    if options.batch_size < 1:
        raise UserError(f"batch size {options.batch_size}: must be at least 1")
    if options.memory < 0:
        raise UserError(f"memory {options.memory}: must be 0 or more")
    if options.ensemble not in ("feature", "spatial"):
        raise UserError(f"ensemble {options.ensemble!r}: expected feature or spatial")
    if options.upsample not in ("bilinear", "nearest"):
        raise UserError(f"upsample {options.upsample!r}: expected bilinear or nearest")
    if options.refine not in REFINE_MODES:
        raise UserError(f"refine {options.refine!r}: expected {' or '.join(REFINE_MODES)}")
    if options.crops not in CROP_MODES:
        raise UserError(f"crops {options.crops!r}: expected {', '.join(CROP_MODES)}")
    if options.crops == "on" and options.soft:
        raise UserError("crops on gives hard masks only: use it without soft mattes")
    return options


class EarlierRun(Protocol):
    """What an interrupted run finished, read back by a resumed one (see io/state.py)."""

    def labels(self, index: int) -> np.ndarray:
        """Frame `index`'s ids at the frame's size, (H, W) uint8."""
        ...

    def model_labels(self, index: int) -> np.ndarray:
        """Frame `index`'s ids at the model's size, (S, S) uint8."""
        ...

    def alpha(self, index: int) -> np.ndarray:
        """Frame `index`'s soft mattes, (1 + K, H, W) uint8 (kept by a ``soft`` run)."""
        ...


@dataclass
class Prompt:
    """One frame as a prompt: its image and painted mask in model space, (1, 3, S, S) each."""

    frame_index: int
    tensors: PromptTensors


@dataclass
class Example:
    """An image from outside the video with its object ids: a prompt for every frame.

    image: (h, w, 3) uint8 RGB; labels: (h, w) uint8 object ids, any size (resized to the
    model's input as frames are).
    """

    image: np.ndarray
    labels: np.ndarray


@dataclass
class PromptMemory:
    """Examples and annotated frames (kept for the whole video) and the K most recent
    predictions (FIFO)."""

    memory: int
    examples: list[Prompt] = field(default_factory=list)
    annotated: list[Prompt] = field(default_factory=list)
    recent: deque = field(default_factory=deque)

    def add_annotated(self, prompt: Prompt) -> None:
        self.annotated.append(prompt)

    def add_prediction(self, prompt: Prompt) -> None:
        if self.memory <= 0:
            return
        self.recent.append(prompt)
        while len(self.recent) > self.memory:
            self.recent.popleft()

    def prompts(self) -> list[Prompt]:
        """Prompts for the next frame: examples, annotated frames, then predictions oldest to
        newest."""
        return [*self.examples, *self.annotated, *self.recent]

    def forget_frames(self) -> None:
        """Drop the video's frames (annotated and predicted), keep the examples."""
        self.annotated.clear()
        self.recent.clear()


class Segmenter:
    """Propagates object masks through a video with a :class:`SegGPTPredictor`."""

    def __init__(self, predictor: SegGPTPredictor, options: SegmenterOptions | None = None) -> None:
        self.predictor = predictor
        self.options = check_options(options or SegmenterOptions())

    @property
    def model_name(self) -> str:
        """The model's name, or its checkpoint's path (what run.json records)."""
        return self.predictor.name

    @property
    def dtype_name(self) -> str:
        return str(self.predictor.dtype).removeprefix("torch.")

    @property
    def task(self) -> str:
        """The seg type token the model is shown: 'instance' or 'semantic'."""
        return self.predictor.task

    def resume_point(
        self, first_unfinished: int, annotations: dict[int, np.ndarray], num_frames: int
    ) -> int:
        """The frame a resumed run restarts from: the first of the batch holding the first
        unfinished frame (a batch shares one memory state, so it is recomputed whole)."""
        if first_unfinished >= num_frames:
            return num_frames
        before = [i for i in annotations if i <= first_unfinished]
        if first_unfinished in before:
            return first_unfinished
        # Batches start after the last annotated frame, or at frame 0 when none is annotated
        # yet (examples alone are the prompts).
        begin = max(before) + 1 if before else 0
        batch = self.options.batch_size
        return begin + (first_unfinished - begin) // batch * batch

    def propagate(
        self,
        frames: Iterable[np.ndarray],
        annotations: dict[int, np.ndarray],
        earlier: EarlierRun | None = None,
        resume_from: int = 0,
        examples: list[Example] | None = None,
    ) -> Iterator[SegmentedFrame]:
        """Segment every frame, in order, yielding each with its frame and object ids.

        frames: (H, W, 3) uint8 RGB in video order. annotations: frame index -> object ids
        (H, W) uint8, 0 = background; without examples the first frame must be annotated.
        examples: images from outside the video with their ids, prompts for every frame (the
        objects they show are looked for from frame 0 on). earlier, resume_from: frames before
        ``resume_from`` (a :meth:`resume_point`) are read back from ``earlier`` instead of
        computed; those the memory needs rejoin it.
        """
        examples = examples or []
        if not annotations and not examples:
            raise UserError("no annotated frame: give at least the first frame's mask")
        masks = [*annotations.values(), *(example.labels for example in examples)]
        object_ids = sorted({int(i) for labels in masks for i in np.unique(labels)} - {0})
        if not object_ids:
            raise UserError("the annotation masks are empty: no object to segment")
        if not self.options.per_object and len(object_ids) > MAX_OBJECTS:
            raise UserError(
                f"{len(object_ids)} objects: at most {MAX_OBJECTS} share one pass; "
                "use one pass per object"
            )
        first = min(annotations, default=0)
        if first != 0 and not examples:
            raise UserError(f"the first annotation is on frame {first}: frame 0 must be annotated")
        if resume_from > 0 and earlier is None:
            raise ValueError("resume_from needs the earlier run to read frames back from")
        if self.options.per_object:
            palettes = [ObjectPalette([i]) for i in object_ids]
        else:
            palettes = [ObjectPalette(object_ids)]
        run = _Propagation(self.predictor, self.options, palettes, object_ids)
        for example in examples:
            run.add_example(example)
        predicted_before = [i for i in range(resume_from) if i not in annotations]
        remembered = set(predicted_before[-self.options.memory :] if self.options.memory else [])
        batch: list[tuple[int, np.ndarray]] = []
        index = -1
        for index, frame in enumerate(frames):
            if index < resume_from:
                yield run.recall(index, frame, earlier, annotations.get(index), index in remembered)
                continue
            if index in annotations:
                if batch:
                    yield from run.predict(batch)
                    batch = []
                yield run.annotate(index, frame, annotations[index])
                continue
            batch.append((index, frame))
            if len(batch) == self.options.batch_size:
                yield from run.predict(batch)
                batch = []
        if batch:
            yield from run.predict(batch)
        if index < 0:
            raise UserError("the video has no frames")
        missing = sorted(i for i in annotations if i > index)
        if missing:
            raise UserError(
                f"annotation for frame {missing[0]} but the video ends at frame {index}"
            )


class _Propagation:
    """The state of one propagate() call: its passes and the objects annotated so far.

    Each frame is resized to the model's input once and shared by every pass.
    """

    def __init__(
        self,
        predictor: SegGPTPredictor,
        options: SegmenterOptions,
        palettes: list[ObjectPalette],
        object_ids: list[int],
    ) -> None:
        self.predictor = predictor
        self.options = options
        self.passes = [_Pass(predictor, options, palette) for palette in palettes]
        self.object_ids = object_ids
        self.present: set[int] = set()
        self.has_examples = False
        self.crops: dict[int, _ObjectCrop] = {}

    def add_example(self, example: Example) -> None:
        """An example is a prompt, from the first frame on, of every pass that looks for one of
        its objects; those objects are looked for from then on."""
        shown = {int(i) for i in np.unique(example.labels) if i}
        self.present.update(shown)
        self.has_examples = True
        image = self.predictor.prepare_images([example.image])
        for one_pass in self.passes:
            if shown.intersection(one_pass.palette.object_ids):
                one_pass.remember_example(image, example.labels)

    def annotate(self, index: int, frame: np.ndarray, labels: np.ndarray) -> SegmentedFrame:
        """An annotated frame: the annotation wins for its objects, others keep their prediction."""
        self.present.update(int(i) for i in np.unique(labels) if i)
        query = self.predictor.prepare_images([frame])
        if index == 0 and not self.has_examples:
            merged = labels
        else:
            predicted = self._decode(query, [frame])[0].labels[0].cpu().numpy()
            merged = predicted.copy()
            merged[np.isin(merged, np.unique(labels[labels > 0]))] = 0
            merged[labels > 0] = labels[labels > 0]
        for one_pass in self.passes:
            one_pass.remember_annotated(index, query, merged)
        self._crops_see_annotated(index, frame, labels, merged)
        alpha = hard_alpha(merged, self.object_ids) if self.options.soft else None
        return SegmentedFrame(index, frame, merged, self._model_size(merged), alpha=alpha)

    def _crops_see_annotated(
        self, index: int, frame: np.ndarray, annotation: np.ndarray, labels: np.ndarray
    ) -> None:
        """An annotated frame starts the crop pass of each small object it brings, and is a
        prompt of the crop passes of the objects it annotates (the others: as predicted)."""
        annotated = {int(i) for i in np.unique(annotation) if i}
        for object_id in sorted(annotated - set(self.crops)):
            if self._wants_crop(labels, object_id):
                self.crops[object_id] = _ObjectCrop(self.predictor, self.options, object_id)
        for object_id, crop in self.crops.items():
            if object_id in annotated:
                crop.remember_annotated(index, frame, labels)
            else:
                crop.remember_prediction(index, frame, labels)

    def _crop_runs(self, crop: _ObjectCrop) -> bool:
        """Whether a crop pass runs this frame: always with crops on; with auto, not while its
        object covered more than crops.RESTS_ABOVE of the frame before."""
        return self.options.crops == "on" or not rests(crop.share)

    def _wants_crop(self, labels: np.ndarray, object_id: int) -> bool:
        if self.options.crops == "on":
            return bool((labels == object_id).any())
        return (
            self.options.crops == "auto" and not self.options.soft and is_small(labels, object_id)
        )

    def predict(self, batch: list[tuple[int, np.ndarray]]) -> Iterator[SegmentedFrame]:
        """Frames that go through the model together, each remembered as it is handed out."""
        frames = [frame for _, frame in batch]
        queries = self.predictor.prepare_images(frames)
        crops = [(i, crop) for i, crop in self.crops.items() if self._crop_runs(crop)]
        decoded, found = self._decode(queries, frames, [crop for _, crop in crops])
        model_labels = decoded.model_labels
        labels_np, model_np = decoded.labels.cpu().numpy(), model_labels.cpu().numpy()
        alpha_np = decoded.alpha.cpu().numpy() if decoded.alpha is not None else None
        if crops:
            # Small objects come from their crop passes; the memory keeps the pasted ids.
            for (object_id, crop), insides in zip(crops, found, strict=True):
                window, guarded = crop.window, set(self.crops) - {object_id}
                for labels, inside in zip(labels_np, insides, strict=True):
                    paste(labels, object_id, window, inside, guarded)
            model_np = np.stack([self._model_size(labels) for labels in labels_np])
            model_labels = torch.from_numpy(model_np).to(queries.device)
        for position, (index, frame) in enumerate(batch):
            for one_pass in self.passes:
                one_pass.remember_prediction(
                    index, queries[position : position + 1], model_labels[position : position + 1]
                )
            for crop in self.crops.values():
                crop.remember_prediction(index, frame, labels_np[position])
            alpha = alpha_np[position] if alpha_np is not None else None
            yield SegmentedFrame(index, frame, labels_np[position], model_np[position], alpha=alpha)

    def recall(
        self,
        index: int,
        frame: np.ndarray,
        earlier: EarlierRun,
        annotation: np.ndarray | None,
        remember: bool,
    ) -> SegmentedFrame:
        """A frame an earlier run finished: read back, and remembered as that run remembered it."""
        labels = earlier.labels(index)
        alpha = earlier.alpha(index) if self.options.soft else None
        model_labels = None  # read only for the frames that rejoin the memory
        if annotation is not None:
            self.present.update(int(i) for i in np.unique(annotation) if i)
            query = self.predictor.prepare_images([frame])
            for one_pass in self.passes:
                one_pass.remember_annotated(index, query, labels)
            self._crops_see_annotated(index, frame, annotation, labels)
        elif remember:
            query = self.predictor.prepare_images([frame])
            model_labels = earlier.model_labels(index)
            ids = torch.from_numpy(model_labels)[None].to(query.device)
            for one_pass in self.passes:
                one_pass.remember_prediction(index, query, ids)
            for crop in self.crops.values():
                crop.remember_prediction(index, frame, labels)
        else:
            for crop in self.crops.values():
                crop.follow(labels)
        return SegmentedFrame(index, frame, labels, model_labels, recalled=True, alpha=alpha)

    def _decode(
        self,
        queries: torch.Tensor,
        frames: list[np.ndarray],
        crops: Sequence[_ObjectCrop] = (),
    ) -> tuple[DecodedBatch, list[list[np.ndarray]]]:
        """Object ids of a batch at frame size (B, H, W) and at model size (B, S, S), and its
        soft mattes with ``soft``; refined on the model's device with the frames as the guide.
        With them, what each crop pass finds in each frame's window, painted in the same model
        call as the full passes."""
        # A pass none of whose objects is annotated yet has nothing to look for.
        passes = [p for p in self.passes if self.present.intersection(p.palette.object_ids)]
        crop_inputs = [crop.query(frames) for crop in crops]
        painted = self.predictor.paint_each(
            [(p.prompt_tensors(), queries) for p in passes]
            + [(crop.prompt_tensors(), query) for crop, (_, query) in zip(crops, crop_inputs)]
        )
        found = [
            crop.decode(painting, windows)
            for crop, (windows, _), painting in zip(
                crops, crop_inputs, painted[len(passes) :], strict=True
            )
        ]
        refine = self.options.refine_settings if self.options.refine == "guided" else None
        guide = to_tensor_images(frames).to(queries.device) if refine is not None else None
        decoded = decode_batch(
            painted[: len(passes)],
            [p.palette for p in passes],
            sorted(self.present),
            self.object_ids,
            frames[0].shape[:2],
            mode=self.options.upsample,
            refine=refine,
            guide=guide,
            soft=self.options.soft,
        )
        return decoded, found

    def _model_size(self, labels: np.ndarray) -> np.ndarray:
        """Ids (H, W) resized to the model's input as a prompt mask is (nearest), (S, S)."""
        size = (self.predictor.size, self.predictor.size)
        ids = torch.tensor(labels)[None, None].float()
        return F.interpolate(ids, size=size, mode="nearest-exact")[0, 0].to(torch.uint8).numpy()


class _Pass:
    """One pass over the video: one palette of objects and its own prompt memory."""

    def __init__(
        self, predictor: SegGPTPredictor, options: SegmenterOptions, palette: ObjectPalette
    ) -> None:
        self.predictor = predictor
        self.options = options
        self.palette = palette
        self.memory = PromptMemory(options.memory)
        self.known: set[int] = set()  # this pass's objects that its prompts have been shown

    def remember_example(self, image: torch.Tensor, labels: np.ndarray) -> None:
        """An example, (1, 3, S, S) model input with ids (h, w), is a prompt for every frame."""
        self.known.update(self._objects_in(labels))
        masks = self.predictor.prepare_masks(self.palette.paint(labels))
        self.memory.examples.append(Prompt(-1, PromptTensors(image, masks)))

    def remember_annotated(self, index: int, query: torch.Tensor, labels: np.ndarray) -> None:
        """An annotated frame, (1, 3, S, S) model input with ids (H, W), is a prompt for good.

        A frame that brings an object no prompt has shown yet retires the video's earlier
        prompts: they paint that object as background wherever it already was, and would
        outvote its one annotation (the object is lost right after it). The new frame carries
        the other objects on, as predicted there; examples stay.
        """
        objects = self._objects_in(labels)
        if objects - self.known:
            self.memory.forget_frames()
        self.known.update(objects)
        masks = self.predictor.prepare_masks(self.palette.paint(labels))
        self.memory.add_annotated(Prompt(index, PromptTensors(query, masks)))

    def _objects_in(self, labels: np.ndarray) -> set[int]:
        return {int(i) for i in np.unique(labels) if i} & set(self.palette.object_ids)

    def remember_prediction(self, index: int, query: torch.Tensor, labels: torch.Tensor) -> None:
        """A predicted frame, (1, 3, S, S) model input with ids (1, S, S), joins recent memory."""
        if self.options.memory > 0:
            masks = self.predictor.prepare_masks(self.palette.paint_tensor(labels))
            self.memory.add_prediction(Prompt(index, PromptTensors(query, masks)))

    def prompt_tensors(self) -> PromptTensors:
        parts = [p.tensors for p in self.memory.prompts()]
        if self.options.extra_prompts is not None:
            parts.append(self.options.extra_prompts)
        prompts = PromptTensors.concat(parts)
        if self.options.ensemble == "spatial" and len(prompts) > 1:
            return prompts.tiled()
        return prompts


class _ObjectCrop:
    """A small object's own pass on windows around it (seggpt_video/crops.py).

    Its prompts are the windows around the object in the frames that annotate it and in its K
    most recent predictions; each frame's query is the window around its box in the frame
    before (a batch shares it), placed anew after every frame.
    """

    def __init__(self, predictor: SegGPTPredictor, options: SegmenterOptions, object_id: int):
        self.predictor = predictor
        self.options = options
        self.object_id = object_id
        self.one_pass = _Pass(predictor, options, ObjectPalette([object_id]))
        self.window: Window | None = None
        self.share = 0.0  # of the frame the object covered where last followed (0: absent)

    def remember_annotated(self, index: int, frame: np.ndarray, labels: np.ndarray) -> None:
        """A frame annotating the object, (H, W, 3) with ids (H, W): a prompt for good."""
        if self.follow(labels):
            image, ids = self._crop(frame, labels)
            self.one_pass.remember_annotated(index, image, ids)

    def remember_prediction(self, index: int, frame: np.ndarray, labels: np.ndarray) -> None:
        """A frame's final ids (H, W): one of the recent prompts, if the object is there."""
        if self.follow(labels) and self.options.memory > 0:
            image, ids = self._crop(frame, labels)
            self.one_pass.remember_prediction(index, image, torch.from_numpy(ids)[None])

    def follow(self, labels: np.ndarray) -> bool:
        """Place the window around the object in these ids; False (window kept) if absent."""
        inside = labels == self.object_id
        box = object_box(inside)
        self.share = np.count_nonzero(inside) / inside.size
        if box is not None:
            self.window = window_around(box, labels.shape, self.predictor.size)
        return box is not None

    def query(self, frames: list[np.ndarray]) -> tuple[list[np.ndarray], torch.Tensor]:
        """Each frame's window (side, side, 3) and its model input (B, 3, S, S)."""
        windows = [self.window.crop(frame) for frame in frames]
        return windows, self.predictor.prepare_images(windows)

    def prompt_tensors(self) -> PromptTensors:
        return self.one_pass.prompt_tensors()

    def decode(self, painted: torch.Tensor, windows: list[np.ndarray]) -> list[np.ndarray]:
        """The object in each window from its painting (B, 3, S, S): (side, side) bool each."""
        refine = self.options.refine_settings if self.options.refine == "guided" else None
        guide = to_tensor_images(windows).to(painted.device) if refine is not None else None
        decoded = decode_batch(
            [painted],
            [self.one_pass.palette],
            [self.object_id],
            [self.object_id],
            windows[0].shape[:2],
            mode=self.options.upsample,
            refine=refine,
            guide=guide,
        )
        return list(decoded.labels.cpu().numpy() == self.object_id)

    def _crop(self, frame: np.ndarray, labels: np.ndarray) -> tuple[torch.Tensor, np.ndarray]:
        """The window's model input (1, 3, S, S) and its ids at the model's size (S, S)."""
        image = self.predictor.prepare_images([np.ascontiguousarray(self.window.crop(frame))])
        ids = np.where(self.window.crop(labels) == self.object_id, self.object_id, 0)
        size = (self.predictor.size, self.predictor.size)
        resized = F.interpolate(
            torch.from_numpy(ids.astype(np.float32))[None, None], size=size, mode="nearest-exact"
        )
        return image, resized[0, 0].to(torch.uint8).numpy()
