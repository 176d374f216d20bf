"""`seggpt-video info`: the model's configuration, size, device and precision."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from seggpt_video import runtime
from seggpt_video.cli.app import app
from seggpt_video.model import build_model, count_parameters, save_checkpoint
from seggpt_video.runtime import CpuFeatures


def test_info_reports_config_parameters_device_and_dtype(tmp_path: Path, monkeypatch):
    # bf16 is refused on CPUs without it natively: stand in one that has it.
    native = CpuFeatures.from_flags({"avx512_bf16", "avx512f", "avx2"})
    monkeypatch.setattr(runtime, "detect_cpu_features", lambda: native)
    model = build_model("test-small")
    save_checkpoint(model, tmp_path / "small.safetensors")
    args = ["info", "-c", str(tmp_path / "small.safetensors"), "--device", "cpu", "--dtype", "bf16"]
    result = CliRunner().invoke(app, args, terminal_width=200)
    assert result.exit_code == 0, result.output
    assert f"{count_parameters(model):,}" in result.output
    assert "bfloat16" in result.output and "cpu" in result.output
    assert "embed_dim" in result.output and "32" in result.output
    assert "prompt/query size" in result.output and "32x32 px" in result.output
