"""benchmarks/gpu_check.py runs on the CPU at test size, so it cannot rot before a GPU is lent."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).parents[1] / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))
import gpu_check  # noqa: E402

SECTIONS = (
    "precision",
    "throughput",
    "crop_batching",
    "attention",
    "compile",
    "oom_backoff",
    "end_to_end",
    "examples",
)


def run_check(tmp_path: Path, *extra: str) -> dict:
    """The documented CPU command, its JSON back."""
    out = tmp_path / "gpu_check.json"
    command = [sys.executable, str(BENCHMARKS / "gpu_check.py"), "--device", "cpu"]
    command += ["--preset", "test-small", "--json", str(out), *extra]
    finished = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert finished.returncode == 0, finished.stderr[-3000:]
    assert "end to end" in finished.stdout  # the tables were printed
    return json.loads(out.read_text())


def numbers(value: object) -> list[float]:
    """Every int and float anywhere in a JSON value."""
    if isinstance(value, dict):
        return [n for item in value.values() for n in numbers(item)]
    if isinstance(value, list):
        return [n for item in value for n in numbers(item)]
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return [float(value)]
    return []


@pytest.fixture(scope="module")
def result(tmp_path_factory: pytest.TempPathFactory) -> dict:
    return run_check(tmp_path_factory.mktemp("gpu_check"))


def test_every_section_is_there_and_every_number_is_finite(result):
    for section in SECTIONS:
        assert section in result, section
        assert '"error":' not in json.dumps(result[section]), result[section]
    assert all(math.isfinite(n) for n in numbers(result))
    machine = result["machine"]
    assert machine["gpu"] is None and machine["torch"]
    assert machine["torch_threads"] == 1  # test size runs on one thread
    assert "cpu_features" in machine and isinstance(machine["cpu_features"]["flags"], list)
    assert result["settings"]["peak_memory_source"].startswith("profiler")


def test_crop_batching_paints_what_separate_calls_paint(result):
    rows = result["crop_batching"]["cases"]
    assert [row["jobs"] for row in rows] == [2, 4]
    for row in rows:
        assert row["max_abs_diff_levels"] < 0.05  # only the matrices' shapes differ
        assert row["seconds_grouped"] > 0 and row["seconds_separate"] > 0
        assert row["speedup"] == pytest.approx(row["seconds_separate"] / row["seconds_grouped"])


def test_precision_differs_from_fp32_a_little(result):
    rows = {(row["prompts"], row["dtype"]): row for row in result["precision"]["cases"]}
    assert set(rows) == {(p, d) for p in (1, 9) for d in ("fp32 again", "fp16", "bf16")}
    for prompts in (1, 9):
        # The same fp32 computation twice on the CPU is bit-identical: the comparison is sound.
        assert rows[prompts, "fp32 again"]["max_abs_diff_levels"] == 0
        assert rows[prompts, "fp32 again"]["median_split_iou_min"] == 1
        assert 0 < rows[prompts, "fp16"]["max_abs_diff_levels"] < 2
        assert 0 < rows[prompts, "bf16"]["max_abs_diff_levels"] < 10
        # bf16 keeps 8 mantissa bits, fp16 11: bf16 is the coarser.
        assert (
            rows[prompts, "bf16"]["mean_abs_diff_levels"]
            > rows[prompts, "fp16"]["mean_abs_diff_levels"]
        )
        for dtype in ("fp16", "bf16"):
            row = rows[prompts, dtype]
            assert 0 <= row["mask_iou_min"] <= row["mask_iou_mean"] <= 1
            assert 0 <= row["median_split_iou_min"] < 1  # pixels near the threshold flip


def test_throughput_has_every_batch_and_prompt_count(result):
    rows = {(row["prompts"], row["batch"]): row for row in result["throughput"]["cases"]}
    assert set(rows) == {(p, b) for p in (1, 9) for b in (1, 4, 8, 16)}
    for (_, batch), row in rows.items():
        assert row["seconds_per_frame"] > 0
        assert row["seconds_per_call"] == pytest.approx(row["seconds_per_frame"] * batch)
        assert row["peak_memory_bytes"] > 0
        assert len(row["seconds_all"]) == result["settings"]["repeats"]
    # More queries (or prompts) in one forward hold more activations at once.
    assert rows[1, 16]["peak_memory_bytes"] > rows[1, 1]["peak_memory_bytes"]
    assert rows[9, 1]["peak_memory_bytes"] > rows[1, 1]["peak_memory_bytes"]


def test_attention_forms_agree_with_the_plain_softmax(result):
    rows = result["attention"]["cases"]
    seen = {(row["dtype"], row["form"], row["backend"]) for row in rows}
    for dtype in ("fp32", "bf16"):
        for form in ("folded", "bias"):
            assert {(dtype, form, b) for b in ("auto", "flash", "math")} <= seen
        assert (dtype, "math", "-") in seen
    for row in rows:
        assert row["seconds_per_frame"] > 0 and row["peak_memory_bytes"] > 0
        limit = 0.01 if row["dtype"] == "fp32" else 10
        assert row["max_abs_diff_vs_fp32_math"] < limit, row


def test_cpu_skips_compile_and_oom_with_reasons(result):
    modes = [row["mode"] for row in result["compile"]["cases"]]
    assert modes == ["default", "reduce-overhead", "max-autotune"]
    assert all(row["skipped"].startswith("CPU") for row in result["compile"]["cases"])
    assert result["oom_backoff"]["skipped"].startswith("CPU")


def test_end_to_end_runs_the_720p_clip(result):
    end = result["end_to_end"]
    assert end["clip"]["size"] == "1280x720"
    assert [row["batch_size"] for row in end["cases"]] == [1, 8]
    for row in end["cases"]:
        assert row["frames"] == end["clip"]["frames"]
        assert row["frames_per_second"] > 0
        assert {"total", "decode", "write"} <= set(row["seconds"])


def test_oom_budget_fits_one_query_and_not_the_batch():
    gib = 2**30
    fraction, budget = gpu_check.oom_budget(2 * gib, gib // 16, gib, 40 * gib)
    assert gib // 16 < budget < gib
    assert fraction * 40 * gib == pytest.approx(2 * gib + budget)
    with pytest.raises(ValueError):
        gpu_check.oom_budget(2 * gib, gib, gib, 40 * gib)


@pytest.mark.slow
def test_cpu_compile_default_mode(tmp_path):
    compiled = run_check(tmp_path, "--cpu-compile", "--quick")["compile"]["cases"]
    assert compiled[0]["mode"] == "default" and "error" not in compiled[0], compiled[0]
    assert compiled[0]["first_call_seconds"] > compiled[0]["seconds_per_call"]
    assert compiled[0]["max_abs_diff_vs_eager"] < 0.01
