"""One Llama shared by threads: its calls take turns (pygguf/generation/turns.py), so each gives
the text it gives alone, nothing hangs, and a call that failed or was cut short leaves the
reused-prompt cache true for the next one. Before, two threads stepped the one engine together:
at n_threads=2 both spun in the C pool for ever, at n_threads=1 they returned wrong text, and
every later call too.

Most tests run on the fake model of test_api.py, which pauses in every decode so the threads
interleave; the last ones on SmolLM2 (Q4_1) at 1 and 2 threads."""
from __future__ import annotations

import threading
import time

import pytest

from batch_fakes import FakeContextModel
from pygguf.api import Llama
from pygguf.generation.turns import ReentrantCall

HANG_S = 120    # far beyond any run here: reaching it means the threads deadlocked or livelocked
PROMPTS = ["free text one", "free text two", "Greet:", "another free text", "free"]


class SlowModel(FakeContextModel):
    """Gives the GIL away in every decode (as the C forward does) and records which thread
    decoded; `hook` runs before a decode (a test raises or calls back from there)."""

    def __init__(self, **kwargs):
        super().__init__({"Greet:": "Hello world STOP! more"}, **kwargs)
        self.threads: list[int] = []
        self.hook = None

    def before_decode(self, call: int) -> None:
        self.threads.append(threading.get_ident())
        time.sleep(0.0002)
        if self.hook is not None:
            self.hook(call)


def slow_llm(**kwargs) -> Llama:
    return Llama("fake.gguf", model=SlowModel(n_ctx=96, **kwargs))


def text(out: dict) -> str:
    choice = out["choices"][0]
    return choice["text"] if "text" in choice else choice["message"]["content"]


def call(llm: Llama, prompt: str, seed: int, stream: bool = False) -> str:
    kwargs = dict(max_tokens=12, temperature=1.0, seed=seed)
    if stream:
        return "".join(c["choices"][0]["text"] for c in llm(prompt, stream=True, **kwargs))
    return text(llm(prompt, **kwargs))


def run_threads(targets) -> None:
    threads = [threading.Thread(target=t, daemon=True) for t in targets]
    for t in threads:
        t.start()
    for t in threads:
        t.join(HANG_S)
    assert not any(t.is_alive() for t in threads), "the threads hung"


def jobs(n_threads: int, calls: int) -> list[list[tuple[str, int, bool]]]:
    """each thread's calls: (prompt, seed, stream), prompts sharing prefixes across threads"""
    return [[(PROMPTS[(t + c) % len(PROMPTS)], 100 * t + c, (t + c) % 3 == 0) for c in range(calls)]
            for t in range(n_threads)]


def shared_llama_runs(llm: Llama, work) -> dict:
    results, errors = {}, []

    def worker(my_jobs):
        try:
            for prompt, seed, stream in my_jobs:
                results[prompt, seed, stream] = call(llm, prompt, seed, stream)
        except Exception as e:              # reported below, with the thread's others
            errors.append(e)
    run_threads([lambda j=j: worker(j) for j in work])
    assert errors == []
    return results


def test_threads_sharing_a_llama_get_the_text_each_call_gets_alone():
    work = jobs(n_threads=4, calls=5)
    llm = slow_llm()
    results = shared_llama_runs(llm, work)
    alone = slow_llm()
    for (prompt, seed, stream), got in results.items():
        assert got == call(alone, prompt, seed), (prompt, seed, stream)
    # and the Llama they shared still answers right (its prompt cache was kept true)
    assert call(llm, "free text one", 7) == call(slow_llm(), "free text one", 7)


def test_a_stream_runs_uninterrupted_while_another_thread_waits():
    llm = slow_llm()
    stream = llm("free text one", max_tokens=12, temperature=1.0, seed=3, stream=True)
    pieces = [next(stream)["choices"][0]["text"]]
    other = []
    waiter = threading.Thread(target=lambda: other.append(call(llm, "free text two", 4)), daemon=True)
    waiter.start()
    time.sleep(0.05)                       # the other call arrives while the stream is open
    assert not other, "another thread's call ran while a stream held the Llama"
    mine = threading.get_ident()
    before = len(llm.model.threads)
    pieces += [c["choices"][0]["text"] for c in stream]
    assert set(llm.model.threads[before:]) == {mine}            # no decode of the other call in between
    waiter.join(HANG_S)
    assert other == [call(slow_llm(), "free text two", 4)]
    assert "".join(pieces) == call(slow_llm(), "free text one", 3)


def test_a_stream_dropped_unfinished_or_never_read_holds_nothing():
    llm = slow_llm()
    never_read = llm("free text one", max_tokens=12, seed=1, stream=True)   # noqa: F841 (kept alive)

    def read_one_and_drop():
        stream = llm("free text two", max_tokens=12, seed=1, stream=True)
        next(stream)
    run_threads([read_one_and_drop])
    got = []
    run_threads([lambda: got.append(call(llm, "Greet:", 5))])
    assert got == [call(slow_llm(), "Greet:", 5)]


def test_one_thread_reading_two_streams_in_turn():
    # the second stream takes the turn over from the first, paused: no deadlock; the first ends
    llm = slow_llm()
    first = llm("free text one", max_tokens=12, temperature=1.0, seed=3, stream=True)
    second = llm("free text two", max_tokens=12, temperature=1.0, seed=4, stream=True)
    head = next(first)["choices"][0]["text"]
    pieces = [next(second)["choices"][0]["text"]]
    rest = list(first)
    assert rest[-1]["choices"][0]["finish_reason"] == "length" and len(rest) == 1
    pieces += [c["choices"][0]["text"] for c in second]
    assert "".join(pieces) == call(slow_llm(), "free text two", 4)
    assert call(slow_llm(), "free text one", 3).startswith(head)


def test_a_call_inside_the_loop_reading_a_stream():
    llm = slow_llm()
    inner = []
    chunks = []
    for chunk in llm("free text one", max_tokens=12, temperature=1.0, seed=3, stream=True):
        chunks.append(chunk)
        if not inner:
            inner.append(call(llm, "free text two", 4))
    assert inner == [call(slow_llm(), "free text two", 4)]
    assert chunks[-1]["choices"][0]["finish_reason"] == "length"


def test_a_call_from_inside_a_call_is_refused_and_the_next_call_is_right():
    llm = slow_llm()

    def call_back(n):
        llm.model.hook = None
        call(llm, "free text two", 4)
    llm.model.hook = call_back
    with pytest.raises(ReentrantCall, match="from inside one of its own calls"):
        call(llm, "free text one", 3)
    assert call(llm, "free text one", 3) == call(slow_llm(), "free text one", 3)


@pytest.mark.parametrize("at_call", [0, 1, 4])
@pytest.mark.parametrize("error", [KeyboardInterrupt, RuntimeError])
def test_an_interrupted_call_leaves_the_prompt_cache_true(at_call, error):
    llm = slow_llm()
    call(llm, "free text", 9)                        # a prefix for the next calls to reuse
    start = len(llm.model.calls)

    def interrupt(n):
        if n == start + at_call:
            raise error("stop")
    llm.model.hook = interrupt
    with pytest.raises(error):
        call(llm, "free text one", 3)
    llm.model.hook = None
    assert call(llm, "free text one", 3) == call(slow_llm(), "free text one", 3)
    assert call(llm, "free text two", 5) == call(slow_llm(), "free text two", 5)


def test_a_failed_prefix_copy_leaves_the_prompt_cache_true():
    llm = slow_llm(n_seq=2)
    copy = llm.model.kv_copy

    def half_copy(src, dst, n):                     # fails after the destination was overwritten
        llm.model.caches[dst] = [0] * n
        raise RuntimeError("copy failed")
    llm.batch(["free text one", "Greet:"], max_tokens=4, seed=1)     # slot 1 holds "Greet:"
    llm.model.kv_copy = half_copy
    with pytest.raises(RuntimeError):       # slot 1 is given the prefix "free text one" of slot 0
        llm.batch(["free text one", "free text one more"], max_tokens=4, seed=1)
    llm.model.kv_copy = copy
    prompts = ["free text one", "Greet:"]
    assert [text(o) for o in llm.batch(prompts, max_tokens=6, seed=2)] == \
        [text(o) for o in slow_llm(n_seq=2).batch(prompts, max_tokens=6, seed=2)]


# ---- the real model ------------------------------------------------------------------------

@pytest.mark.parametrize("n_threads", [1, 2])
def test_smollm2_threads_sharing_a_llama(smol_path, n_threads):
    """3 threads x 3 calls (a stream among them) on one Llama: each text is the one-thread text."""
    work = jobs(n_threads=3, calls=3)
    with Llama(smol_path, n_ctx=128, n_threads=n_threads) as llm:
        results = shared_llama_runs(llm, work)
        alone = {key: call(llm, key[0], key[1]) for key in results}
        again = call(llm, "free text one", 0)
    with Llama(smol_path, n_ctx=128, n_threads=n_threads) as fresh:
        assert {key: call(fresh, key[0], key[1]) for key in results} == alone
        assert call(fresh, "free text one", 0) == again
    assert results == alone
