"""The SegGPT network, its presets and checkpoint formats (tensors in, tensors out)."""

from seggpt_video.model.checkpoint import load_checkpoint, load_model, save_checkpoint
from seggpt_video.model.config import PRESETS, SegGPTConfig
from seggpt_video.model.seggpt import SegGPT, count_parameters


def build_model(preset: str) -> SegGPT:
    """A randomly initialised SegGPT of a named preset."""
    return SegGPT(PRESETS[preset])


__all__ = [
    "PRESETS",
    "SegGPT",
    "SegGPTConfig",
    "build_model",
    "count_parameters",
    "load_checkpoint",
    "load_model",
    "save_checkpoint",
]
