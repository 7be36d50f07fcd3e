"""pygguf.Llama: llama-cpp-python-shaped completions over the shared token loop.

Most tests run on a fake model whose logits depend on the whole cached context (tests/batch_fakes.py);
the last ones run the real SmolLM2 when it is in the cache.
"""
from __future__ import annotations

import subprocess
import sys

import pytest

from batch_fakes import FakeContextModel
from testpaths import REPO
from pygguf_cli import paths
from pygguf.api import Llama
from pygguf.errors import PromptTooLong

REPLIES = {"Greet:": "Hello world STOP! more", "Accent:": "caf\u00e9 na\u00efve done"}


def fake_llm(**kwargs) -> Llama:
    return Llama("fake.gguf", model=FakeContextModel(REPLIES, n_ctx=kwargs.pop("n_ctx", 128)), **kwargs)


def test_completion_dict_shape():
    out = fake_llm()("Greet:", max_tokens=3)
    assert set(out) == {"id", "object", "created", "model", "choices", "usage"}
    assert out["object"] == "text_completion" and out["id"].startswith("cmpl-") and out["model"] == "fake.gguf"
    assert isinstance(out["created"], int)
    (choice,) = out["choices"]
    assert choice == {"text": "Hello world STOP", "index": 0, "logprobs": None, "finish_reason": "length"}
    usage = out["usage"]
    assert usage["completion_tokens"] == 3 and usage["prompt_tokens"] == len(fake_llm().tokenize("Greet:"))
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]


def test_end_of_generation_and_stop_strings():
    llm = fake_llm()
    whole = llm("Greet:", max_tokens=50)["choices"][0]
    assert whole["text"] == "Hello world STOP! more" and whole["finish_reason"] == "stop"   # EOS
    cut = llm("Greet:", max_tokens=50, stop=["!"])["choices"][0]
    assert cut["text"] == "Hello world STOP" and cut["finish_reason"] == "stop"
    across = llm("Accent:", max_tokens=50, stop="\u00e9 n")["choices"][0]       # spans byte tokens
    assert across["text"] == "caf" and across["finish_reason"] == "stop"


@pytest.mark.parametrize("stop", [None, ["!"], [" na", "xyz"], ["\u00e9 n"]])
@pytest.mark.parametrize("prompt", ["Greet:", "Accent:", "free text"])
def test_stream_chunks_add_up_to_the_completion(prompt, stop):
    llm = fake_llm()
    kwargs = dict(max_tokens=24, temperature=1.0, seed=7, stop=stop)
    whole = llm(prompt, **kwargs)
    chunks = list(llm(prompt, stream=True, **kwargs))
    assert all(c["object"] == "text_completion" for c in chunks)
    assert all(c["choices"][0]["finish_reason"] is None for c in chunks[:-1])
    assert chunks[-1]["choices"][0]["finish_reason"] == whole["choices"][0]["finish_reason"]
    assert "".join(c["choices"][0]["text"] for c in chunks) == whole["choices"][0]["text"]
    assert all(c["choices"][0]["text"] for c in chunks[:-1])      # no empty chunks but the last


def test_streamed_text_never_splits_a_character():
    pieces = [c["choices"][0]["text"] for c in fake_llm()("Accent:", max_tokens=50, stream=True)]
    assert "".join(pieces) == "caf\u00e9 na\u00efve done"
    assert all("\ufffd" not in p for p in pieces)


def test_same_seed_same_text_whatever_ran_before():
    llm = fake_llm()
    first = llm("free text", max_tokens=20, temperature=1.0, seed=123)["choices"][0]["text"]
    llm("free text and more", max_tokens=5, temperature=1.0, seed=9)     # leaves a shared prefix cached
    again = llm("free text", max_tokens=20, temperature=1.0, seed=123)["choices"][0]["text"]
    fresh = fake_llm()("free text", max_tokens=20, temperature=1.0, seed=123)["choices"][0]["text"]
    other = llm("free text", max_tokens=20, temperature=1.0, seed=124)["choices"][0]["text"]
    assert first == again == fresh
    assert other != first


def test_llama_seed_is_the_default_for_calls():
    a = fake_llm(seed=5)("free text", max_tokens=12, temperature=1.0)["choices"][0]["text"]
    b = fake_llm(seed=5)("free text", max_tokens=12, temperature=1.0)["choices"][0]["text"]
    assert a == b


def test_shared_prefix_is_evaluated_once():
    llm = fake_llm()
    llm("free text one", max_tokens=1)
    before = llm.model.evaluated
    llm("free text two", max_tokens=1)
    # only the tokens after the common prefix "free text " are computed
    assert llm.model.evaluated - before == len(llm.tokenize("free text two")) - len(llm.tokenize("free text "))


def test_a_stream_left_unfinished_does_not_block_the_next_call():
    llm = fake_llm()
    stream = llm("free text one", max_tokens=20, seed=2, stream=True)
    next(stream)
    whole = llm("free text one", max_tokens=20, seed=2)["choices"][0]["text"]
    assert whole == fake_llm()("free text one", max_tokens=20, seed=2)["choices"][0]["text"]
    last = list(stream)[-1]["choices"][0]                # the old stream, read on, just ends
    assert last["finish_reason"] == "length"


def test_reset_forgets_the_cached_prefix():
    llm = fake_llm()
    first = llm("free text one", max_tokens=4, seed=3)["choices"][0]["text"]
    llm.reset()
    before = llm.model.evaluated
    again = llm("free text one", max_tokens=4, seed=3)["choices"][0]["text"]
    assert llm.model.evaluated - before >= len(llm.tokenize("free text one"))   # the whole prompt again
    assert again == first


def test_batch_is_one_completion_per_prompt_in_order():
    llm = fake_llm()
    outs = llm.batch(["Greet:", "Accent:", "free text"], max_tokens=50, seed=3)
    assert [o["choices"][0]["text"] for o in outs[:2]] == ["Hello world STOP! more", "caf\u00e9 na\u00efve done"]
    assert outs[2]["choices"][0]["text"] == llm("free text", max_tokens=50, seed=3)["choices"][0]["text"]


def test_logprobs():
    out = fake_llm()("Greet:", max_tokens=3, logprobs=2)["choices"][0]["logprobs"]
    assert out["tokens"] == ["Hello", " world", " STOP"]
    assert out["text_offset"] == [0, 5, 11]
    assert len(out["token_logprobs"]) == 3 and all(lp <= 0.0 for lp in out["token_logprobs"])
    assert all(len(top) == 2 for top in out["top_logprobs"])
    assert max(out["top_logprobs"][0].values()) == pytest.approx(out["token_logprobs"][0])


def test_context_full_and_too_long_prompts():
    llm = fake_llm(n_ctx=32)
    out = llm("free text", max_tokens=-1, temperature=1.0, seed=1)
    assert out["choices"][0]["finish_reason"] in ("length", "stop")
    assert out["usage"]["total_tokens"] <= 32
    with pytest.raises(PromptTooLong):
        llm("x" * 40)


def test_tokenize_detokenize():
    llm = fake_llm()
    ids = llm.tokenize(b"Hello \xc3\xa9")
    assert ids[0] == llm.tokenizer.bos_id
    assert llm.tokenize("Hello", add_bos=False) == ids[1:2]
    assert llm.detokenize(ids) == b"Hello \xc3\xa9"
    assert llm.tokenize("<s>", add_bos=False, special=True) == [llm.tokenizer.bos_id]


def test_chat_completion():
    llm = fake_llm()
    messages = [{"role": "user", "content": "hi"}]
    out = llm.create_chat_completion(messages, max_tokens=4, seed=2)
    assert out["object"] == "chat.completion" and out["id"].startswith("chatcmpl-")
    (choice,) = out["choices"]
    assert choice["message"]["role"] == "assistant" and isinstance(choice["message"]["content"], str)
    expected = llm.tokenizer.encode("<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n")
    assert out["usage"]["prompt_tokens"] == len(expected)
    chunks = list(llm.create_chat_completion(messages, max_tokens=4, seed=2, stream=True))
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant"}
    assert "".join(c["choices"][0]["delta"].get("content", "") for c in chunks) == choice["message"]["content"]
    assert chunks[-1]["choices"][0]["finish_reason"] == choice["finish_reason"]


def test_import_pygguf_stays_light():
    code = ("import sys, pygguf; assert 'numpy' not in sys.modules and 'pygguf.api' not in sys.modules; "
            "from pygguf import Llama; assert Llama.__module__ == 'pygguf.api'")
    subprocess.run([sys.executable, "-c", code], check=True)


# ---- the real model ------------------------------------------------------------------------

@pytest.fixture(scope="module")
def smol():
    path = paths.default_model_path()
    if not path.exists():
        pytest.skip(f"SmolLM2 not found at {path} (`{paths.FETCH_MODEL_COMMAND}` fetches it)")
    llm = Llama(path, n_ctx=256, n_threads=2)
    yield llm
    llm.close()


def test_smollm2_same_seed_stream_and_stop(smol):
    kwargs = dict(max_tokens=8, temperature=0.8, seed=42)
    a = smol("The capital of France is", **kwargs)
    b = smol("The capital of France is", **kwargs)
    # the sampled reply may end at EOS before max_tokens; what must hold is that both runs agree
    assert a["choices"][0]["text"] == b["choices"][0]["text"]
    assert a["usage"]["completion_tokens"] == b["usage"]["completion_tokens"] >= 2
    streamed = "".join(c["choices"][0]["text"] for c in smol("The capital of France is", stream=True, **kwargs))
    assert streamed == a["choices"][0]["text"]
    first_word = a["choices"][0]["text"].split()[0]
    cut = smol("The capital of France is", stop=[first_word], **kwargs)["choices"][0]
    assert cut["finish_reason"] == "stop" and first_word not in cut["text"]


def test_smollm2_threads_do_not_change_text(smol):
    one = Llama(smol.model_path, n_ctx=256, n_threads=1)
    try:
        kwargs = dict(max_tokens=6, temperature=0.8, seed=7)
        assert one("Once upon a time", **kwargs)["choices"][0]["text"] == \
            smol("Once upon a time", **kwargs)["choices"][0]["text"]
    finally:
        one.close()


def test_smollm2_chat(smol):
    out = smol.create_chat_completion([{"role": "user", "content": "What is 2+2?"}], max_tokens=6, seed=1)
    assert out["choices"][0]["message"]["content"].strip()
    assert out["usage"]["prompt_tokens"] > 10


def test_readme_python_example_runs(capsys):
    """The README's Python API example, run as written (with this machine's model path)."""
    path = paths.default_model_path()
    if not path.exists():
        pytest.skip(f"SmolLM2 not found at {path} (`{paths.FETCH_MODEL_COMMAND}` fetches it)")
    readme = (REPO / "README.md").read_text()
    code = readme.split("```python\n", 1)[1].split("```", 1)[0]
    exec(compile(code.replace("/root/.cache/pygguf/models/SmolLM2-135M-Instruct.Q4_1.gguf", str(path)),
                 "README.md", "exec"), {})
    assert len(capsys.readouterr().out.splitlines()) >= 4
