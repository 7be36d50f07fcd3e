"""The command refuses a value out of llama.cpp's range before the model loads, on one line that
names the flag, the value and what is accepted (exit 1); values llama.cpp reads its own way (top-p
above 1 is off, -ub 0 is -b, RoPE 0 is the model's) run, with a warning saying so. The same model
values reach Model.load through the API, and are refused there."""
from __future__ import annotations

import pytest
from cli_fakes import EOS, FakeModel, FakeSampler, FakeSamplerParams, tokens_of
from click.testing import CliRunner

from pygguf.errors import ContextValueError, PyggufError
from pygguf_cli.main import cli
from pygguf_cli.runtime import Runtime


class Loads:
    def __init__(self):
        self.calls = []
        self.sampler_params = []

    def load(self, path, **kwargs):
        self.calls.append(kwargs)
        return FakeModel(tokens_of(" ok") + [EOS])

    def sampler(self, params, n_vocab, eog_ids=(), **kwargs):
        self.sampler_params.append(params)
        return FakeSampler(params, n_vocab, eog_ids, **kwargs)


def invoke(tmp_path, *args):
    model = tmp_path / "fake.gguf"
    model.write_bytes(b"GGUF")
    loads = Loads()
    runtime = Runtime(load_model=loads.load, make_sampler=loads.sampler, sampler_params=FakeSamplerParams,
                      errors=(PyggufError,))
    result = CliRunner().invoke(cli, ["-m", str(model), "-p", "Hi", "-n", "2", *args], obj=runtime)
    return result, loads


@pytest.mark.parametrize("args, line", [
    (["--repeat-penalty", "0"], "error: --repeat-penalty 0: must be greater than 0 (1.0 = off), as in llama.cpp"),
    (["--repeat_penalty", "-1"], "error: --repeat_penalty -1: must be greater than 0 (1.0 = off), as in llama.cpp"),
    (["--top-p", "-1"], "error: --top-p -1: must be in [0, 1] (1 = off)"),
    (["--min-p", "nan"], "error: --min-p nan: must be a finite number"),
    (["--temp", "inf"], "error: --temp inf: must be a finite number"),
    (["--xtc-probability", "-0.5"], "error: --xtc-probability -0.5: must be in [0, 1] (0 = off)"),
    (["--typical", "nan"], "error: --typical nan: must be a finite number"),
    (["--mirostat", "3"], "error: --mirostat 3: must be 0 (off), 1 or 2"),
    (["--repeat-last-n", "-1"], "error: --repeat-last-n -1: must be an integer in [0, 2147483647] (0 = off)"),
    (["--repeat-last-n", "1" + "0" * 30], "error: --repeat-last-n 1" + "0" * 30
     + ": must be an integer in [0, 2147483647] (0 = off)"),
    (["-l", "5+inf"], "error: -l inf: a bias must be a number below +inf (-inf bans the token)"),
    (["-b", "0"], "error: -b 0: must be an integer in [1, 2147483647]"),
    (["-ub", "-1"], "error: -ub -1: must be an integer in [0, 2147483647] (0 = the same as n_batch)"),
    (["-c", "2147483648"], "error: -c 2147483648: must be an integer in [0, 2147483647] "
     "(0 = the model's training context)"),
    (["--rope-freq-base", "-1"], "error: --rope-freq-base -1: must be a finite number >= 0 (0 = from the model)"),
    (["--rope-freq-scale", "inf"], "error: --rope-freq-scale inf: must be a finite number >= 0 (0 = from the model)"),
    (["--rope-freq-scale", "nan"], "error: --rope-freq-scale nan: must be a finite number >= 0 (0 = from the model)"),
])
def test_a_value_out_of_range_is_one_line_naming_the_flag_before_loading(tmp_path, args, line):
    result, loads = invoke(tmp_path, *args)
    assert result.exit_code == 1, result.output
    assert result.stderr.splitlines() == [line]
    assert loads.calls == []


def test_an_integer_of_5000_digits_is_one_line(tmp_path):
    result, loads = invoke(tmp_path, "--repeat-last-n", "1" + "0" * 5000)
    assert result.exit_code == 1 and len(result.stderr.splitlines()) == 1 and loads.calls == []
    assert result.stderr.startswith("error: ") and "Traceback" not in result.output


@pytest.mark.parametrize("args, warning, check", [
    (["--top-p", "2"], "warning: --top-p 2: above 1 turns top-p off, as 1.0 does (llama.cpp's rule)",
     lambda loads: loads.sampler_params[0]["top_p"] == 2.0),
    (["--xtc-probability", "2"], "warning: --xtc-probability 2: above 1 applies XTC at every step, as 1.0 does",
     lambda loads: True),
    (["-ub", "0"], "warning: -ub 0: 0 means: the same as n_batch (llama.cpp's rule)",
     lambda loads: loads.calls[0]["n_batch"] == 2048),
    (["-b", "64", "-ub", "0"], "warning: -ub 0: 0 means: the same as n_batch (llama.cpp's rule)",
     lambda loads: loads.calls[0]["n_batch"] == 64),
    (["--rope-freq-base", "0"], "warning: --rope-freq-base 0: 0 means: from the model (llama.cpp's rule)",
     lambda loads: loads.calls[0]["rope_freq_base"] is None),
    (["-s", str(2 ** 40)], f"warning: -s {2 ** 40}: is used modulo 2^32, as llama.cpp does",
     lambda loads: True),
])
def test_values_llama_cpp_reads_its_own_way_run_with_a_warning(tmp_path, args, warning, check):
    result, loads = invoke(tmp_path, *args)
    assert result.exit_code == 0, result.output
    assert warning in result.stderr.splitlines()
    assert check(loads)


def test_tiny_temperature_runs(tmp_path):
    result, _ = invoke(tmp_path, "--temp", "1e-45")
    assert result.exit_code == 0, result.output
    assert "warning" not in result.stderr


@pytest.mark.parametrize("kwargs, field", [
    ({"n_ctx": -1}, "n_ctx"), ({"n_ctx": 2 ** 31}, "n_ctx"), ({"n_batch": 0}, "n_batch"),
    ({"n_batch": 10 ** 5000}, "n_batch"), ({"n_threads": 1e30}, "n_threads"), ({"n_ctx": 1.5}, "n_ctx"),
])
def test_the_api_refuses_the_same_values_before_loading(tmp_path, kwargs, field):
    from pygguf import Llama
    with pytest.raises(ContextValueError) as info:
        Llama(tmp_path / "absent.gguf", **kwargs)       # refused before the file is opened
    assert info.value.field == field and "digits" in str(info.value) if kwargs.get("n_batch") == 10 ** 5000 else True
