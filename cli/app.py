"""Entry point of the ``seggpt-video`` command: assembles the subcommands."""

from __future__ import annotations

import sys

import click
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
INTERRUPTED = 130  # the shell's code for a command ended by Ctrl-C (128 + SIGINT)

# Each subcommand lives in its own module and registers itself on `app`.
from seggpt_video.cli import (  # noqa: E402,F401
    commands_batch,
    commands_compare,
    commands_download,
    commands_eval,
    commands_info,
    commands_run,
    commands_train,
)

err_console = Console(stderr=True)

# Typer 0.29+ raises the exceptions of the copy of click it bundles; older ones raise click's.
try:
    from typer._click.exceptions import ClickException as _TyperClickException
except ImportError:  # pragma: no cover - an older typer
    _TyperClickException = click.ClickException
CLICK_ERRORS = (click.ClickException, _TyperClickException)
ABORTS = (KeyboardInterrupt, click.Abort, typer.Abort)


def main() -> None:
    """Run the CLI: a bad option or input is one red line on stderr and exit code 2.

    Click's own handling would print usage errors as a framed block and Ctrl-C silently; here
    both become one line, and an interrupted command says how to go on.
    """
    try:
        code = app(standalone_mode=False)
    except UserError as error:
        err_console.print(f"[bold red]error:[/] {error}", highlight=False, soft_wrap=True)
        sys.exit(2)
    except CLICK_ERRORS as error:
        err_console.print(
            f"[bold red]error:[/] {error.format_message()}", highlight=False, soft_wrap=True
        )
        sys.exit(error.exit_code)
    except ABORTS:
        code = INTERRUPTED
    if code == INTERRUPTED:
        err_console.print("interrupted: re-run the same command to continue where it stopped")
    sys.exit(code if isinstance(code, int) else 0)
