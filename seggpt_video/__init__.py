"""seggpt-video: video object segmentation by in-context inference with SegGPT.

    import seggpt_video
    segmenter = seggpt_video.load()
    for frame in segmenter.segment("clip.mp4", masks={0: "first.png"}):
        ...

Importing this package is light (no torch): the model and its libraries load in ``load()``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"
__all__ = ["SegmentedFrame", "UserError", "VideoSegmenter", "__version__", "load"]

if TYPE_CHECKING:
    from seggpt_video.api import VideoSegmenter
    from seggpt_video.engine import SegmentedFrame
    from seggpt_video.errors import UserError

_LAZY = {
    "VideoSegmenter": "seggpt_video.api",
    "SegmentedFrame": "seggpt_video.engine",
    "UserError": "seggpt_video.errors",
}


def load(
    model: str | None = None,
    checkpoint: Any = None,
    device: str = "auto",
    dtype: str = "auto",
    **options: Any,
) -> VideoSegmenter:
    """A segmenter with the CLI's choices and defaults; see :func:`seggpt_video.api.load`."""
    from seggpt_video.api import load as load_segmenter

    return load_segmenter(model, checkpoint, device, dtype, **options)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'seggpt_video' has no attribute {name!r}")
