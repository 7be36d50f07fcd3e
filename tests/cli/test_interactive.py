"""Turn logic of the interactive modes, with a fake model/tokenizer/sampler and scripted input."""
from __future__ import annotations

import io
import os
import signal

import pytest

from interactive_fakes import FakeModel, FakeSampler, FakeTokenizer, ScriptedConsole
from sigint import sigint_as
from pygguf.chat import ChatFormatter
from pygguf_cli.interactive import (InteractiveError, InteractiveParams, plan_session, process_escapes,
                                prompt_from_stdin, run_interactive, split_line_controls)

SMOL_TEMPLATE = ("{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
                 "{{ '<|im_start|>system\nYou are SmolLM<|im_end|>\n' }}{% endif %}"
                 "{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}"
                 "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}")


def session(lines, replies, tty=True, add_bos=False, eot_id=None, n_ctx=4096, metadata=None, on_sample=None,
            **params):
    tok = FakeTokenizer(add_bos=add_bos, eot_id=eot_id)
    model = FakeModel(tok, n_ctx=n_ctx, metadata=metadata)
    sampler = FakeSampler(tok, replies, on_sample=on_sample)
    console = ScriptedConsole(lines, is_tty=tty)
    rc = run_interactive(model, sampler, InteractiveParams(**params), console)
    return rc, model, sampler, console


# --- plain -i and reverse prompts -----------------------------------------------------------------

def test_reverse_prompt_hands_control_back_and_input_follows_it():
    rc, model, sampler, con = session(
        ["more", None], [" hello\nUser:", " bye</s>"],
        prompt="Chat.\nUser: hi\nBot:", prompt_given=True, interactive=True, reverse_prompts=["User:"])
    assert rc == 0
    # Everything printed was fed, and the typed text went right after the reverse prompt.
    # The EOS then injected the first reverse prompt as input; Ctrl+D ended the session.
    assert model.text() == "Chat.\nUser: hi\nBot: hello\nUser:more bye"
    assert sampler.queue == []
    assert "EOF by user" in con.stdout
    assert "eval time" in con.stderr


def test_eos_in_interactive_injects_first_reverse_prompt():
    rc, model, _, con = session(
        ["again", None], ["ok</s>", "fine</s>"],
        prompt="Q:", prompt_given=True, interactive=True, reverse_prompts=["User:", "Other:"])
    assert model.text() == "Q:ok</s>User:againfine"
    assert rc == 0


def test_reverse_prompt_at_end_of_the_prompt_gives_control_at_once():
    rc, model, sampler, _ = session(
        ["hi", None], [" hey</s>"],
        prompt="Bot: hello\nUser:", prompt_given=True, interactive=True, reverse_prompts=["User:"])
    assert model.text() == "Bot: hello\nUser:hi hey"
    assert sampler.draws == 5


def test_empty_line_lets_the_model_continue():
    rc, model, _, _ = session(
        ["", None], ["a\nUser:", "b</s>"],
        prompt="x", prompt_given=True, interactive=True, reverse_prompts=["User:"])
    assert model.text() == "xa\nUser:b"


def test_budget_returns_control_each_turn():
    rc, model, sampler, _ = session(
        ["go", None], ["abc", "def"], prompt="p", prompt_given=True, interactive=True, n_predict=3)
    assert model.text() == "pabcgodef"[:-1]
    assert sampler.draws == 6


def test_in_prefix_suffix_and_prefix_bos():
    rc, model, _, con = session(
        ["hi", None], ["ok\nUser:", "yo</s>"], prompt="A", prompt_given=True, interactive=True,
        reverse_prompts=["User:"], in_prefix=" ", in_suffix="Bot:", in_prefix_bos=True)
    assert model.text() == "Aok\nUser:<s> hiBot:yo"
    assert con.prompts[0] == " "          # the prefix is shown before the typed text
    assert "Bot:" in con.stdout


def test_interactive_first_waits_before_generating():
    rc, model, sampler, con = session(["go", None], ["x</s>"], prompt="P", prompt_given=True,
                                      interactive_first=True)
    assert model.eval_calls[0] == FakeTokenizer().ids("P")
    assert model.text() == "Pgox"


# --- -ins / -cml --------------------------------------------------------------------------------

def test_instruct_mode_token_stream():
    tok = FakeTokenizer(add_bos=True)
    rc, model, _, con = session(
        ["Say hi", "Again", "", None], ["Hi!</s>", "Ok\n### Instruction:\n\n", "more</s>"], add_bos=True,
        prompt="Be nice.", prompt_given=True, instruct=True)
    expected = ([1] + tok.ids("Be nice.")                                  # the prompt, with BOS
                + [1] + tok.ids("\n\n### Instruction:\n\nSay hi\n\n### Response:\n\n")  # BOS + prefix
                + tok.ids("Hi!") + [2]                                     # reply ending on EOS
                + tok.ids("### Instruction:\n\n")                          # EOS injects the reverse prompt,
                + tok.ids("Again\n\n### Response:\n\n")                    # so no prefix this time
                + tok.ids("Ok\n### Instruction:\n\n")                      # reverse prompt: user's turn
                + tok.ids("more"))                                         # empty line: model goes on
    assert model.cache == expected
    assert con.prompts == ["> "] * 4
    assert con.stdout.startswith("<s>Be nice.\n> Say hi\n")


def test_instruct_keeps_whole_prompt_on_context_shift():
    tok = FakeTokenizer(add_bos=True)
    prompt = "Keep me."
    rc, model, _, con = session(["Go", None], ["abcdefghijklmnopqrstuvwxyz0123456789</s>"], add_bos=True,
                                n_ctx=64, prompt=prompt, prompt_given=True, instruct=True)
    n_prompt = 1 + len(prompt)
    assert model.shifts and all(keep == n_prompt for keep, _ in model.shifts)
    assert model.cache[:n_prompt] == [1] + tok.ids(prompt)
    assert model.text().endswith("0123456789")


def test_context_full_without_shift_stops():
    rc, model, _, con = session([None], ["a" * 40], n_ctx=32, prompt="p", prompt_given=True, interactive=True)
    assert rc == 0
    assert "context full and context shift is disabled => stopping" in con.stderr


def test_chatml_mode_markers():
    rc, model, _, con = session(["hi", None], ["yo<|im_end|>"], add_bos=True, prompt="Be brief.",
                                prompt_given=True, chatml=True)
    assert model.text() == ("<s><|im_start|>system\nBe brief.<|im_end|><s>\n<|im_start|>user\nhi"
                            "<|im_end|>\n<|im_start|>assistant\nyo")


# --- conversation mode ------------------------------------------------------------------------------

def test_conversation_feeds_only_new_text_and_cache_matches_template():
    meta = {"tokenizer.chat_template": SMOL_TEMPLATE}
    rc, model, _, con = session(["Hello", "More", None], ["Hi!<|im_end|>", "Sure<|im_end|>"], metadata=meta)
    fmt = ChatFormatter.from_metadata(meta)
    conv = [{"role": "user", "content": "Hello"}, {"role": "assistant", "content": "Hi!"},
            {"role": "user", "content": "More"}]
    # The cache holds the template's rendering of the conversation, then the second reply.
    assert model.text() == fmt.render(conv) + "Sure"
    assert "enabling conversation mode" in con.stderr
    assert con.prompts[:2] == ["> ", "> "]
    assert "<|im_start|>" not in con.stdout          # special tokens hidden


def test_conversation_system_prompt_and_p_as_first_message():
    meta = {"tokenizer.chat_template": SMOL_TEMPLATE}
    rc, model, _, con = session([None], ["Yes<|im_end|>"], metadata=meta, conversation=True,
                                system_prompt="Be short.", prompt="Hi", prompt_given=True)
    assert model.text() == ("<|im_start|>system\nBe short.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n"
                            "<|im_start|>assistant\nYes")
    assert "did you mean to set --system-prompt" in con.stderr


def test_conversation_builtin_override():
    rc, model, _, _ = session(["Hi", None], ["Yo</s>"], conversation=True, chat_template="vicuna")
    assert model.text() == "USER: Hi\nASSISTANT:Yo"


@pytest.mark.parametrize("before", [signal.default_int_handler, signal.SIG_IGN], ids=["default", "ignored"])
def test_ctrl_c_mid_reply_closes_turn_and_continues(before):
    """Ctrl+C stops the reply whatever SIGINT's handler was (ignored in a backgrounded job), and
    the session puts that handler back."""
    meta = {"tokenizer.chat_template": SMOL_TEMPLATE}

    def interrupt_third_draw(i):
        if i == 2:
            os.kill(os.getpid(), signal.SIGINT)

    with sigint_as(before):
        rc, model, sampler, con = session(["Hello", "Next", None], ["abc", "ok<|im_end|>"], metadata=meta,
                                          eot_id=4, on_sample=interrupt_third_draw)
        assert signal.getsignal(signal.SIGINT) is before
    text = model.text()
    # The reply stopped after the token sampled when Ctrl+C came; EOS closed the turn.
    assert "<|im_start|>assistant\nabc<|im_end|>\n<|im_start|>user\nNext<|im_end|>\n<|im_start|>assistant\nok" in text


def test_ctrl_c_at_prompt_exits_130():
    rc, model, _, con = session([KeyboardInterrupt], [], conversation=True)
    assert rc == 130
    assert "Interrupted by user" in con.stderr
    assert "prompt eval time" in con.stderr


def test_verbose_prompt_shows_tokens_and_template_source():
    meta = {"tokenizer.chat_template": SMOL_TEMPLATE}
    rc, model, _, con = session(["Hey", None], ["x<|im_end|>"], metadata=meta, verbose_prompt=True)
    assert "chat template: gguf (detected as built-in chatml)" in con.stderr
    assert "     3 -> '<|im_start|>'" in con.stderr
    assert "input: " in con.stderr


# --- options and helpers ------------------------------------------------------------------------------

def test_plan_auto_conversation_rules():
    meta = {"tokenizer.chat_template": "x"}
    assert plan_session(InteractiveParams(), meta, stdin_is_tty=True).conversation
    assert not plan_session(InteractiveParams(), {}, stdin_is_tty=True).interactive
    assert not plan_session(InteractiveParams(prompt="p", prompt_given=True), meta, True).interactive
    assert not plan_session(InteractiveParams(), meta, stdin_is_tty=False).conversation
    assert not plan_session(InteractiveParams(conversation=False), meta, True).interactive
    plan = plan_session(InteractiveParams(instruct=True), meta, True)
    assert plan.interactive and not plan.conversation and plan.params.interactive_first
    with pytest.raises(InteractiveError):
        plan_session(InteractiveParams(instruct=True, chatml=True), meta, True)
    with pytest.raises(InteractiveError):
        plan_session(InteractiveParams(instruct=True, conversation=True), meta, True)


def test_line_controls():
    assert split_line_controls("abc", False) == (False, "abc\n", False)
    assert split_line_controls("abc\\", False) == (False, "abc\n", True)
    assert split_line_controls("abc", True) == (False, "abc\n", True)
    assert split_line_controls("abc\\", True) == (False, "abc\n", False)
    assert split_line_controls("abc/", False) == (True, "abc", False)


def test_backslash_continues_and_multiline_input():
    rc, model, _, _ = session(["one\\", "two", None], ["x</s>"], interactive_first=True, interactive=True)
    assert model.text() == "one\ntwox"
    rc, model, _, _ = session(["one", "two\\", None], ["x</s>"], interactive_first=True, multiline_input=True)
    assert model.text() == "one\ntwox"


def test_escapes():
    assert process_escapes(r"a\nb\tc\\d\x41\q") == "a\nb\tc\\dA\\q"


def test_prompt_from_stdin():
    pipe = io.StringIO("from a pipe\n")
    assert prompt_from_stdin(InteractiveParams(), pipe) == "from a pipe"
    assert prompt_from_stdin(InteractiveParams(prompt="x", prompt_given=True), io.StringIO("y")) is None
    assert prompt_from_stdin(InteractiveParams(conversation=True), io.StringIO("y")) is None


def test_budget_cut_reply_is_closed_before_next_turn():
    meta = {"tokenizer.chat_template": SMOL_TEMPLATE}
    rc, model, _, _ = session(["Hi", "Go", None], ["abc", "d<|im_end|>"], metadata=meta, eot_id=4, n_predict=3)
    assert "assistant\nabc<|im_end|>\n<|im_start|>user\nGo<|im_end|>\n<|im_start|>assistant\nd" in model.text()


def test_empty_line_before_anything_was_fed_keeps_waiting():
    rc, model, _, con = session(["", "hi", None], ["ok</s>"], interactive=True)
    assert model.text() == "hiok"
    assert "context full" not in con.stderr


def test_template_that_rewrites_history_restarts_the_cache():
    meta = {"tokenizer.chat_template": "{{ messages | length }}:{% for m in messages %}[{{ m.role }}]"
                                       "{{ m.content }}{% endfor %}{% if add_generation_prompt %}[assistant]{% endif %}"}
    rc, model, _, _ = session(["Hi", "More", None], ["ok</s>", "fine</s>"], metadata=meta, conversation=True)
    assert model.text() == "3:[user]Hi[assistant]ok[user]More[assistant]fine"


def test_n_keep_counts_bos_on_top():
    rc, model, _, _ = session(["Go", None], ["abcdefghijklmnopqrstuvwxyz0123456789</s>"], add_bos=True, n_ctx=32,
                              prompt="Keep", prompt_given=True, interactive_first=True, n_keep=2, context_shift=True)
    assert model.shifts and all(keep == 3 for keep, _ in model.shifts)
    assert model.text().startswith("<s>Ke")


def test_special_token_reverse_prompt_hands_control_back():
    # "<|im_start|>" is a single special token (matched by id, and by its text).
    rc, model, sampler, _ = session(["more", None], ["ab<|im_start|>", "c</s>"], prompt="x", prompt_given=True,
                                    interactive=True, reverse_prompts=["<|im_start|>"])
    assert model.text() == "xab<|im_start|>morec"


def test_cut_turn_is_closed_with_the_templates_end_token_not_the_vocab_eot():
    # The vocabulary's EOT is </s> here (like SmolLM2's <|endoftext|>), but ChatML turns end in <|im_end|>.
    meta = {"tokenizer.chat_template": SMOL_TEMPLATE}
    rc, model, _, _ = session(["Hi", "Go", None], ["abc", "d<|im_end|>"], metadata=meta, eot_id=2, n_predict=3)
    assert "assistant\nabc<|im_end|>\n<|im_start|>user\nGo" in model.text()


def test_cut_turn_with_a_template_without_eog_marker_uses_eot():
    rc, model, _, _ = session(["Hi", "Go", None], ["abc", "d</s>"], conversation=True, chat_template="alpaca",
                              eot_id=2, n_predict=3)
    # After </s> the template's turn ending "\n\n" is still owed, then the next turn.
    assert model.text() == "### Instruction:\nHi\n\n### Response:\nabc</s>\n\n### Instruction:\nGo\n\n### Response:\nd"
