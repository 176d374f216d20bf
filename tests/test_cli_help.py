"""The CLI's help, --version and argument errors: readable at 80 columns, literal, and fast.

Fast means torch-free: the commands import torch, the model and the datasets inside their
function bodies, so --help, --version and a wrong option never pay for them (about 1 s of import
on a 2-core machine). The timing bounds below are loose because the test machine may be busy; the
regression guard is the check that the help path leaves torch and numpy unimported.
"""

from __future__ import annotations

import json
import os
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

import pytest
import tomllib
import typer

import seggpt_video
from seggpt_video.cli.app import app

REPO = Path(__file__).resolve().parents[1]
CLI = [sys.executable, "-m", "seggpt_video.cli"]
WIDTH = 80
HEAVY = ("torch", "numpy", "kornia", "av", "decord", "safetensors", "huggingface_hub", "PIL")
SECONDS = 1.5  # measured 0.17-0.30 s on 2 busy cores (torch alone imports in ~1.1 s)
# typer's own type labels, shown when an option declares no metavar
TYPE_LABELS = re.compile(r"<(str|int|float|path|list\[.*?\]|int range|float range)>|\bTEXT\b")

COMMANDS = sorted(typer.main.get_command(app).commands)


def cli(*args: str, columns: int = WIDTH) -> subprocess.CompletedProcess[str]:
    """``seggpt-video ARGS`` in a fresh interpreter, as a user's shell would run it."""
    env = {**os.environ, "COLUMNS": str(columns), "TERMINAL_WIDTH": str(columns)}
    return subprocess.run(CLI + list(args), capture_output=True, text=True, env=env, cwd=REPO)


def help_text(*command: str) -> str:
    result = cli(*command, "--help")
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_every_command_is_covered():
    # the commands as the lead and the other engineers add them: all are checked below
    assert {"run", "batch", "eval", "info", "download", "train", "tune", "demo"} <= set(COMMANDS)


@pytest.mark.parametrize(
    "command", [[], *([name] for name in COMMANDS)], ids=lambda c: "-".join(c) or "top"
)
def test_help_is_plain_ascii_within_80_columns(command: list[str]):
    text = help_text(*command)
    assert "Usage: seggpt-video" in text
    odd = sorted({char for char in text if not (" " <= char <= "~" or char == "\n")})
    assert not odd, f"characters outside printable ASCII (emoji, box lines): {odd}"
    long = [line for line in text.splitlines() if len(line) > WIDTH]
    assert not long, f"lines wider than {WIDTH} columns: {long}"


@pytest.mark.parametrize("name", COMMANDS)
def test_every_option_names_what_it_takes(name: str):
    """Each option taking a value shows a metavar (N, DIR, START:END) or its choices, not typer's
    type label (<str>, <list[str]>, <path>)."""
    lines = help_text(name).splitlines()
    command = typer.main.get_command(app).commands[name]
    options = [p for p in command.params if p.param_type_name == "option" and not p.hidden]
    assert options
    for param in options:
        if param.is_flag:
            continue
        longest = max(param.opts, key=len)
        shown = [line for line in lines if re.match(rf"  (-\w, )?{re.escape(longest)}( |$)", line)]
        assert len(shown) == 1, (longest, shown)
        assert param.metavar or "|" in shown[0], f"{name} {longest}: no metavar: {shown[0]}"
        assert not TYPE_LABELS.search(shown[0]), shown[0]


def test_run_help_shows_its_metavars_and_text_as_written():
    text = help_text("run")
    for shown in ("--mask [FRAME:]FILE", "--frames START:END", "-o, --output DIR", "--memory N"):
        assert shown in text
    # rich markup once turned `START:END:` into "START" and an emoji
    assert "START:END: segment only these frames" in text
    assert "<list[str]>" not in text


def test_square_brackets_in_help_survive():
    assert "video,mask[,name]" in help_text("batch")
    text = help_text("eval")
    assert "--shard K/N" in text and "--predictions DIR" in text


def test_version():
    result = cli("--version")
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"seggpt-video {seggpt_video.__version__}\n"
    assert seggpt_video.__version__ == "0.1.0"


def test_version_is_the_packages_version():
    """One version: pyproject's must be seggpt_video.__version__."""
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    if "version" in project.get("dynamic", []):
        return  # read from seggpt_video.__version__ by the build
    assert project["version"] == seggpt_video.__version__


def test_refine_default_matches_the_library():
    """options.py spells the default out (no torch import to declare options)."""
    from seggpt_video.cli.options import DEFAULT_REFINE, REFINE_DEFAULT
    from seggpt_video.refine import DEFAULT_REFINE as LIBRARY_DEFAULT

    assert DEFAULT_REFINE == LIBRARY_DEFAULT == REFINE_DEFAULT.value


def test_crops_help_names_the_librarys_threshold():
    """options.py spells crops.CROP_BELOW out (crops.py imports numpy)."""
    from seggpt_video.cli.options import CropsOption
    from seggpt_video.crops import CROP_BELOW

    assert f"under {CROP_BELOW:.0%} of the frame" in CropsOption.__metadata__[0].help


def test_help_version_and_errors_import_no_torch():
    """The real regression guard: every help, --version and a bad option, without torch."""
    script = f"""
import json, sys
import seggpt_video
light = not any(name in sys.modules for name in {HEAVY!r})
from typer.testing import CliRunner
from seggpt_video.cli.app import app
runner = CliRunner()
commands = {[[]] + [[name] for name in COMMANDS]!r}
codes = [runner.invoke(app, [*command, "--help"]).exit_code for command in commands]
codes.append(runner.invoke(app, ["--version"]).exit_code)
codes.append(runner.invoke(app, ["run", "--bogus"]).exit_code)
print(json.dumps({{"light": light, "codes": codes,
                  "heavy": [name for name in {HEAVY!r} if name in sys.modules]}}))
"""
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, cwd=REPO, check=True
    )
    seen = json.loads(result.stdout)
    assert seen["light"], "import seggpt_video imported a heavy module"
    assert seen["heavy"] == [], f"the help path imported {seen['heavy']}"
    assert seen["codes"] == [0] * (len(COMMANDS) + 2) + [2]


@pytest.mark.parametrize(
    "args", [["--help"], ["run", "--help"], ["--version"], ["run", "--bogus"]], ids=" ".join
)
def test_answers_quickly(args: list[str]):
    times = []
    for _ in range(3):
        began = time.perf_counter()
        result = cli(*args)
        times.append(time.perf_counter() - began)
    assert result.returncode == (2 if "--bogus" in args else 0), result.stderr
    assert statistics.median(times) < SECONDS, times


def test_bad_option_is_one_line():
    result = cli("run", "--bogus")
    assert result.returncode == 2
    assert result.stderr == "error: No such option: --bogus\n"


def test_error_messages_print_paths_as_written(tmp_path: Path):
    """A path with [brackets] or :colons: is neither markup nor an emoji code in the error."""
    video = tmp_path / "a[bold]b:smile:.mp4"
    result = cli("run", str(video), "--mask", str(tmp_path / "m.png"), columns=400)
    assert result.returncode == 2
    assert f"error: {video}:" in result.stderr


def test_no_arguments_prints_the_help():
    result = cli()
    assert result.returncode == 2  # as click does: the help, on stderr, is not a success
    assert result.stderr.startswith("Usage: seggpt-video [OPTIONS] COMMAND [ARGS]...")
    assert "error" not in result.stderr.splitlines()[0]
