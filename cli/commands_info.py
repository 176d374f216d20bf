"""``seggpt-video info``: which model, how big, where it runs."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

from seggpt_video.cli.app import app
from seggpt_video.cli.options import Checkpoint, Device, Dtype, ModelName
from seggpt_video.model import count_parameters
from seggpt_video.predictor import load_predictor


@app.command()
def info(
    model: ModelName = None,
    checkpoint: Checkpoint = None,
    device: Device = "auto",
    dtype: Dtype = "auto",
) -> None:
    """Print the model's configuration, parameter count, device and precision."""
    predictor = load_predictor(model=model, checkpoint=checkpoint, device=device, dtype=dtype)
    config = predictor.model.config
    table = Table(title=f"model {predictor.name}", show_header=False)
    rows = {
        "parameters": f"{count_parameters(predictor.model):,}",
        "device": str(predictor.device),
        "dtype": str(predictor.dtype).removeprefix("torch."),
        "prompt/query size": f"{predictor.size}x{predictor.size} px",
        **{key: str(value) for key, value in config.to_dict().items() if key != "name"},
    }
    for key, value in rows.items():
        table.add_row(key, value)
    Console().print(table)
