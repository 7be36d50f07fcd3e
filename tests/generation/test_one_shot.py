"""The one-shot completion (llama.cpp main's -p run) through the engine, on the fake model: stop
conditions, -n modes, context shift, UTF-8 streaming, timings. The sequences are built and run
exactly as the `pygguf` command builds and runs them (pygguf_cli.main)."""
from __future__ import annotations

import itertools
from types import SimpleNamespace

import numpy as np
import pytest

from cli_fakes import BOS, EOS, EOT, WORD_IDS, FakeModel, FakeSampler, FakeTokenizer, tokens_of
from pygguf.errors import PromptTooLong
from pygguf.generation.engine import Engine
from pygguf.generation.sequence import FinishReason, keep_count
from pygguf.generation.stops import StopStrings
from pygguf.generation.timings import Timings, format_perf_block
from pygguf_cli.main import generate_text, one_shot_request
from pygguf_cli.options import GenerationParams


class Gen:
    """One engine over the fake model; generate() runs a sequence as the CLI does."""

    def __init__(self, model, sampler, params, timings=None, clock=None):
        self.model, self.sampler, self.params = model, sampler, params
        self.timings = timings
        self.engine = Engine(model, model.tokenizer, slots=1, **({"clock": clock} if clock else {}))

    def sequence(self, prompt):
        return self.engine.new_sequence(one_shot_request(prompt, self.params), sampler=self.sampler,
                                        timings=self.timings or Timings.start())

    def generate(self, prompt, on_text=None):
        seq = self.sequence(prompt)
        generate_text(self.engine, seq, on_text or (lambda text: None))
        return seq


def make(script, n_ctx=64, interrupt_at=None, **params):
    model = FakeModel(script, n_ctx=n_ctx, interrupt_at=interrupt_at)
    sampler = FakeSampler()
    gen = Gen(model, sampler, GenerationParams(**params))
    return gen, model, sampler


PROMPT = [BOS] + tokens_of("Hi")


def test_stops_at_eos_without_emitting_it():
    gen, model, sampler = make(tokens_of("abc") + [EOS])
    seen = []
    result = gen.generate(PROMPT, on_text=seen.append)
    assert result.finish_reason is FinishReason.EOS
    assert result.text == "abc" == "".join(seen)
    assert result.tokens == tokens_of("abc")
    assert model.calls[0] == PROMPT                          # prefill: the whole prompt at once
    assert model.calls[1:] == [[t] for t in tokens_of("abc")]
    assert sampler.accepted == PROMPT + tokens_of("abc") + [EOS]   # prompt fed to the penalty history


def test_eot_is_end_of_generation_too():
    gen, _, _ = make(tokens_of("x") + [EOT])
    assert gen.generate(PROMPT).finish_reason is FinishReason.EOS


def test_ignore_eos_masks_every_eog_token_and_runs_to_the_budget():
    gen, _, sampler = make([EOS], ignore_eos=True, n_predict=5)
    result = gen.generate(PROMPT)
    assert result.finish_reason is FinishReason.LENGTH
    assert len(result.tokens) == 5
    assert EOS not in result.tokens and EOT not in result.tokens


def test_ignore_eos_does_not_write_into_the_models_logits():
    gen, model, _ = make([EOS], ignore_eos=True, n_predict=1)
    gen.generate(PROMPT)
    assert model.rows[0][EOS] == 10.0


@pytest.mark.parametrize("n_predict", [0, 1, 7])
def test_n_predict_budget(n_predict):
    gen, model, _ = make(tokens_of("abcdefghij"), n_predict=n_predict)
    result = gen.generate(PROMPT)
    assert result.finish_reason is FinishReason.LENGTH
    assert result.text == "abcdefghij"[:n_predict]
    # llama.cpp never evaluates the last sampled token: eval runs = generated - 1
    assert result.timings.n_eval == max(0, n_predict - 1)
    assert result.timings.n_sample == n_predict
    assert result.timings.n_prompt_eval == len(PROMPT)


def test_n_minus_two_stops_when_the_context_is_full():
    gen, model, _ = make(tokens_of("a"), n_ctx=16, n_predict=-2)
    result = gen.generate(PROMPT)
    assert result.finish_reason is FinishReason.CONTEXT
    assert result.detail == "context full and n_predict == -2 => stopping"
    assert model.shifts == []
    assert model.n_past == 15                   # llama.cpp stops at n_past + 1 >= n_ctx


def test_no_context_shift_stops_with_llama_cpp_message():
    gen, model, _ = make(tokens_of("a"), n_ctx=16, n_predict=-1, context_shift=False)
    result = gen.generate(PROMPT)
    assert result.finish_reason is FinishReason.CONTEXT
    assert result.detail == "context full and context shift is disabled => stopping"
    assert model.shifts == []


def test_context_shift_keeps_bos_and_discards_half_of_the_rest():
    script = tokens_of("abcdefghijklmnopqrstuvwxyz") + [EOS]
    gen, model, _ = make(script, n_ctx=16, n_predict=-1)
    result = gen.generate(PROMPT)
    assert result.finish_reason is FinishReason.EOS
    assert result.text == "abcdefghijklmnopqrstuvwxyz"
    # first shift at n_past = 15: keep BOS (1), discard (15 - 1) // 2 = 7
    assert model.shifts[0] == (1, 7)
    assert all(keep == 1 for keep, _ in model.shifts)


def test_context_shift_with_keep_counts_bos_on_top():
    prompt = [BOS] + tokens_of("Hello world")
    gen, model, _ = make(tokens_of("a"), n_ctx=16, n_predict=20, n_keep=2)
    gen.generate(prompt)
    assert model.shifts[0] == (3, (15 - 3) // 2)


def test_keep_minus_one_keeps_the_whole_prompt():
    prompt = [BOS] + tokens_of("Hi!")
    tok = FakeTokenizer()
    assert keep_count(-1, prompt, tok) == len(prompt)
    assert keep_count(99, prompt, tok) == len(prompt)
    assert keep_count(0, prompt, tok) == 1
    assert keep_count(2, prompt, tok) == 3
    no_bos = SimpleNamespace(add_bos=False, bos_id=BOS)
    assert keep_count(0, tokens_of("Hi"), no_bos) == 0   # the model adds no BOS: nothing extra


def test_context_full_with_nothing_to_discard_stops_instead_of_looping():
    gen, model, _ = make(tokens_of("a"), n_ctx=8)
    seq = gen.sequence(PROMPT)
    slot = gen.engine.admit(seq)
    slot.cached, seq.n_keep, seq.pending = PROMPT + tokens_of("abcd"), 6, tokens_of("e")
    assert gen.engine._make_room(slot) is False          # (7 - 6) // 2 == 0: a shift would free nothing
    assert seq.finish_reason is FinishReason.CONTEXT
    assert "nothing to discard" in seq.detail and model.shifts == []


def test_keep_whole_prompt_shifts_forever_in_minus_one_mode():
    prompt = [BOS] + tokens_of("Hello!")                # 3 tokens, all kept
    gen, model, _ = make(tokens_of("a"), n_ctx=8, n_predict=20, n_keep=-1)
    result = gen.generate(prompt)
    assert result.finish_reason is FinishReason.LENGTH and len(result.tokens) == 20
    assert set(model.shifts) == {(3, 2)}


def test_prompt_longer_than_context_is_refused_with_llama_cpp_message():
    gen, model, _ = make([EOS], n_ctx=8)
    with pytest.raises(PromptTooLong, match=r"^prompt is too long \(5 tokens, max 4\)$"):
        gen.generate([BOS] + tokens_of("abcd"))
    assert model.calls == []
    gen.generate([BOS] + tokens_of("abc"))              # exactly n_ctx - 4 is allowed


def test_stop_string_split_across_tokens():
    script = tokens_of("abSTOPcd")                       # one byte per token: STOP spans four
    assert len(script) == 8
    gen, _, _ = make(script, reverse_prompts=("xyz", "STOP"))
    result = gen.generate(PROMPT)
    assert result.finish_reason is FinishReason.STOP
    assert result.stop_string == "STOP"
    assert result.text == "abSTOP"                        # the stop string stays in the output


def test_stop_string_inside_one_token_with_text_after_it():
    gen, _, _ = make([WORD_IDS["Hello"], WORD_IDS[" STOP"]] + tokens_of("zz"), reverse_prompts=("TO",))
    result = gen.generate(PROMPT)
    assert result.finish_reason is FinishReason.STOP
    assert result.text == "Hello STOP"


def test_stop_string_in_the_prompt_does_not_stop():
    gen, _, _ = make(tokens_of("xyz") + [EOS], reverse_prompts=("Hi",))
    assert gen.generate(PROMPT).finish_reason is FinishReason.EOS


def test_single_token_reverse_prompt_matches_by_id_even_when_it_renders_empty():
    stops = StopStrings.for_tokenizer(["<|eot|>"], FakeTokenizer())
    assert stops.feed(EOT, "") == "<|eot|>"
    gen, _, _ = make(tokens_of("ab") + [EOT], reverse_prompts=("<|eot|>",), ignore_eos=False)
    assert gen.generate(PROMPT).finish_reason is FinishReason.EOS   # EOG first, as llama.cpp checks it


def test_stop_strings_carry_only_what_they_need():
    stops = StopStrings(["abc", "xy"])
    pieces = ["zzzza", "b", "q", "c"]
    assert [stops.feed(0, p) for p in pieces] == [None, None, None, None]
    stops = StopStrings(["abc"])
    assert [stops.feed(0, p) for p in ["zza", "b", "cz"]] == [None, None, "abc"]


def test_utf8_character_split_across_tokens_is_emitted_whole():
    text = "é€😀"
    gen, _, _ = make(tokens_of(text) + [EOS])
    pieces = []
    result = gen.generate(PROMPT, on_text=pieces.append)
    assert len(tokens_of(text)) == 9
    assert pieces == ["é", "€", "😀"]
    assert result.text == text


def test_incomplete_utf8_at_the_end_is_flushed_as_replacement():
    gen, _, _ = make([0xE2, 0x82], n_predict=2)
    assert gen.generate(PROMPT).text == "\ufffd"


def test_prompt_is_echoed_through_the_same_decoder_before_prefill():
    gen, model, _ = make([EOS])
    seq = gen.sequence([BOS] + tokens_of("Hé"))
    assert (seq.prompt_text, len(model.calls)) == ("Hé", 0)


def test_keyboard_interrupt_stops_cleanly_with_timings():
    gen, model, _ = make(tokens_of("abcdef"), interrupt_at=3)
    result = gen.generate(PROMPT)
    assert result.finish_reason is FinishReason.INTERRUPTED
    assert result.text == "abc"
    assert result.timings.n_eval == 2
    assert result.timings.total_ms > 0


def test_interrupt_during_prefill():
    gen, _, _ = make(tokens_of("abc"), interrupt_at=0)
    result = gen.generate(PROMPT)
    assert result.finish_reason is FinishReason.INTERRUPTED
    assert result.tokens == [] and result.timings.n_prompt_eval == 0


def test_a_second_sequence_reuses_the_cached_prompt_and_gets_the_same_text():
    gen, model, sampler = make(tokens_of("ab") + [EOS])
    first = gen.generate(PROMPT)
    model.calls.clear()
    sampler.accepted.clear()
    second = gen.generate(PROMPT)
    assert model.calls[0] == PROMPT[-1:]                 # the prompt's K/V were reused: only its last token runs
    assert second.cached_prompt_tokens == len(PROMPT) - 1
    assert sampler.accepted == PROMPT + tokens_of("ab") + [EOS]
    assert first.text == second.text == "ab"


def test_timings_are_measured_with_the_given_clock():
    ticks = itertools.count()
    timings = Timings.start(clock=lambda: next(ticks) * 0.001)    # each reading advances 1 ms
    model = FakeModel(tokens_of("ab") + [EOS])
    gen = Gen(model, FakeSampler(), GenerationParams(), timings=timings, clock=timings.clock)
    result = gen.generate(PROMPT)
    t = result.timings
    assert (t.n_prompt_eval, t.n_eval, t.n_sample) == (len(PROMPT), 2, 3)
    assert t.prompt_eval_ms == pytest.approx(1.0)
    assert t.eval_ms == pytest.approx(2.0)
    assert t.sample_ms == pytest.approx(3.0)
    assert t.total_ms > t.prompt_eval_ms + t.eval_ms + t.sample_ms


def test_perf_block_format_matches_llama_cpp():
    t = Timings(load_ms=618.92, prompt_eval_ms=927.17, n_prompt_eval=49, eval_ms=14085.85, n_eval=178,
                sample_ms=24.62, n_sample=227, total_ms=20699.49)
    assert format_perf_block(t) == [
        "llama_perf_sampler_print:    sampling time =      24.62 ms /   227 runs   (    0.11 ms per token,  9220.15 tokens per second)",
        "llama_perf_context_print:        load time =     618.92 ms",
        "llama_perf_context_print: prompt eval time =     927.17 ms /    49 tokens (   18.92 ms per token,    52.85 tokens per second)",
        "llama_perf_context_print:        eval time =   14085.85 ms /   178 runs   (   79.13 ms per token,    12.64 tokens per second)",
        "llama_perf_context_print:       total time =   20699.49 ms /   227 tokens",
    ]


def test_perf_block_with_nothing_measured_has_no_nan():
    lines = format_perf_block(Timings())
    assert not any("nan" in line or "inf" in line for line in lines)


def test_logits_reaching_the_sampler_have_the_vocab_shape():
    gen, _, _ = make(tokens_of("a"), n_predict=3)
    assert gen.generate(PROMPT).text == "aaa"
    assert isinstance(gen.sequence(PROMPT).sample(np.zeros(FakeTokenizer.n_vocab, dtype=np.float32)), int)
