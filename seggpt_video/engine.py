"""Propagation: segments every frame of a video from annotated frames and its own predictions.

The prompt memory has one owner here. For frame t the prompts are every annotated frame before t
(with the masks as propagated at that frame) plus the last K predicted frames, combined by
feature ensemble. Several frames can go through the model together; they then share the memory as
it stood before the batch (``batch_size=1`` is the release's recipe exactly).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from seggpt_video.errors import UserError
from seggpt_video.objects import MAX_OBJECTS, ObjectPalette
from seggpt_video.predictor import PromptTensors, SegGPTPredictor


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
    """

    memory: int = 8
    batch_size: int = 1
    per_object: bool = False
    upsample: str = "bilinear"
    extra_prompts: PromptTensors | None = None
    ensemble: str = "feature"


@dataclass
class Prompt:
    """One frame as a prompt: its image and painted mask in model space, (1, 3, S, S) each."""

    frame_index: int
    tensors: PromptTensors


@dataclass
class PromptMemory:
    """Annotated frames (kept for the whole video) and the K most recent predictions (FIFO)."""

    memory: int
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
        """Prompts for the next frame: annotated first, then predictions oldest to newest."""
        return [*self.annotated, *self.recent]


class Segmenter:
    """Propagates object masks through a video with a :class:`SegGPTPredictor`."""

    def __init__(self, predictor: SegGPTPredictor, options: SegmenterOptions | None = None) -> None:
        self.predictor = predictor
        self.options = options or SegmenterOptions()
        if self.options.batch_size < 1:
            raise UserError(f"--batch-size {self.options.batch_size}: must be at least 1")
        if self.options.memory < 0:
            raise UserError(f"--memory {self.options.memory}: must be 0 or more")
        if self.options.ensemble not in ("feature", "spatial"):
            raise UserError(f"--ensemble {self.options.ensemble}: expected feature or spatial")
        if self.options.upsample not in ("bilinear", "nearest"):
            raise UserError(f"upsample {self.options.upsample}: expected bilinear or nearest")

    def propagate(
        self,
        frames: Iterable[np.ndarray],
        annotations: dict[int, np.ndarray],
        known: Callable[[int], np.ndarray | None] | None = None,
    ) -> Iterator[tuple[int, np.ndarray]]:
        """Yield (frame index, object ids (H, W) uint8) for every frame, in order.

        frames: (H, W, 3) uint8 RGB in video order. annotations: frame index -> object ids
        (H, W) uint8, 0 = background; the first annotated frame must be the first frame.
        known: frame index -> ids already predicted by an earlier run (or None): such frames
        are not run through the model, only remembered as prompts, so a run can resume.
        """
        if not annotations:
            raise UserError("no annotated frame: give at least the first frame's mask")
        object_ids = sorted(
            {int(i) for labels in annotations.values() for i in np.unique(labels)} - {0}
        )
        if not object_ids:
            raise UserError("the annotation masks are empty: no object to segment")
        if not self.options.per_object and len(object_ids) > MAX_OBJECTS:
            raise UserError(
                f"{len(object_ids)} objects: at most {MAX_OBJECTS} in one pass; use --per-object"
            )
        first = min(annotations)
        if first != 0:
            raise UserError(f"the first annotation is on frame {first}: frame 0 must be annotated")
        passes = [[i] for i in object_ids] if self.options.per_object else [object_ids]
        self._present: set[int] = set()  # objects annotated so far
        propagations = [_Propagation(self, ObjectPalette(ids)) for ids in passes]
        batch: list[tuple[int, np.ndarray]] = []
        index = -1
        for index, frame in enumerate(frames):
            earlier = known(index) if known is not None else None
            if (index in annotations or earlier is not None) and batch:
                yield from self._run_batch(propagations, batch)
                batch = []
            if earlier is not None:
                if index in annotations:
                    self._present.update(int(i) for i in np.unique(annotations[index]) if i)
                for propagation in propagations:
                    propagation.add_known(index, frame, earlier, index in annotations)
                yield index, earlier
                continue
            if index in annotations:
                yield index, self._annotate(propagations, index, frame, annotations[index])
                continue
            batch.append((index, frame))
            if len(batch) == self.options.batch_size:
                yield from self._run_batch(propagations, batch)
                batch = []
        if batch:
            yield from self._run_batch(propagations, batch)
        if index < 0:
            raise UserError("the video has no frames")
        missing = sorted(i for i in annotations if i > index)
        if missing:
            raise UserError(
                f"annotation for frame {missing[0]} but the video ends at frame {index}"
            )

    def _annotate(
        self, propagations: list[_Propagation], index: int, frame: np.ndarray, labels: np.ndarray
    ) -> np.ndarray:
        """An annotated frame: the annotation wins for its objects, others keep their prediction."""
        self._present.update(int(i) for i in np.unique(labels) if i)
        if index == 0:
            merged = labels
        else:
            queries = self.predictor.prepare_images([frame])
            predicted = self._combine(propagations, queries, frame.shape[:2])[0][0]
            annotated_ids = np.unique(labels[labels > 0])
            merged = predicted.copy()
            merged[np.isin(merged, annotated_ids)] = 0
            merged[labels > 0] = labels[labels > 0]
        for propagation in propagations:
            propagation.add_annotated(index, frame, merged)
        return merged

    def _run_batch(
        self, propagations: list[_Propagation], batch: list[tuple[int, np.ndarray]]
    ) -> Iterator[tuple[int, np.ndarray]]:
        frames = [frame for _, frame in batch]
        queries = self.predictor.prepare_images(frames)
        labels, model_labels = self._combine(propagations, queries, frames[0].shape[:2])
        for position, (index, _) in enumerate(batch):
            for propagation in propagations:
                propagation.add_prediction(
                    index, queries[position : position + 1], model_labels[position : position + 1]
                )
            yield index, labels[position]

    def _combine(
        self, propagations: list[_Propagation], queries: torch.Tensor, size: tuple[int, int]
    ) -> tuple[np.ndarray, torch.Tensor]:
        """Object ids of a batch at frame size (B, H, W) numpy and at model size (B, S, S) tensor.

        The model-size ids become the next prompts, as the release binarises its output before
        any resizing; the frame-size ids are the output.
        """
        present = sorted(self._present)
        if self.options.per_object:
            # A pass whose object is not annotated yet has nothing to look for.
            propagations = [p for p in propagations if p.palette.object_ids[0] in self._present]
        painted = [p.predictor.paint(p.prompt_tensors(), queries) for p in propagations]
        if not self.options.per_object:
            palette = propagations[0].palette
            full = palette.decode(self._upsample(painted[0], size), present)
            return full.cpu().numpy(), palette.decode(painted[0], present)
        # Per-object passes: each scores how white its object is; the whitest above 128 wins.
        ids = torch.tensor([p.palette.object_ids[0] for p in propagations], dtype=torch.uint8)

        def pick(scores: torch.Tensor) -> torch.Tensor:
            labels = ids.to(scores.device)[scores.argmax(dim=0)]
            labels[scores.max(dim=0).values <= 128] = 0
            return labels

        full = pick(torch.stack([self._upsample(p, size).mean(dim=1) for p in painted]))
        model = pick(torch.stack([p.mean(dim=1) for p in painted]))
        return full.cpu().numpy(), model

    def _upsample(self, painted: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        """Painted prediction (B, 3, S, S) back to frame size (B, 3, H, W)."""
        if self.options.upsample == "bilinear":
            return F.interpolate(painted, size=size, mode="bilinear", align_corners=False)
        return F.interpolate(painted, size=size, mode="nearest")


class _Propagation:
    """One pass: one palette of objects and its own prompt memory."""

    def __init__(self, segmenter: Segmenter, palette: ObjectPalette) -> None:
        self.predictor = segmenter.predictor
        self.options = segmenter.options
        self.palette = palette
        self.memory = PromptMemory(self.options.memory)

    def add_annotated(self, index: int, frame: np.ndarray, labels: np.ndarray) -> None:
        """An annotated frame, (H, W, 3) uint8 with ids (H, W), becomes a prompt for good."""
        tensors = self.predictor.prepare_prompts([frame], [self.palette.paint(labels)])
        self.memory.add_annotated(Prompt(index, tensors))

    def add_known(self, index: int, frame: np.ndarray, labels: np.ndarray, annotated: bool) -> None:
        """A frame segmented by an earlier run, (H, W, 3) uint8 with ids (H, W), rejoins memory."""
        if annotated:
            self.add_annotated(index, frame, labels)
        elif self.options.memory > 0:
            size = (self.predictor.size, self.predictor.size)
            ids = torch.from_numpy(labels)[None, None].float()
            ids = F.interpolate(ids, size=size, mode="nearest-exact")[:, 0].to(torch.uint8)
            query = self.predictor.prepare_images([frame])
            self.add_prediction(index, query, ids.to(query.device))

    def add_prediction(self, index: int, query: torch.Tensor, labels: torch.Tensor) -> None:
        """A predicted frame, (1, 3, S, S) model input, ids (1, S, S), joins the recent memory."""
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
