"""Every test starts on a machine without seggpt-vit-large weights.

The default model is seggpt-vit-large when its weights are in the Hugging Face cache or in
$SEGGPT_VIDEO_WEIGHTS: a developer's own cache or weights folder would change what the tests
load. The session gets an empty cache (the variable, for the processes tests start; the
constant, which huggingface_hub read when it was imported) and no weights folder, before any
fixture of any scope runs. A test that fills a cache points both at a folder of its own.
"""

from __future__ import annotations

from collections.abc import Iterator

import huggingface_hub.constants
import pytest


@pytest.fixture(scope="session", autouse=True)
def no_local_published_weights(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    cache = str(tmp_path_factory.mktemp("empty-hf-hub"))
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", cache)
        patch.setenv("HF_HUB_CACHE", cache)
        patch.delenv("SEGGPT_VIDEO_WEIGHTS", raising=False)
        yield cache
