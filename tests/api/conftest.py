"""Fixtures of the API tests."""
import pytest

from pygguf_cli import paths


@pytest.fixture(scope="module")
def smol_path():
    """The default model (SmolLM2-135M-Instruct Q4_1, `make model`); the test skips without it."""
    path = paths.default_model_path()
    if not path.exists():
        pytest.skip(f"SmolLM2 not found at {path} (`{paths.FETCH_MODEL_COMMAND}` fetches it)")
    return path
