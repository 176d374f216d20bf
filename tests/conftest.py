"""Fixtures for every test: no seggpt-vit-large weights on the machine, and Ctrl-C mid-run.

Every test starts on a machine without seggpt-vit-large weights.

The default model is seggpt-vit-large when its weights are in the Hugging Face cache or in
$SEGGPT_VIDEO_WEIGHTS: a developer's own cache or weights folder would change what the tests
load. The session gets an empty cache (the variable, for the processes tests start; the
constant, which huggingface_hub read when it was imported) and no weights folder, before any
fixture of any scope runs. A test that fills a cache points both at a folder of its own.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator

import huggingface_hub.constants
import pytest

from seggpt_video.io.state import RunState


@pytest.fixture(scope="session", autouse=True)
def no_local_published_weights(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    cache = str(tmp_path_factory.mktemp("empty-hf-hub"))
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", cache)
        patch.setenv("HF_HUB_CACHE", cache)
        patch.delenv("SEGGPT_VIDEO_WEIGHTS", raising=False)
        yield cache


@pytest.fixture
def interrupt_at(monkeypatch: pytest.MonkeyPatch) -> Callable[[int], None]:
    """``interrupt_at(cut)``: runs from then on stop as Ctrl-C does (KeyboardInterrupt) when they
    are about to keep frame ``cut``, frames before it kept; ``monkeypatch.undo()`` ends it."""

    def arm(cut: int) -> None:
        original = RunState.record

        def interrupted(self, index, *kept, **alpha):
            if index == cut:
                raise KeyboardInterrupt
            original(self, index, *kept, **alpha)

        monkeypatch.setattr(RunState, "record", interrupted)

    return arm


@pytest.fixture(scope="module")
def one_thread() -> Iterator[None]:
    """One torch thread for a module (``pytestmark = pytest.mark.usefixtures("one_thread")``), as
    torchrun's ranks and Ray's 1-CPU actors get: on a busy 2-core machine the model-running
    modules ran several times slower in-process with two threads. OMP_NUM_THREADS is read by
    load_predictor's CPU set-up and by the processes the tests start."""
    import torch

    threads, variable = torch.get_num_threads(), os.environ.get("OMP_NUM_THREADS")
    os.environ["OMP_NUM_THREADS"] = "1"
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
    if variable is None:
        del os.environ["OMP_NUM_THREADS"]
    else:
        os.environ["OMP_NUM_THREADS"] = variable
