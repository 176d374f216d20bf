"""torch.compile of the blocks (an option for CUDA, where it also brings CUDA graphs)."""

from __future__ import annotations

import pytest
import torch
from test_model import random_model

from seggpt_video.model import PRESETS
from seggpt_video.predictor import PromptTensors, SegGPTPredictor

SMALL = PRESETS["test-small"]


@pytest.mark.slow
def test_compiled_blocks_paint_like_eager():
    size = SMALL.prompt_size
    generator = torch.Generator().manual_seed(0)
    prompts = PromptTensors(
        torch.randn(2, 3, size, size, generator=generator),
        torch.randn(2, 3, size, size, generator=generator),
    )
    queries = torch.randn(3, 3, size, size, generator=generator)
    eager = SegGPTPredictor(random_model(SMALL)).paint(prompts, queries)
    compiled = SegGPTPredictor(random_model(SMALL), compile="default")
    for block in compiled.model.blocks:
        assert block._compiled_call_impl is not None
        assert hasattr(block.forward_shared, "_torchdynamo_orig_callable")
    assert (compiled.paint(prompts, queries) - eager).abs().max().item() < 1e-3
