"""In-context tuning: the model frozen, a learnable prompt optimised on a few annotated frames.

The prompt (an image and its painted mask, in the model's normalised space) starts as the first
annotated frame and is trained with the coloring loss to paint every annotated frame correctly.
The result is saved as safetensors (``images`` and ``masks``, (P, 3, S, S) normalised; metadata:
model name, config, object ids) and joins the first-frame prompt in ``run --prompt-file``.
Its mask colours are the engine's colours for the same object ids (``ObjectPalette``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import safe_open, save_file
from tqdm import tqdm

from seggpt_video.errors import UserError
from seggpt_video.io.atomic import atomic_path
from seggpt_video.model import build_model, load_checkpoint, save_checkpoint
from seggpt_video.model.checkpoint import weights_file_kind
from seggpt_video.objects import ObjectPalette
from seggpt_video.predictor import IMAGENET_MEAN, IMAGENET_STD, PromptTensors, SegGPTPredictor
from seggpt_video.training.coloring import CHECKPOINT, masked_patch_loss

PROMPT_FORMAT = "seggpt-video-tuned-prompt"


@dataclass
class TunedPrompt:
    """A tuned prompt: images and masks (P, 3, S, S) normalised, for these object ids."""

    images: torch.Tensor
    masks: torch.Tensor
    object_ids: list[int]
    model_name: str
    config: dict

    def to_prompts(self) -> PromptTensors:
        return PromptTensors(self.images, self.masks)


def _pixel_range(device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Normalised values of pixel 0 and 255 per channel, each (1, 3, 1, 1)."""
    mean = torch.tensor(IMAGENET_MEAN, device=device).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, device=device).view(1, 3, 1, 1)
    return -mean / std, (1 - mean) / std


def _augment(
    queries: torch.Tensor, targets: torch.Tensor, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """The same random flip and shift (up to 1/8 of the side) of queries and their masks."""
    if torch.rand(1, generator=generator).item() < 0.5:
        queries, targets = queries.flip(-1), targets.flip(-1)
    limit = queries.shape[-1] // 8
    dy, dx = (torch.randint(-limit, limit + 1, (2,), generator=generator)).tolist()
    return queries.roll((dy, dx), dims=(2, 3)), targets.roll((dy, dx), dims=(2, 3))


def tune_prompt(
    predictor: SegGPTPredictor,
    frames: list[np.ndarray],
    labels: list[np.ndarray],
    num_prompts: int = 1,
    steps: int = 100,
    lr: float = 0.02,
    seed: int = 0,
    progress: bool = True,
) -> tuple[TunedPrompt, list[float]]:
    """Tune a prompt on annotated frames; returns it and the loss of every step.

    frames: (H, W, 3) uint8 RGB; labels: (H, W) uint8 object ids (0 = background), one per frame.
    The first ``num_prompts`` annotated frames initialise the prompt.
    """
    if not frames or len(frames) != len(labels):
        raise UserError(
            f"tune: need annotated frames, got {len(frames)} frames, {len(labels)} masks"
        )
    object_ids = sorted({int(i) for ids in labels for i in np.unique(ids)} - {0})
    if not object_ids:
        raise UserError("tune: the annotation masks are empty: no object to tune for")
    palette = ObjectPalette(object_ids)
    model = predictor.model
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    queries = predictor.prepare_images(frames).float()
    targets = predictor.prepare_masks([palette.paint(ids) for ids in labels]).float()
    count = min(num_prompts, len(frames))
    images = queries[:count].clone().requires_grad_(True)
    masks = targets[:count].clone().requires_grad_(True)
    low, high = _pixel_range(queries.device)
    optimizer = torch.optim.Adam([images, masks], lr=lr)
    generator = torch.Generator().manual_seed(seed)
    rows, cols = model.config.grid
    query_half = torch.zeros(1, rows * cols, dtype=torch.bool, device=queries.device)
    query_half[:, rows * cols // 2 :] = True
    losses = []
    for _ in tqdm(range(steps), desc="tune", unit="step", disable=not progress):
        batch_queries, batch_targets = _augment(queries, targets, generator)
        n = batch_queries.shape[0]
        imgs = torch.cat(
            [
                images.unsqueeze(0).expand(n, -1, -1, -1, -1),
                batch_queries.unsqueeze(1).expand(-1, count, -1, -1, -1),
            ],
            dim=3,
        ).flatten(0, 1)
        tgts = torch.cat(
            [
                masks.unsqueeze(0).expand(n, -1, -1, -1, -1),
                batch_targets.unsqueeze(1).expand(-1, count, -1, -1, -1),
            ],
            dim=3,
        ).flatten(0, 1)
        mask = query_half.expand(imgs.shape[0], -1)
        seg_type = torch.full((imgs.shape[0],), predictor.seg_type, device=imgs.device)
        features = model.forward_features(
            imgs.to(predictor.dtype), tgts.to(predictor.dtype), mask, seg_type, count
        )
        painted = model.forward_decoder(features).float()
        loss = masked_patch_loss(painted, tgts, mask, model.config.patch_size)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        with torch.no_grad():  # stay inside the range real pixels can take
            images.copy_(torch.maximum(torch.minimum(images, high), low))
            masks.copy_(torch.maximum(torch.minimum(masks, high), low))
        losses.append(float(loss.detach()))
    tuned = TunedPrompt(
        images=images.detach().cpu(),
        masks=masks.detach().cpu(),
        object_ids=object_ids,
        model_name=predictor.name,
        config=model.config.to_dict(),
    )
    return tuned, losses


def save_tuned_prompt(prompt: TunedPrompt, path: Path | str) -> None:
    """Write a tuned prompt as safetensors (atomically: temporary name, then rename)."""
    metadata = {
        "format": PROMPT_FORMAT,
        "model": prompt.model_name,
        "config": json.dumps(prompt.config),
        "object_ids": json.dumps(prompt.object_ids),
    }
    tensors = {"images": prompt.images.contiguous(), "masks": prompt.masks.contiguous()}
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata=metadata)


def read_tuned_prompt(path: Path | str) -> TunedPrompt:
    """Read a tuned prompt file; a missing, unreadable or foreign file is a UserError."""
    path = Path(path)
    if not path.exists():
        raise UserError(f"{path}: no such prompt file")
    if weights_file_kind(path, "a tuned prompt") != "safetensors":
        raise UserError(
            f"{path}: a PyTorch file, not a tuned prompt (make one with `seggpt-video tune`)"
        )
    try:
        with safe_open(str(path), framework="pt") as handle:
            metadata = handle.metadata() or {}
            names = set(handle.keys())
            kind = metadata.get("format")
            if kind != PROMPT_FORMAT:
                what = "model weights" if kind == "seggpt-video" else "a safetensors file"
                raise UserError(
                    f"{path}: {what}, not a tuned prompt (make one with `seggpt-video tune`)"
                )
            if names != {"images", "masks"}:
                held = ", ".join(sorted(names)) or "none"
                raise UserError(
                    f"{path}: a damaged tuned prompt: holds tensors {held}, not images and masks"
                )
            images, masks = handle.get_tensor("images"), handle.get_tensor("masks")
    except (SafetensorError, OSError, ValueError) as error:
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise UserError(f"{path}: unreadable prompt file (truncated?): {reason}") from None
    object_ids, config = _prompt_metadata(path, metadata)
    if images.ndim != 4 or images.shape[1] != 3 or images.shape != masks.shape:
        raise UserError(
            f"{path}: prompt tensors have shapes {tuple(images.shape)} and {tuple(masks.shape)}, "
            "expected two (P, 3, S, S)"
        )
    if images.shape[0] == 0 or images.shape[2] != images.shape[3]:
        raise UserError(
            f"{path}: prompt tensors have shape {tuple(images.shape)}, expected (P, 3, S, S) "
            "with at least one square prompt"
        )
    if not (images.is_floating_point() and masks.is_floating_point()):
        raise UserError(f"{path}: prompt tensors are {images.dtype}, expected floating point")
    if not (torch.isfinite(images).all() and torch.isfinite(masks).all()):
        raise UserError(f"{path}: prompt tensors hold NaN or infinite values")
    return TunedPrompt(images.float(), masks.float(), object_ids, metadata.get("model", ""), config)


def _prompt_metadata(path: Path, metadata: dict[str, str]) -> tuple[list[int], dict]:
    """Object ids (1..255) and model config from a prompt file's metadata, or UserError."""
    try:
        object_ids = json.loads(metadata["object_ids"])
        config = json.loads(metadata["config"])
    except KeyError as error:
        raise UserError(f"{path}: a damaged tuned prompt: its metadata lacks {error}") from None
    except ValueError as error:
        raise UserError(f"{path}: a damaged tuned prompt: bad metadata ({error})") from None
    if (
        not isinstance(object_ids, list)
        or not object_ids
        or not all(isinstance(i, int) and 1 <= i <= 255 for i in object_ids)
    ):
        raise UserError(
            f"{path}: a damaged tuned prompt: object_ids {metadata['object_ids'][:40]} in its "
            "metadata, expected a list of ids 1..255"
        )
    if not isinstance(config, dict):
        raise UserError(f"{path}: a damaged tuned prompt: its config metadata is not an object")
    return object_ids, config


def load_tuned_prompt(path: Path | str, predictor: SegGPTPredictor) -> PromptTensors:
    """A tuned prompt ready for ``predictor``: (P, 3, S, S) on its device and dtype.

    Raises UserError when the prompt was tuned for another input size.
    """
    prompt = read_tuned_prompt(path)
    size = prompt.images.shape[-1]
    if prompt.images.shape[-2:] != (predictor.size, predictor.size):
        raise UserError(
            f"{path}: prompt is {size}x{size} (tuned for {prompt.model_name or 'another model'}), "
            f"but the model {predictor.name} takes {predictor.size}x{predictor.size}"
        )
    return PromptTensors(
        prompt.images.to(predictor.device, predictor.dtype),
        prompt.masks.to(predictor.device, predictor.dtype),
    )


def export_weights(source: Path | str, target: Path | str) -> None:
    """Save trained weights as fp16 safetensors (half the size; loading converts back to fp32).

    source: weights any loader reads, or a training run's ``checkpoint.pt``.
    """
    source = Path(source)
    if source.name == CHECKPOINT:
        state = torch.load(source, map_location="cpu", weights_only=True)
        model = build_model(state["config"]["preset"])
        model.load_state_dict(state["model"])
    else:
        model = load_checkpoint(source)
    save_checkpoint(model.to(torch.float16), target)
