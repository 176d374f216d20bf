"""Entry point of the ``seggpt-video`` command: assembles the subcommands."""

from __future__ import annotations

import sys

import typer
from rich.console import Console

from seggpt_video.errors import UserError

app = typer.Typer(
    name="seggpt-video",
    help="Video object segmentation by in-context inference with SegGPT.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

# Each subcommand lives in its own module and registers itself on `app`.
from seggpt_video.cli import (  # noqa: E402,F401
    commands_eval,
    commands_info,
    commands_run,
    commands_train,
)

err_console = Console(stderr=True)


def main() -> None:
    """Run the CLI; user errors become one red line on stderr and exit code 2."""
    try:
        app()
    except UserError as error:
        err_console.print(f"[bold red]error:[/] {error}", highlight=False, soft_wrap=True)
        sys.exit(2)
    except KeyboardInterrupt:
        err_console.print("interrupted; re-run the same command to resume")
        sys.exit(130)
