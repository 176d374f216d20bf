"""Entry point of the ``seggpt-video`` command: assembles the subcommands."""

from __future__ import annotations

import sys
from typing import Annotated

import click
import typer
from rich.console import Console
from rich.markup import escape

from seggpt_video import __version__
from seggpt_video.errors import UserError

app = typer.Typer(
    name="seggpt-video",
    help="Video object segmentation by in-context inference with SegGPT.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    # help printed as written: rich markup would turn `START:END:` into an emoji and eat `[...]`
    rich_markup_mode=None,
)
INTERRUPTED = 130  # the shell's code for a command ended by Ctrl-C (128 + SIGINT)


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"seggpt-video {__version__}")
        raise typer.Exit()


@app.callback()
def _options(
    version: Annotated[
        bool,
        typer.Option(
            "--version", is_eager=True, callback=_print_version, help="Print the version and exit."
        ),
    ] = False,
) -> None:
    """Video object segmentation by in-context inference with SegGPT."""


# Each subcommand lives in its own module and registers itself on `app` (one name a line). They
# import torch, the model and the datasets inside their command functions only, so that --help,
# --version and a wrong option answer at once (tests/test_cli_help.py checks it).
from seggpt_video.cli import (  # noqa: E402,F401
    commands_batch,
    commands_compare,
    commands_download,
    commands_eval,
    commands_info,
    commands_run,
    commands_studio,
    commands_train,
)

# messages name user paths and values: print them as they are (no emoji codes such as :smile:)
err_console = Console(stderr=True, emoji=False)

# Typer 0.29+ raises the exceptions of the copy of click it bundles; older ones raise click's.
try:
    from typer._click.exceptions import ClickException as _TyperClickException
    from typer._click.exceptions import NoArgsIsHelpError as _TyperNoArgsIsHelp
except ImportError:  # pragma: no cover - an older typer
    _TyperClickException = click.ClickException
    _TyperNoArgsIsHelp = click.exceptions.NoArgsIsHelpError
CLICK_ERRORS = (click.ClickException, _TyperClickException)
NO_ARGS = (click.exceptions.NoArgsIsHelpError, _TyperNoArgsIsHelp)  # the help, not an error
ABORTS = (KeyboardInterrupt, click.Abort, typer.Abort)


def main() -> None:
    """Run the CLI: a bad option or input is one red line on stderr and exit code 2.

    Click's own handling would print usage errors as a framed block and Ctrl-C silently; here
    both become one line, and an interrupted command says how to go on.
    """
    try:
        code = app(prog_name="seggpt-video", standalone_mode=False)  # also for python -m
    except UserError as error:
        err_console.print(
            f"[bold red]error:[/] {escape(str(error))}", highlight=False, soft_wrap=True
        )
        sys.exit(2)
    except NO_ARGS as error:
        typer.echo(error.format_message(), err=True)
        sys.exit(error.exit_code)
    except CLICK_ERRORS as error:
        err_console.print(
            f"[bold red]error:[/] {escape(error.format_message())}", highlight=False, soft_wrap=True
        )
        sys.exit(error.exit_code)
    except ABORTS:
        code = INTERRUPTED
    if code == INTERRUPTED:
        err_console.print("interrupted: re-run the same command to continue where it stopped")
    sys.exit(code if isinstance(code, int) else 0)
