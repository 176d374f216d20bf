"""Reading videos and masks, writing every output format. Arrays in, arrays out: no model code."""

from seggpt_video.io.masks import (
    DAVIS_PALETTE,
    MAX_OBJECTS,
    object_ids,
    read_mask,
    require_objects,
    write_palette_png,
)
from seggpt_video.io.video import (
    BACKENDS,
    VideoInfo,
    VideoSource,
    VideoWarning,
    open_video,
)
from seggpt_video.io.writers import (
    FORMATS,
    MattePNGWriter,
    MatteVideoWriter,
    OverlayWriter,
    PalettePNGWriter,
    SummaryWriter,
    Writer,
    Y4MWriter,
    draw_overlay,
    make_writers,
)

__all__ = [
    "BACKENDS",
    "DAVIS_PALETTE",
    "FORMATS",
    "MAX_OBJECTS",
    "MattePNGWriter",
    "MatteVideoWriter",
    "OverlayWriter",
    "PalettePNGWriter",
    "SummaryWriter",
    "VideoInfo",
    "VideoSource",
    "VideoWarning",
    "Writer",
    "Y4MWriter",
    "draw_overlay",
    "make_writers",
    "object_ids",
    "open_video",
    "read_mask",
    "require_objects",
    "write_palette_png",
]
