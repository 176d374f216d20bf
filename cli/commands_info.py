"""``seggpt-video info``: which model, how big, where it runs and on which CPU path."""

from __future__ import annotations

from typing import TYPE_CHECKING

from rich.console import Console
from rich.table import Table

from seggpt_video.cli.app import app
from seggpt_video.cli.options import Checkpoint, Device, Dtype, ModelName

if TYPE_CHECKING:
    from seggpt_video.predictor import SegGPTPredictor

ATTENTION_FORMS = {
    "bias": "fused, position bias as the mask",
    "folded": "fused, position bias folded into q and k",
    "math": "plain softmax (reference)",
}


@app.command()
def info(
    model: ModelName = None,
    checkpoint: Checkpoint = None,
    device: Device = "auto",
    dtype: Dtype = "auto",
) -> None:
    """Print the model (the default when none is named), its weights, size, device and CPU path."""
    from seggpt_video.model import count_parameters
    from seggpt_video.model.checkpoint import resolve_model
    from seggpt_video.predictor import load_predictor

    predictor = load_predictor(model=model, checkpoint=checkpoint, device=device, dtype=dtype)
    named = model is not None or checkpoint is not None
    config = predictor.model.config
    table = Table(title=f"model {predictor.name}", show_header=False)
    rows = {
        "weights": str(checkpoint if checkpoint is not None else resolve_model(predictor.name)),
        **({} if named else {"chosen": default_reason(predictor.name)}),
        "parameters": f"{count_parameters(predictor.model):,}",
        "device": str(predictor.device),
        "dtype": str(predictor.dtype).removeprefix("torch."),
        "prompt/query size": f"{predictor.size}x{predictor.size} px",
        **(cpu_rows(predictor) if predictor.device.type == "cpu" else {}),
        **{key: str(value) for key, value in config.to_dict().items() if key != "name"},
    }
    for key, value in rows.items():
        table.add_row(key, value)
    Console().print(table)


def default_reason(name: str) -> str:
    """Why the default resolved to ``name``."""
    from seggpt_video.model.checkpoint import PACKAGED_MODEL, PUBLISHED_MODEL

    if name == PUBLISHED_MODEL:
        return f"by default: {PUBLISHED_MODEL} weights are on this machine"
    return (
        f"by default: no local {PUBLISHED_MODEL} weights, so the packaged {PACKAGED_MODEL} "
        f"(seggpt-video download {PUBLISHED_MODEL})"
    )


def cpu_rows(predictor: SegGPTPredictor) -> dict[str, str]:
    """What was found on this CPU and what the predictor runs there."""
    import torch

    from seggpt_video import runtime

    features = runtime.detect_cpu_features()
    return {
        "cpu features": ", ".join(features.names()) or "none of AMX, AVX-512, AVX2 found",
        "torch cpu kernels": features.capability or "unknown",
        "native bf16": "yes" if features.native_bf16 else "no",
        "threads": str(torch.get_num_threads()),
        "packed linears": "yes" if predictor.packed_linears else "no",
        "attention": ATTENTION_FORMS[predictor.attention_form],
    }
