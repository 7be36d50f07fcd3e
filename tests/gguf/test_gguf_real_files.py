"""Real GGUF files (the SmolLM2 model, llama.cpp's tiny-codellama files) read by our reader and by
the `gguf` PyPI reader: every key, value type, tensor and byte must agree. Slow only because the
oracle parses vocabularies string by string."""
from __future__ import annotations

import pytest

from pygguf_cli import paths
from testpaths import shown
from gguf_oracle import assert_same_as_oracle

pytest.importorskip("gguf", reason="the gguf PyPI package is the test oracle")


def _real_files():
    files = [paths.default_model_path()]
    shared = paths.shared_dir()
    if shared is not None:
        files += sorted((shared / "ref" / "tiny").glob("*.gguf"))
    return files


@pytest.mark.parametrize("path", _real_files(), ids=lambda p: p.name)
def test_real_file_matches_gguf_oracle(path):
    if not path.exists():
        pytest.skip(f"{shown(path)} is absent (run `{paths.FETCH_MODEL_COMMAND}`)")
    assert assert_same_as_oracle(path) > 0


