"""cli/prompt_cache.py's decisions without a model: llama.cpp's log lines for each kind of match,
when the prompt is saved (new tokens, not read-only, once), the final save of --prompt-cache-all
(not after a shift or Ctrl+C), and the refusals that come before any work."""
from __future__ import annotations

import pytest

from pygguf.errors import StateError
from pygguf.generation.engine import Slot
from pygguf_cli.prompt_cache import PromptCache, PromptCacheParams, check_interactive


class FakeEngine:
    def __init__(self, saved: list[int]):
        self.saved = saved
        self.writes = []

    def load_state(self, data, slot=0, source=""):
        assert data == b"state" and slot == 0 and source.startswith("--prompt-cache ")
        return list(self.saved)

    def state_parts(self, slot, n=None):
        self.writes.append(n)
        return [b"new"]


def cache_with(tmp_path, saved, **params):
    path = tmp_path / "p.bin"
    if saved is not None:
        path.write_bytes(b"state")
    lines = []
    engine = FakeEngine(saved or [])
    return PromptCache(PromptCacheParams(path=path, **params), engine, say=lines.append), engine, lines


@pytest.mark.parametrize("saved,prompt,given,line,saves", [
    ([1, 2, 3, 4], [1, 2, 3, 4], True, "main: session file has exact match for prompt!", False),
    ([1, 2, 3, 4], [1, 2, 3], True, "main: session file has exact match for prompt!", False),
    ([1, 2, 3, 4], [1, 2, 3, 4], False, "main: using full prompt from session file", False),
    ([1, 2, 3, 9], [1, 2, 3, 4, 5], True, "main: session file matches 3 / 5 tokens of prompt", True),
    ([1, 9], [1, 2, 3, 4, 5], True, "main: session file has low similarity to prompt (1 / 5 tokens); "
                                     "will mostly be reevaluated", True),
])
def test_match_lines_and_save_decision(tmp_path, saved, prompt, given, line, saves):
    cache, _, lines = cache_with(tmp_path, saved)
    assert cache.load() == saved
    cache.match(prompt, prompt_given=given)
    assert lines[-2:] == [f"main: loaded a session with prompt size of {len(saved)} tokens", line]
    assert cache.save_prompt is saves


def test_prompt_saved_once_when_evaluated(tmp_path):
    cache, engine, lines = cache_with(tmp_path, None)
    assert cache.load() == [] and lines[-1] == "main: session file does not exist, will create."
    cache.match([1, 2, 3], prompt_given=True)
    slot = Slot(0, cached=[1, 2])
    cache.after_step(slot)
    assert engine.writes == []
    slot.cached = [1, 2, 3]
    cache.after_step(slot)
    slot.cached = [1, 2, 3, 7]
    cache.after_step(slot)
    assert engine.writes == [3] and (tmp_path / "p.bin").read_bytes() == b"new"


def test_read_only_never_saves(tmp_path):
    cache, engine, _ = cache_with(tmp_path, None, read_only=True, save_all=True)
    cache.load()
    cache.match([1, 2, 3], prompt_given=True)
    cache.after_step(Slot(0, cached=[1, 2, 3]))
    cache.finish(Slot(0, cached=[1, 2, 3, 4]), [4, 5])
    assert engine.writes == [] and not (tmp_path / "p.bin").exists()


def test_save_all_at_the_end_unless_shifted_or_interrupted(tmp_path):
    cache, engine, lines = cache_with(tmp_path, None, save_all=True)
    cache.load()
    cache.match([1, 2, 3], prompt_given=True)
    cache.finish(Slot(0, cached=[1, 2, 3, 4]), [4, 5], interrupted=True)
    assert engine.writes == []
    cache.finish(Slot(0, cached=[1, 3, 4, 5]), [4, 5, 6])         # a shift dropped token 2
    assert engine.writes == [] and "shifted" in lines[-1]
    cache.finish(Slot(0, cached=[1, 2, 3, 4]), [4, 5])
    assert engine.writes == [None] and lines[-1] == f"saved final session to {tmp_path / 'p.bin'}, n_tokens = 4"


def test_refusals_before_any_work(tmp_path):
    with pytest.raises(StateError, match="directory .* does not exist"):
        PromptCache(PromptCacheParams(path=tmp_path / "no" / "p.bin"), FakeEngine([]), say=print).load()
    with pytest.raises(StateError, match="is a directory"):
        PromptCache(PromptCacheParams(path=tmp_path), FakeEngine([]), say=print).load()
    with pytest.raises(StateError, match="--prompt-cache-all not supported in interactive mode yet"):
        check_interactive(PromptCacheParams(path=tmp_path / "p.bin", save_all=True))
    check_interactive(PromptCacheParams(path=tmp_path / "p.bin"))


def test_no_path_does_nothing(tmp_path):
    cache = PromptCache(PromptCacheParams(), None, say=pytest.fail)
    assert cache.load() == []
    cache.match([1, 2], prompt_given=True)
    cache.after_step(Slot(0, cached=[1, 2]))
    cache.finish(Slot(0, cached=[1, 2]), [])


def test_a_failed_write_names_the_flag(tmp_path, monkeypatch):
    cache, _, _ = cache_with(tmp_path, None)
    cache.load()
    cache.match([1], prompt_given=True)
    monkeypatch.setattr("os.fsync", lambda fd: (_ for _ in ()).throw(OSError(28, "No space left on device")))
    with pytest.raises(StateError, match=r"--prompt-cache .*p.bin: cannot write: No space left on device"):
        cache.after_step(Slot(0, cached=[1]))
    assert not (tmp_path / "p.bin").exists()
