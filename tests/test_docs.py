"""The Python API page's code runs as written: its python blocks, in order, in one namespace."""

from __future__ import annotations

import re
from pathlib import Path

DOCS = Path(__file__).resolve().parent.parent / "docs"


def python_blocks(page: Path) -> list[str]:
    return re.findall(r"```python\n(.*?)```", page.read_text(encoding="utf-8"), flags=re.S)


def test_the_api_page_runs_as_written(tmp_path, monkeypatch, capsys):
    blocks = python_blocks(DOCS / "api.md")
    assert len(blocks) >= 4
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    for block in blocks:
        exec(compile(block, "docs/api.md", "exec"), namespace)
    printed = capsys.readouterr().out
    assert "40 frames; object areas on the last frame:" in printed
    assert (tmp_path / "demo" / "out" / "synthetic-7" / "00039.png").is_file()
    # the example from the other clip finds both objects on the first and the last frame
    assert "objects found on frames 0 and 39: [1, 2] [1, 2]" in printed
