"""The friendly API over the raw network: uint8 images and masks in, the query's painted mask out.

All pre- and post-processing lives here: resizing to the model's square input, ImageNet
normalisation, stacking prompt over query, device and precision.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from seggpt_video.errors import UserError
from seggpt_video.model import SegGPT, load_model

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
DEFAULT_MODEL = "seggpt-tiny"
SEG_TYPES = {"semantic": 0, "instance": 1}


def resolve_device(device: str = "auto") -> torch.device:
    """'auto' picks the first CUDA device when there is one, else the CPU."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except RuntimeError:
        raise UserError(f"--device {device}: expected auto, cpu, cuda or cuda:N") from None
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise UserError(f"--device {device}: CUDA is not available on this machine")
    return resolved


def resolve_dtype(dtype: str, device: torch.device) -> torch.dtype:
    """'auto' is fp16 on CUDA and fp32 on the CPU; fp16 on the CPU is allowed but slow."""
    names = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
    aliases = {"float32": "fp32", "float16": "fp16", "half": "fp16", "bfloat16": "bf16"}
    if dtype == "auto":
        return torch.float16 if device.type == "cuda" else torch.float32
    dtype = aliases.get(dtype, dtype)
    if dtype not in names:
        raise UserError(f"--dtype {dtype}: expected auto, fp32, fp16 or bf16")
    return names[dtype]


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


class SegGPTPredictor:
    """Runs SegGPT on uint8 images; owns the model, its device and its precision."""

    def __init__(
        self,
        model: SegGPT,
        device: str | torch.device = "cpu",
        dtype: torch.dtype = torch.float32,
        seg_type: str = "instance",
        name: str | None = None,
    ) -> None:
        self.device = torch.device(device)
        self.dtype = dtype
        self.model = model.to(self.device, dtype).eval()
        self.seg_type = SEG_TYPES[seg_type]
        self.name = name or model.config.name
        self._mean = torch.tensor(IMAGENET_MEAN, device=self.device).view(1, 3, 1, 1) * 255
        self._std = torch.tensor(IMAGENET_STD, device=self.device).view(1, 3, 1, 1) * 255

    @property
    def size(self) -> int:
        """Side of the square prompt and query inputs, in pixels."""
        return self.model.config.prompt_size

    # -- preprocessing ------------------------------------------------------------------------
    def _normalise(self, pixels: torch.Tensor) -> torch.Tensor:
        return ((pixels - self._mean) / self._std).to(self.dtype)

    def prepare_images(self, images: np.ndarray | list[np.ndarray] | torch.Tensor) -> torch.Tensor:
        """Frames -> model input: (N, H, W, 3) uint8 -> (N, 3, S, S) normalised.

        Resized as the release does with PIL's default filter (antialiased bicubic): width
        first, then height, each pass rounded to uint8 levels, which matches PIL to one level.
        """
        pixels = images if isinstance(images, torch.Tensor) else to_tensor_images(images)
        pixels = pixels.to(self.device, non_blocking=True).float()
        height, width = pixels.shape[-2:]
        for size in ((height, self.size), (self.size, self.size)):
            if pixels.shape[-2:] != size:
                pixels = F.interpolate(pixels, size=size, mode="bicubic", antialias=True)
                pixels = pixels.round_().clamp_(0, 255)
        return self._normalise(pixels)

    def prepare_masks(self, masks: np.ndarray | list[np.ndarray] | torch.Tensor) -> torch.Tensor:
        """Painted masks -> model input: (N, H, W, 3) uint8 -> (N, 3, S, S), nearest resize."""
        pixels = masks if isinstance(masks, torch.Tensor) else to_tensor_images(masks)
        pixels = pixels.to(self.device, non_blocking=True).float()
        if pixels.shape[-2:] != (self.size, self.size):
            pixels = F.interpolate(pixels, size=(self.size, self.size), mode="nearest-exact")
        return self._normalise(pixels)

    def prepare_prompts(
        self, images: np.ndarray | list[np.ndarray], masks: np.ndarray | list[np.ndarray]
    ) -> PromptTensors:
        """Prompt frames and their painted masks, uint8 (P, H, W, 3) each, ready for the model."""
        return PromptTensors(self.prepare_images(images), self.prepare_masks(masks))

    # -- inference ----------------------------------------------------------------------------
    @torch.inference_mode()
    def paint(self, prompts: PromptTensors, queries: torch.Tensor) -> torch.Tensor:
        """Paint every query's mask using all prompts (feature ensemble when more than one).

        prompts: P prompts, (P, 3, S, S) each; queries: (Q, 3, S, S) from :meth:`prepare_images`.
        Returns (Q, 3, S, S) float RGB in [0, 255].
        """
        num_prompts, num_queries = len(prompts), queries.shape[0]
        imgs = torch.cat(
            [
                prompts.images.unsqueeze(0).expand(num_queries, -1, -1, -1, -1),
                queries.unsqueeze(1).expand(-1, num_prompts, -1, -1, -1),
            ],
            dim=3,
        ).flatten(0, 1)
        # The query half of the target is replaced by mask tokens; the release fills it with the
        # prompt's mask, which we copy so the raw inputs are identical.
        tgts = torch.cat([prompts.masks, prompts.masks], dim=2)
        tgts = tgts.unsqueeze(0).expand(num_queries, -1, -1, -1, -1).flatten(0, 1)
        rows, cols = self.model.config.grid
        bool_masked_pos = torch.zeros(1, rows * cols, dtype=torch.bool, device=self.device)
        bool_masked_pos[:, rows * cols // 2 :] = True
        seg_type = torch.full((imgs.shape[0],), self.seg_type, device=self.device)
        features = self.model.forward_features(
            imgs, tgts, bool_masked_pos, seg_type, prompts_per_query=num_prompts
        )
        # Every prompt of a query carries the same ensembled query half: decode the first's.
        features = [f.unflatten(0, (num_queries, num_prompts))[:, 0] for f in features]
        output = self.model.forward_decoder(features)
        query_half = output[:, :, output.shape[2] // 2 :].float()
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


def load_predictor(
    model: str | None = None,
    checkpoint: Path | str | None = None,
    device: str = "auto",
    dtype: str = "auto",
    seg_type: str = "instance",
) -> SegGPTPredictor:
    """A predictor from a checkpoint file or folder, or a model name (default: the packaged one)."""
    torch_device = resolve_device(device)
    torch_dtype = resolve_dtype(dtype, torch_device)
    source = checkpoint if checkpoint is not None else (model or DEFAULT_MODEL)
    network = load_model(source)
    name = str(checkpoint) if checkpoint is not None else (model or DEFAULT_MODEL)
    return SegGPTPredictor(network, torch_device, torch_dtype, seg_type=seg_type, name=name)
