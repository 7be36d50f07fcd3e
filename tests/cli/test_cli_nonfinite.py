"""A model whose logits go NaN (issue 18: one NaN fp16 scale in the file; a RoPE frequency scale
of inf did it too and is refused now) ends the generation with one line and exit 1 (main: an IndexError traceback from
the sampler's top-k threshold)."""
from __future__ import annotations

import mmap
import os

import pytest
from click.testing import CliRunner

from fuzz.layout import build, parse
from fuzz.mutations import POISON_F16, SCALES, Mutant
from fuzz.run import write_mutant
from pygguf_cli import paths

MODEL = paths.default_model_path()
pytestmark = pytest.mark.skipif(not MODEL.is_file(), reason=f"default model absent ({MODEL}); run `make model`")


@pytest.fixture(scope="module")
def nan_model(tmp_path_factory):
    """SmolLM2 with the first scale of blk.0.attn_q.weight set to NaN: every logit goes NaN."""
    fd = os.open(MODEL, os.O_RDONLY)
    try:
        with mmap.mmap(fd, 0, access=mmap.ACCESS_READ) as mapped:
            layout = parse(mapped)
        tensor = next(t for t in layout.tensors if t.name == b"blk.0.attn_q.weight")
        scale = tensor.offset + SCALES[tensor.ggml_type][2][0]
        path = tmp_path_factory.mktemp("nan") / "nan.gguf"
        mutant = Mutant("poisoned_data", "one NaN scale", build(layout), data_patches=[(scale, POISON_F16["nan"])])
        write_mutant(mutant, fd, layout.data_offset, os.fstat(fd).st_size - layout.data_offset, str(path))
    finally:
        os.close(fd)
    return path


def test_a_nan_scale_is_one_line_and_exit_1(nan_model):
    from pygguf_cli.main import cli
    result = CliRunner().invoke(cli, ["-m", str(nan_model), "-p", "Hello", "-n", "4", "-c", "64", "-t", "1"])
    assert result.exit_code == 1
    assert not isinstance(result.exception, IndexError) and "Traceback" not in result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert "NaN" in last and "nothing can be sampled" in last


def test_an_infinite_rope_freq_scale_is_refused_before_it_can_poison_the_logits():
    """--rope-freq-scale inf made every logit NaN; the value is now refused at load, and the CLI
    says so in one line naming the flag."""
    from pygguf.errors import PyggufError
    from pygguf.model.model import Model
    from pygguf_cli.main import cli
    with pytest.raises(PyggufError, match="rope_freq_scale"):
        Model.load(MODEL, n_ctx=32, n_threads=1, rope_freq_scale=float("inf"))
    result = CliRunner().invoke(cli, ["-m", str(MODEL), "-p", "Hello", "-n", "2", "--rope-freq-scale", "inf"])
    assert result.exit_code == 1 and result.stderr.strip().splitlines() == [
        "error: --rope-freq-scale inf: must be a finite number >= 0 (0 = from the model)"]
