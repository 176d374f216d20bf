"""seggpt-video: video object segmentation by in-context inference with SegGPT."""

__version__ = "0.1.0"
