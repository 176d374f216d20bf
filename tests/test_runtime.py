"""The machine and its CPU path: features found, the path per CPU kind, bf16 only if native."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from seggpt_video import runtime
from seggpt_video.cli.app import app, main
from seggpt_video.errors import UserError
from seggpt_video.model import build_model, save_checkpoint
from seggpt_video.model.packed import packing_available
from seggpt_video.predictor import load_predictor
from seggpt_video.runtime import CpuFeatures, CpuPath, choose_cpu_path, resolve_dtype

CPU = torch.device("cpu")
# Flags as Linux names them on each kind of machine (abridged).
AMX = CpuFeatures.from_flags(
    {"amx_bf16", "amx_tile", "amx_int8", "avx512_bf16", "avx512f", "avx512_vnni", "avx2"}
)
AVX512_BF16 = CpuFeatures.from_flags({"avx512_bf16", "avx512f", "avx512_vnni", "avx_vnni", "avx2"})
AVX2_ONLY = CpuFeatures.from_flags({"avx", "avx2", "fma", "sse4_2"})
AVX512_NO_BF16 = CpuFeatures.from_flags({"avx512f", "avx512_vnni", "avx2"})
UNKNOWN = CpuFeatures.from_flags(set())
REFUSAL = (
    "--dtype bf16: this CPU has no native bfloat16 (no AVX512-BF16 or AMX); emulated bf16 runs "
    "about 7x slower than fp32: use --dtype fp32 (or auto)"
)


@pytest.fixture
def checkpoint(tmp_path: Path) -> Path:
    path = tmp_path / "small.safetensors"
    save_checkpoint(build_model("test-small"), path)
    return path


@pytest.fixture
def fake_cpu(monkeypatch):
    """Make this machine look like the given CPU to everything that asks runtime."""

    def fake(features: CpuFeatures) -> None:
        monkeypatch.setattr(runtime, "detect_cpu_features", lambda: features)

    before = torch.get_num_threads()
    yield fake
    torch.set_num_threads(before)


@pytest.mark.parametrize(
    ("features", "native", "packed", "attention"),
    [
        (AMX, True, True, "sdpa"),
        (AVX512_BF16, True, True, "bias"),
        (AVX2_ONLY, False, False, "bias"),
        (AVX512_NO_BF16, False, False, "bias"),
        (UNKNOWN, False, False, "bias"),
    ],
    ids=["amx", "avx512-bf16", "avx2-only", "avx512-no-bf16", "unknown"],
)
def test_path_per_cpu_kind(features: CpuFeatures, native: bool, packed: bool, attention: str):
    path = choose_cpu_path(features, threads=3)
    assert (path.threads, path.native_bf16, path.packed_linears) == (3, native, packed)
    assert path.attention == attention  # folded bias (bf16, via "sdpa") only with AMX
    assert features.native_bf16 is native


def test_threads_default_to_omp_num_threads_else_physical_cores(monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "5")
    assert choose_cpu_path(AMX).threads == 5
    monkeypatch.delenv("OMP_NUM_THREADS")
    assert choose_cpu_path(AMX).threads == runtime.physical_cores() >= 1


def test_bf16_refused_on_a_cpu_without_native_bf16_in_one_line():
    for features in (AVX2_ONLY, AVX512_NO_BF16):
        for name in ("bf16", "bfloat16"):
            with pytest.raises(UserError) as error:
                resolve_dtype(name, CPU, features)
            assert str(error.value) == REFUSAL


def test_bf16_kept_where_native_or_unknown_and_off_the_cpu():
    for features in (AMX, AVX512_BF16, UNKNOWN):
        assert resolve_dtype("bf16", CPU, features) == torch.bfloat16
    assert resolve_dtype("bf16", torch.device("cuda"), AVX2_ONLY) == torch.bfloat16
    assert resolve_dtype("fp32", CPU, AVX2_ONLY) == torch.float32


def test_auto_stays_fp32_on_every_cpu():
    for features in (AMX, AVX512_BF16, AVX2_ONLY, UNKNOWN):
        assert resolve_dtype("auto", CPU, features) == torch.float32


def test_load_predictor_refuses_bf16_on_a_faked_avx2_cpu(fake_cpu, checkpoint: Path):
    fake_cpu(AVX2_ONLY)
    with pytest.raises(UserError, match="no native bfloat16"):
        load_predictor(checkpoint=checkpoint, device="cpu", dtype="bf16")
    assert load_predictor(checkpoint=checkpoint, device="cpu", dtype="auto").dtype == torch.float32


@pytest.mark.parametrize(("features", "bf16_attention"), [(AMX, "folded"), (AVX512_BF16, "bias")])
def test_load_predictor_runs_the_chosen_path(
    fake_cpu, checkpoint: Path, monkeypatch, features: CpuFeatures, bf16_attention: str
):
    fake_cpu(features)
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    predictor = load_predictor(checkpoint=checkpoint, device="cpu", dtype="bf16")
    assert torch.get_num_threads() == 1
    assert predictor.attention_form == bf16_attention
    assert predictor.packed_linears == packing_available(torch.bfloat16)
    fp32 = load_predictor(checkpoint=checkpoint, device="cpu")
    assert (fp32.attention_form, fp32.packed_linears) == ("bias", False)


def test_load_predictor_applies_whatever_path_is_chosen(fake_cpu, checkpoint: Path, monkeypatch):
    fake_cpu(AMX)
    chosen = CpuPath(threads=1, native_bf16=True, packed_linears=False, attention="math")
    monkeypatch.setattr(runtime, "choose_cpu_path", lambda features: chosen)
    torch.set_num_threads(2)
    predictor = load_predictor(checkpoint=checkpoint, device="cpu", dtype="bf16")
    assert torch.get_num_threads() == 1
    assert (predictor.packed_linears, predictor.attention_form) == (False, "math")


def test_cli_refuses_bf16_on_a_faked_avx2_cpu(fake_cpu, checkpoint: Path, monkeypatch, capsys):
    fake_cpu(AVX2_ONLY)
    argv = ["seggpt-video", "info", "-c", str(checkpoint), "--device", "cpu", "--dtype", "bf16"]
    monkeypatch.setattr(sys, "argv", argv)
    with pytest.raises(SystemExit) as exit_info:
        main()
    assert exit_info.value.code == 2
    stderr = capsys.readouterr().err
    assert "Traceback" not in stderr and stderr.strip() == f"error: {REFUSAL}", stderr


@pytest.mark.parametrize(
    ("features", "shown", "native"),
    [(AMX, "AMX-BF16, AVX512-BF16, AVX-512F, AVX512-VNNI, AVX2", "yes")]
    + [(AVX2_ONLY, "AVX2", "no")],
    ids=["amx", "avx2-only"],
)
def test_info_shows_cpu_features_and_path(fake_cpu, checkpoint: Path, features, shown, native):
    fake_cpu(features)
    args = ["info", "-c", str(checkpoint), "--device", "cpu"]
    result = CliRunner().invoke(app, args, terminal_width=200)
    assert result.exit_code == 0, result.output
    rows = table_rows(result.output)
    assert rows["cpu features"] == shown
    assert rows["native bf16"] == native
    assert rows["threads"] == str(torch.get_num_threads())
    assert rows["packed linears"] == "no"  # fp32 keeps nn.Linear on every CPU
    assert rows["attention"] == "fused, position bias as the mask"


@pytest.mark.parametrize(
    ("features", "attention"),
    [(AMX, "fused, position bias folded into q and k")]
    + [(AVX512_BF16, "fused, position bias as the mask")],
    ids=["amx", "avx512-bf16"],
)
def test_info_in_bf16_shows_packed_linears_and_attention(
    fake_cpu, checkpoint: Path, features: CpuFeatures, attention: str
):
    fake_cpu(features)
    args = ["info", "-c", str(checkpoint), "--device", "cpu", "--dtype", "bf16"]
    result = CliRunner().invoke(app, args, terminal_width=200)
    assert result.exit_code == 0, result.output
    rows = table_rows(result.output)
    assert rows["packed linears"] == ("yes" if packing_available(torch.bfloat16) else "no")
    assert rows["attention"] == attention
    assert rows["native bf16"] == "yes" and rows["dtype"] == "bfloat16"


def table_rows(output: str) -> dict[str, str]:
    """The key/value rows of the table `info` prints."""
    rows = {}
    for line in output.splitlines():
        cells = [cell.strip() for cell in line.split("│")[1:-1]]
        if len(cells) == 2:
            rows[cells[0]] = cells[1]
    return rows


def test_features_from_proc_cpuinfo_x86_and_arm(tmp_path: Path):
    x86 = tmp_path / "x86"
    x86.write_text("processor\t: 0\nmodel name\t: Some CPU\nflags\t\t: fpu avx2 avx512f amx_bf16\n")
    assert runtime._proc_cpuinfo_flags(x86) == {"fpu", "avx2", "avx512f", "amx_bf16"}
    arm = tmp_path / "arm"
    arm.write_text("processor\t: 0\nFeatures\t: fp asimd bf16 i8mm\n")
    assert CpuFeatures.from_flags(runtime._proc_cpuinfo_flags(arm)).native_bf16
    assert runtime._proc_cpuinfo_flags(tmp_path / "missing") is None


def test_detection_agrees_with_proc_cpuinfo_on_this_machine():
    listed = runtime._proc_cpuinfo_flags()
    if not listed or "avx2" not in listed:
        pytest.skip("not an x86 Linux machine")
    found = runtime.detect_cpu_features()
    for flag in ("avx2", "avx512f", "avx512_bf16", "avx512_vnni"):
        assert (flag in found.flags) == (flag in listed), flag
    assert found.to_dict()["native_bf16"] == found.native_bf16
    assert set(found.to_dict()["flags"]) <= set(runtime.FEATURE_NAMES)
