"""The Typer command-line interface (installed as ``seggpt_video.cli``)."""
