"""Edge-aware refinement: the painted prediction, upsampled to the frame, follows the frame's edges.

SegGPT paints its answer at the model's input size (64x64 for seggpt-tiny, 448x448 for ViT-L), so
once upsampled an object's outline is a ramp a few frame pixels wide that knows nothing of the
frame. A guided filter (He et al., "Guided Image Filtering"; the fast variant, He and Sun 2015,
computes its coefficients on a subsampled grid) fits each window's scores as a linear function of
the frame's colours: where the frame has an edge the refined score steps with it, where it is flat
the score is smoothed. Tensors in, tensors out, on whatever device they are on; the scores'
meaning (and the labels and mattes decided from them) belong to ``objects.py``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch

REFINE_MODES = ("guided", "none")
DEFAULT_REFINE = "guided"
"""What `run`, `eval` and `batch` do without ``--refine``."""

MIN_RADIUS = 2
"""The smallest window radius in frame pixels (a 5x5 window)."""


@dataclass(frozen=True)
class RefineSettings:
    """The guided filter's settings, for any frame and model size.

    radius: the window's radius in pixels of the model's input, scaled to the frame:
        ``max(MIN_RADIUS, round(radius * min(H, W) / model_size))`` frame pixels (4: a window
        about 8 painted pixels wide, e.g. 61x61 frame pixels at 480p for a 64x64 model).
    eps: the regulariser, in squared units of the guide (RGB scaled to [0, 1]): edges whose local
        colour variance is well below eps are smoothed over, those above it are kept.
    subsample: the fast guided filter's factor (coefficients on a grid this many times coarser,
        then bilinearly upsampled); None: ``max(1, radius_pixels // 2)``, so the coarse window
        keeps a radius of about 2.
    """

    radius: float = 4.0
    eps: float = 1e-5
    subsample: int | None = None

    def __post_init__(self) -> None:
        if not self.radius > 0:
            raise ValueError(f"radius {self.radius}: must be positive")
        if not self.eps > 0:
            raise ValueError(f"eps {self.eps}: must be positive")
        if self.subsample is not None and self.subsample < 1:
            raise ValueError(f"subsample {self.subsample}: must be 1 or more")

    def in_pixels(self, height: int, width: int, model_size: int) -> tuple[int, int]:
        """(radius, subsample) in frame pixels for an (height, width) frame painted at
        model_size x model_size."""
        radius = max(MIN_RADIUS, round(self.radius * min(height, width) / model_size))
        subsample = self.subsample if self.subsample is not None else max(1, radius // 2)
        return radius, subsample


DEFAULT_SETTINGS = RefineSettings()
"""The filter's settings when none are given: radius 4 model pixels, eps 1e-5, auto subsample.

Chosen on 8 DAVIS 2016 train sequences kept out of the packaged model's training (never val), by
``benchmarks/bench_refine.py --grid`` (README, Edge-aware refinement): J&F rose with the radius
up to 4-5 model pixels and with eps down to 1e-5, then levelled off; a window one painted pixel
wide (radius 0.5) gained 0.004, radius 4 with eps 1e-5 gained 0.047."""


def refine_record(mode: str, settings: RefineSettings) -> dict:
    """How a run refines, as its settings file (run.json) keeps it: the mode, and the filter's
    settings when it filters (so a run whose defaults changed is not resumed with the new ones)."""
    if mode not in REFINE_MODES:
        raise ValueError(f"refine {mode!r}: expected {' or '.join(REFINE_MODES)}")
    return {"mode": mode, **asdict(settings)} if mode == "guided" else {"mode": mode}


def refine_scores(
    scores: torch.Tensor, guide: torch.Tensor, settings: RefineSettings, model_size: int
) -> torch.Tensor:
    """Scores refined along the guide's edges, each channel on its own.

    scores: (B, K, H, W) float in [0, 1] (K soft scores per pixel, e.g. one per object);
    guide: (B, 3, H, W) uint8 RGB frames; model_size: the side of the model's input the scores
    were painted at. Returns (B, K, H, W) float32 in [0, 1] on the scores' device. The filter is
    linear in the scores, so channels that summed to one still do (before the clamp to [0, 1]).
    """
    if scores.shape[0] != guide.shape[0] or scores.shape[-2:] != guide.shape[-2:]:
        raise ValueError(f"scores {tuple(scores.shape)} and guide {tuple(guide.shape)} differ")
    from kornia.filters import guided_blur  # 0.3 s to import: paid only by runs that refine

    height, width = scores.shape[-2:]
    radius, subsample = settings.in_pixels(height, width, model_size)
    image = guide.to(scores.device, torch.float32) / 255.0
    refined = guided_blur(
        image,
        scores.float(),
        kernel_size=2 * radius + 1,
        eps=settings.eps,
        border_type="replicate",  # any frame size; 'reflect' needs the window inside the frame
        subsample=subsample,
        separable=True,
    )
    return refined.clamp_(0.0, 1.0)
