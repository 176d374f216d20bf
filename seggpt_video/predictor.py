"""The friendly API over the raw network: uint8 images and masks in, the query's painted mask out.

All pre- and post-processing lives here: resizing to the model's square input, ImageNet
normalisation, stacking prompt over query, device and precision.
"""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from seggpt_video import runtime
from seggpt_video.errors import UserError
from seggpt_video.model import SegGPT, load_model
from seggpt_video.model.checkpoint import PACKAGED_MODEL, PUBLISHED_MODEL, default_model
from seggpt_video.model.packed import pack_linears, packing_available

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# The model used when none is named and no seggpt-vit-large weights are here (see load_predictor).
DEFAULT_MODEL = PACKAGED_MODEL
FALLBACK_NOTE = (
    f"using the packaged small model {PACKAGED_MODEL} (no local {PUBLISHED_MODEL} weights); "
    f"for the published SegGPT: seggpt-video download {PUBLISHED_MODEL}"
)
SEG_TYPES = {"semantic": 0, "instance": 1}
# Prompts whose target streams are kept (per-object passes each have their own prompt set).
TARGET_CACHE_PROMPTS = 16


def to_tensor_images(images: np.ndarray | list[np.ndarray]) -> torch.Tensor:
    """(N, H, W, 3) uint8 (or a list of equal-size (H, W, 3)) -> (N, 3, H, W) uint8 tensor."""
    array = np.stack(images) if isinstance(images, list) else images
    if array.ndim == 3:
        array = array[None]
    return torch.from_numpy(np.ascontiguousarray(array)).permute(0, 3, 1, 2)


@dataclass
class PromptTensors:
    """Prompts ready for the model: images and painted masks, (P, 3, S, S) normalised."""

    images: torch.Tensor
    masks: torch.Tensor

    def __len__(self) -> int:
        return self.images.shape[0]

    @staticmethod
    def concat(parts: list[PromptTensors]) -> PromptTensors:
        return PromptTensors(
            torch.cat([p.images for p in parts]), torch.cat([p.masks for p in parts])
        )

    def tiled(self) -> PromptTensors:
        """Spatial ensemble (the paper's): the prompts in an n x n grid, subsampled to one prompt.

        Empty cells are black. Images shrink by antialiased bicubic, masks by nearest, as a
        single prompt is resized. Returns one prompt, (1, 3, S, S) each.
        """
        count, _, size, _ = self.images.shape
        side = math.ceil(math.sqrt(count))

        def grid(tensors: torch.Tensor, mode: str) -> torch.Tensor:
            black = _black(tensors)
            cells = [tensors[i] if i < count else black for i in range(side * side)]
            rows = [torch.cat(cells[r * side : (r + 1) * side], dim=2) for r in range(side)]
            canvas = torch.cat(rows, dim=1)[None].float()
            kwargs = {"antialias": True} if mode == "bicubic" else {}
            return F.interpolate(canvas, size=(size, size), mode=mode, **kwargs).to(tensors.dtype)

        return PromptTensors(grid(self.images, "bicubic"), grid(self.masks, "nearest-exact"))


def _black(tensors: torch.Tensor) -> torch.Tensor:
    """A black (3, S, S) cell in normalised space, like ``tensors``."""
    mean = torch.tensor(IMAGENET_MEAN, device=tensors.device).view(3, 1, 1)
    std = torch.tensor(IMAGENET_STD, device=tensors.device).view(3, 1, 1)
    return (-mean / std).expand(tensors.shape[1:]).to(tensors.dtype)


class SegGPTPredictor:
    """Runs SegGPT on uint8 images; owns the model, its device and its precision.

    compile: None, or a torch.compile mode applied to every block ("default"; "reduce-overhead"
    adds CUDA graphs on a GPU; "max-autotune"). pack: on a CPU in bf16 without compile, run the
    linears on weights packed once for the GEMM (model/packed.py; off only to measure it).
    """

    def __init__(
        self,
        model: SegGPT,
        device: str | torch.device = "cpu",
        dtype: torch.dtype = torch.float32,
        seg_type: str = "instance",
        name: str | None = None,
        compile: str | None = None,
        pack: bool = True,
    ) -> None:
        self.device = torch.device(device)
        self.dtype = dtype
        self.model = model.to(self.device, dtype).eval()
        if seg_type not in SEG_TYPES:
            raise UserError(f"task {seg_type!r}: expected {' or '.join(SEG_TYPES)}")
        self.task = seg_type
        self.seg_type = SEG_TYPES[seg_type]
        self.name = name or model.config.name
        self._mean = torch.tensor(IMAGENET_MEAN, device=self.device).view(1, 3, 1, 1) * 255
        self._std = torch.tensor(IMAGENET_STD, device=self.device).view(1, 3, 1, 1) * 255
        # Most queries per forward known to fit in memory (None: no out-of-memory seen yet).
        self.max_queries: int | None = None
        # Target streams of recent prompt sets, newest first: (prompt masks, target stream).
        self._targets: list[tuple[torch.Tensor, torch.Tensor]] = []
        # The target stream's first block of recent prompts, newest first: (mask, its parts).
        self._prompt_parts: list[tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]] = []
        self._target_query_half: torch.Tensor | None = None  # the mask tokens after embedding
        self.packed_linears = (
            pack and compile is None and self.device.type == "cpu" and packing_available(dtype)
        )
        if self.packed_linears:
            pack_linears(self.model)
        if compile is not None:
            for block in self.model.blocks:
                block.compile(mode=compile, dynamic=False)
                block.forward_shared = torch.compile(
                    block.forward_shared, mode=compile, dynamic=False
                )

    @property
    def attention_form(self) -> str:
        """The attention the blocks run: "bias" (as the mask), "folded" (into q, k) or "math"."""
        impl = self.model.blocks[0].attn.impl
        if impl == "sdpa":  # resolved per dtype, as Attention.attend does
            return "bias" if self.dtype == torch.float32 else "folded"
        return impl

    @property
    def size(self) -> int:
        """Side of the square prompt and query inputs, in pixels."""
        return self.model.config.prompt_size

    # -- preprocessing ------------------------------------------------------------------------
    def _to_device(self, images: np.ndarray | list[np.ndarray] | torch.Tensor) -> torch.Tensor:
        """uint8 pixels onto the device; pinned first on CUDA so the copy is asynchronous."""
        pixels = images if isinstance(images, torch.Tensor) else to_tensor_images(images)
        if self.device.type == "cuda" and pixels.device.type == "cpu":
            pixels = pixels.pin_memory()
        return pixels.to(self.device, non_blocking=True)

    def _normalise(self, pixels: torch.Tensor) -> torch.Tensor:
        return ((pixels - self._mean) / self._std).to(self.dtype)

    def prepare_images(self, images: np.ndarray | list[np.ndarray] | torch.Tensor) -> torch.Tensor:
        """Frames -> model input: (N, H, W, 3) uint8 -> (N, 3, S, S) normalised.

        Resized as the release does with PIL's default filter (antialiased bicubic): width
        first, then height, each pass rounded to uint8 levels, which matches PIL to one level.
        """
        pixels = self._to_device(images).float()
        height, width = pixels.shape[-2:]
        for size in ((height, self.size), (self.size, self.size)):
            if pixels.shape[-2:] != size:
                pixels = F.interpolate(pixels, size=size, mode="bicubic", antialias=True)
                pixels = pixels.round_().clamp_(0, 255)
        return self._normalise(pixels)

    def prepare_masks(self, masks: np.ndarray | list[np.ndarray] | torch.Tensor) -> torch.Tensor:
        """Painted masks -> model input: (N, H, W, 3) uint8 -> (N, 3, S, S), nearest resize."""
        pixels = self._to_device(masks).float()
        if pixels.shape[-2:] != (self.size, self.size):
            pixels = F.interpolate(pixels, size=(self.size, self.size), mode="nearest-exact")
        return self._normalise(pixels)

    def prepare_prompts(
        self, images: np.ndarray | list[np.ndarray], masks: np.ndarray | list[np.ndarray]
    ) -> PromptTensors:
        """Prompt frames and their painted masks, uint8 (P, H, W, 3) each, ready for the model."""
        return PromptTensors(self.prepare_images(images), self.prepare_masks(masks))

    # -- inference ----------------------------------------------------------------------------
    def paint(self, prompts: PromptTensors, queries: torch.Tensor) -> torch.Tensor:
        """Paint every query's mask using all prompts (feature ensemble when more than one).

        prompts: P prompts, (P, 3, S, S) each; queries: (Q, 3, S, S) from :meth:`prepare_images`.
        Returns (Q, 3, S, S) float RGB in [0, 255].
        """
        return self.paint_each([(prompts, queries)])[0]

    @torch.inference_mode()
    def paint_each(self, jobs: list[tuple[PromptTensors, torch.Tensor]]) -> list[torch.Tensor]:
        """:meth:`paint` for each (prompts, queries) job; jobs with as many prompts share one
        model call (a frame's full pass and its small objects' crop passes: larger matrices,
        one walk through the blocks). On out-of-memory a call's queries are split in halves
        until they fit, and the size that fits is kept for later calls.
        """
        painted: list[torch.Tensor | None] = [None] * len(jobs)
        groups: dict[int, list[int]] = {}
        for position, (prompts, _) in enumerate(jobs):
            groups.setdefault(len(prompts), []).append(position)
        for members in groups.values():
            prompt_sets = [jobs[position][0] for position in members]
            queries = [jobs[position][1] for position in members]
            targets = self.prompt_targets(prompt_sets)
            if len(members) == 1:  # (1, P, ...): broadcast over the queries without a copy
                images, targets = prompt_sets[0].images[None], targets[0][None]
            else:
                counts = [query.shape[0] for query in queries]
                images = torch.cat(
                    [p.images.expand(n, -1, -1, -1, -1) for p, n in zip(prompt_sets, counts)]
                )
                targets = torch.cat([t.expand(n, -1, -1, -1, -1) for t, n in zip(targets, counts)])
            group = self._paint_fitting(images, targets, torch.cat(queries))
            for position, part in zip(members, group.split([q.shape[0] for q in queries])):
                painted[position] = part
        return painted

    def _paint_fitting(
        self, images: torch.Tensor, targets: torch.Tensor, queries: torch.Tensor
    ) -> torch.Tensor:
        """:meth:`_paint` in as many calls as memory needs (see :meth:`paint_each`)."""
        painted, start = [], 0
        while start < queries.shape[0]:
            count = min(self.max_queries or queries.shape[0], queries.shape[0] - start)
            part = slice(start, start + count) if images.shape[0] > 1 else slice(None)
            try:
                painted.append(
                    self._paint(images[part], targets[part], queries[start : start + count])
                )
            except torch.OutOfMemoryError:
                if count == 1:
                    raise
                self.max_queries = count // 2
                if self.device.type == "cuda":
                    torch.cuda.empty_cache()
                continue
            start += count
        return torch.cat(painted)

    def prompt_targets(self, prompt_sets: list[PromptTensors]) -> list[torch.Tensor]:
        """The target stream of each prompt set (P prompts each) up to the merge, (P, rows, cols,
        C), cached; the sets not cached are finished in one call.

        It depends only on the prompts' masks, not on the query: it serves every query of a
        batch, and every later frame while the masks are unchanged (e.g. without memory). Its
        first block is kept per prompt (:meth:`_target_prompts`), so a memory that moves on by
        one frame pays that block for the new frame alone.
        """
        found = [self._cached_targets(prompts.masks) for prompts in prompt_sets]
        missing = [prompts for prompts, targets in zip(prompt_sets, found) if targets is None]
        if missing:
            count = len(missing[0])
            prompt_halves, attended = self._target_prompts(
                torch.cat([prompts.masks for prompts in missing])
            )
            encoded = self.model.finish_targets(
                prompt_halves, attended, self._target_query_half, count
            )
            fresh = encoded.split(count)
            for prompts, targets in zip(missing, fresh):
                self._targets.insert(0, (prompts.masks, targets))
            fresh_in_order = iter(fresh)
            found = [next(fresh_in_order) if targets is None else targets for targets in found]
            while sum(len(masks) for masks, _ in self._targets) > TARGET_CACHE_PROMPTS:
                self._targets.pop()
        return found

    def _target_prompts(self, masks: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The target stream's first block for each prompt mask (N, 3, S, S), cached per mask:
        SegGPT.encode_target_prompts' prompt halves and attention outputs, (N, ...) each."""
        parts: list[tuple[torch.Tensor, torch.Tensor] | None] = []
        for mask in masks:
            parts.append(None)
            for index, (cached, halves) in enumerate(self._prompt_parts):
                if torch.equal(cached, mask):
                    self._prompt_parts.insert(0, self._prompt_parts.pop(index))
                    parts[-1] = halves
                    break
        new = [i for i, part in enumerate(parts) if part is None]
        if new:
            # The query half of the target is replaced by mask tokens; the release fills it with
            # the prompt's mask, which we copy so the raw inputs are identical.
            tgts = torch.cat([masks[new], masks[new]], dim=2)
            seg_type = torch.full((len(new),), self.seg_type, device=self.device)
            halves, attended, self._target_query_half = self.model.encode_target_prompts(
                tgts, self._masked_query(), seg_type
            )
            for position, i in enumerate(new):
                parts[i] = (halves[position : position + 1], attended[position : position + 1])
                self._prompt_parts.insert(0, (masks[i], parts[i]))
            del self._prompt_parts[TARGET_CACHE_PROMPTS:]
        return torch.cat([half for half, _ in parts]), torch.cat([att for _, att in parts])

    def forget_targets(self) -> None:
        """Empty the target-stream caches (benchmarks that time the stream from scratch)."""
        self._targets.clear()
        self._prompt_parts.clear()

    def _cached_targets(self, masks: torch.Tensor) -> torch.Tensor | None:
        for index, (cached, targets) in enumerate(self._targets):
            if cached.shape == masks.shape and torch.equal(cached, masks):
                self._targets.insert(0, self._targets.pop(index))
                return targets
        return None

    def _masked_query(self) -> torch.Tensor:
        """bool_masked_pos: the query half of the target is masked, (1, L)."""
        rows, cols = self.model.config.grid
        masked = torch.zeros(1, rows * cols, dtype=torch.bool, device=self.device)
        masked[:, rows * cols // 2 :] = True
        return masked

    def _paint(
        self, images: torch.Tensor, targets: torch.Tensor, queries: torch.Tensor
    ) -> torch.Tensor:
        """images: prompt images (Q or 1, P, 3, S, S); targets: their target streams (Q or 1, P,
        rows, cols, C); queries (Q, 3, S, S). Returns (Q, 3, S, S) float RGB in [0, 255]."""
        num_queries, num_prompts = queries.shape[0], images.shape[1]
        imgs = torch.cat(
            [
                images.expand(num_queries, -1, -1, -1, -1),
                queries.unsqueeze(1).expand(-1, num_prompts, -1, -1, -1),
            ],
            dim=3,
        ).flatten(0, 1)
        seg_type = torch.full((imgs.shape[0],), self.seg_type, device=self.device)
        features = self.model.forward_features(
            imgs,
            None,
            self._masked_query(),
            seg_type,
            prompts_per_query=num_prompts,
            targets=targets.flatten(0, 1),
        )
        # Every prompt of a query carries the same ensembled query half: decode the first's.
        features = [f.unflatten(0, (num_queries, num_prompts))[:, 0] for f in features]
        query_half = self.model.forward_query_decoder(features).float()
        return (query_half * self._std + self._mean).clamp_(0, 255)

    def predict(
        self,
        prompt_images: list[np.ndarray],
        prompt_masks: list[np.ndarray],
        query: np.ndarray,
    ) -> np.ndarray:
        """One query from uint8 prompts: images (H, W, 3), painted masks (H, W, 3), query (H, W, 3).

        Returns the painted query mask (S, S, 3) float32 in [0, 255] at the model's input size.
        """
        prompts = self.prepare_prompts(prompt_images, prompt_masks)
        painted = self.paint(prompts, self.prepare_images(query))
        return painted[0].permute(1, 2, 0).cpu().numpy()


def model_name(model: str | None = None, checkpoint: Path | str | None = None) -> str:
    """The name of the model :func:`load_predictor` loads for these arguments, without loading
    it: the checkpoint's path, the model named, or the default model (see default_model)."""
    if checkpoint is not None:
        return str(checkpoint)
    return model or default_model()


def load_predictor(
    model: str | None = None,
    checkpoint: Path | str | None = None,
    device: str = "auto",
    dtype: str = "auto",
    seg_type: str = "instance",
) -> SegGPTPredictor:
    """A predictor from a checkpoint file or folder, or a model name; nothing is downloaded.

    Neither given: seggpt-vit-large when its weights are on this machine, else the packaged
    model, which is said in one line on stderr (see model.checkpoint.default_model). The
    predictor's ``name`` is the model's name or the checkpoint's path. On the CPU it runs the
    path chosen for this CPU's features (runtime.choose_cpu_path).
    """
    torch_device = runtime.resolve_device(device)
    torch_dtype = runtime.resolve_dtype(dtype, torch_device)
    cpu_path = None
    if torch_device.type == "cpu":
        cpu_path = runtime.choose_cpu_path(runtime.detect_cpu_features())
        runtime.tune_cpu_runtime(cpu_path.threads)
    name = model_name(model, checkpoint)
    network = load_model(checkpoint if checkpoint is not None else name)
    if checkpoint is None and model is None and name == PACKAGED_MODEL:
        print(FALLBACK_NOTE, file=sys.stderr, flush=True)
    pack = cpu_path is None or cpu_path.packed_linears
    predictor = SegGPTPredictor(
        network, torch_device, torch_dtype, seg_type=seg_type, name=name, pack=pack
    )
    if cpu_path is not None:
        predictor.model.set_attention(cpu_path.attention)
    return predictor
