"""Interactive modes with the real SmolLM2 model: the session API directly, and the `pygguf` CLI
through a real pseudo-terminal (pexpect). Skipped until the model file, the model/tokenizer/
sampler modules and the CLI wiring (`interactive_options` in cli/main.py) are all present."""
from __future__ import annotations

import ast
import io
import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from interactive_fakes import ScriptedConsole
from pygguf.chat import ChatFormatter
from pygguf_cli.interactive import InteractiveParams, run_interactive
from pygguf_cli.paths import default_model_path
from sigint import default_sigint_in_child, sigint_as

MODEL = default_model_path()
COMMON = ["-m", str(MODEL), "-c", "512", "-t", "2", "--temp", "0"]
PROMPT = "\r\n> "      # the input prompt on its own line (token dumps print "id -> 'piece'")


def require_stack():
    if not MODEL.exists():
        pytest.skip(f"SmolLM2 not fetched ({MODEL}): run `make model`")
    try:
        from pygguf.model import Model
        from pygguf.sampling import Sampler, SamplerParams
    except ImportError as exc:
        pytest.skip(f"model/sampler not merged yet: {exc}")
    return Model, Sampler, SamplerParams


def require_cli():
    require_stack()
    pexpect = pytest.importorskip("pexpect")
    exe = os.environ.get("PYGGUF_CLI")          # another build of the command, if set
    if not exe:
        exe = Path(sys.executable).with_name("pygguf")
        exe = exe if exe.exists() else shutil.which("pygguf")
    if not exe:
        pytest.skip("the pygguf command is not installed")
    help_text = subprocess.run([str(exe), "--help"], capture_output=True, text=True, timeout=60).stdout
    if "--conversation" not in help_text or "--instruct" not in help_text:
        pytest.skip("cli/main.py does not include interactive_options yet")
    return pexpect, str(exe)


def spawn(pexpect, exe, *args):
    with sigint_as(signal.SIG_IGN):     # spawned as a backgrounded `make test` would: Ctrl+C still works
        child = pexpect.spawn(exe, COMMON + list(args), encoding="utf-8", timeout=120, dimensions=(50, 250),
                              env={"TERM": "xterm", "PATH": "/usr/bin:/bin", "HOME": str(Path.home())},
                              preexec_fn=default_sigint_in_child)
    child.logfile_read = io.StringIO()      # the whole transcript, for the token dumps
    return child


def transcript(child) -> str:
    return child.logfile_read.getvalue()


def verbose_blocks(text: str, label: str) -> list[list[tuple[int, str]]]:
    """Every `label: N tokens` block of --verbose-prompt output, as (id, piece) pairs."""
    blocks = []
    lines = text.replace("\r\n", "\n").split("\n")
    for i, line in enumerate(lines):
        head = re.match(rf"{re.escape(label)}: (\d+) tokens$", line.strip())
        if head:
            rows = [re.match(r"\s*(\d+) -> (.*)$", row) for row in lines[i + 1:i + 1 + int(head.group(1))]]
            blocks.append([(int(r.group(1)), ast.literal_eval(r.group(2))) for r in rows])
    return blocks


# --- the session API on the real model ------------------------------------------------------------

def test_conversation_cache_holds_the_template_rendering():
    Model, Sampler, SamplerParams = require_stack()
    model = Model.load(MODEL, n_ctx=512, n_threads=2)
    fed: list[int] = []
    real_decode = model.decode

    def recording_decode(batch):
        fed.extend(batch.tokens[:batch.n].tolist())
        return real_decode(batch)
    model.decode = recording_decode
    tok = model.tokenizer
    sampler = Sampler(SamplerParams(temp=0), model.config.n_vocab, eog_ids=set(tok.eog_ids))
    console = ScriptedConsole(["What is 2+2?", "And 3+3?", None])
    try:
        rc = run_interactive(model, sampler, InteractiveParams(conversation=True, n_predict=24), console)
    finally:
        model.close()
    assert rc == 0
    fmt = ChatFormatter.from_metadata(model.metadata)
    text = tok.decode(fed, special=True)
    first_reply = text.split("<|im_start|>assistant\n")[1].split("<|im_end|>")[0]
    conv = [{"role": "user", "content": "What is 2+2?"}, {"role": "assistant", "content": first_reply},
            {"role": "user", "content": "And 3+3?"}]
    assert first_reply.strip()
    assert text.startswith(fmt.render(conv))     # turn 2 was appended, turn 1 never re-fed


# --- the CLI through a pseudo-terminal --------------------------------------------------------------

def test_cli_multi_turn_conversation_then_ctrl_d():
    pexpect, exe = require_cli()
    child = spawn(pexpect, exe, "-cnv", "-n", "8", "--verbose-prompt")
    child.expect(PROMPT)
    child.sendline("What is the capital of France?")
    child.expect(PROMPT)
    first = child.before
    child.sendline("And of Germany?")
    child.expect(PROMPT)
    child.sendeof()
    child.expect("EOF by user")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0
    reply = first.rsplit("'\\n'\r\n", 1)[-1]         # after the last token of the dump
    assert reply.strip(), first[-500:]
    inputs = verbose_blocks(transcript(child), "input")
    assert len(inputs) == 2
    second = "".join(piece for _, piece in inputs[1])
    # Only the new turn is fed: the newline the template puts after <|im_end|>, then the turn
    # (preceded by <|im_end|> itself when the first reply was cut by -n rather than ended).
    turn = "\n<|im_start|>user\nAnd of Germany?<|im_end|>\n<|im_start|>assistant\n"
    assert second in (turn, "<|im_end|>" + turn)
    first_turn = "".join(piece for _, piece in inputs[0])
    assert first_turn.startswith("<|im_start|>system\nYou are a helpful AI assistant named SmolLM")


def test_cli_instruct_exact_token_stream():
    pexpect, exe = require_cli()
    child = spawn(pexpect, exe, "-i", "-ins", "-n", "4", "--verbose-prompt")
    child.expect(PROMPT)
    child.sendline("Name a colour.")
    child.expect(PROMPT)
    child.sendeof()
    child.expect(pexpect.EOF)
    child.close()
    block = verbose_blocks(transcript(child), "input")
    assert block, transcript(child)[-2000:]
    ids = [i for i, _ in block[0]]
    pieces = "".join(p for _, p in block[0])
    assert ids[0] == 1                                    # BOS (<|im_start|> for SmolLM2) before the prefix
    assert pieces == "<|im_start|>\n\n### Instruction:\n\nName a colour.\n\n### Response:\n\n"


def test_cli_ctrl_c_mid_reply_then_another_turn():
    pexpect, exe = require_cli()
    child = spawn(pexpect, exe, "-cnv", "-n", "400", "--verbose-prompt")
    child.expect(PROMPT)
    child.sendline("Write a very long story about a dragon who lives in a castle.")
    child.expect(r"'\\n'\r\n\S+ \S+ \S+")               # three words of the reply after the token dump
    child.sendintr()                                     # Ctrl+C mid-reply: back to the prompt
    child.expect(PROMPT)
    child.sendline("Thanks. Now say hello.")
    child.expect(r"'\\n'\r\n\S+ \S+ \S+")
    child.sendintr()                                     # and once more, so the test stays short
    child.expect(PROMPT)
    child.sendeof()
    child.expect("EOF by user")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0
    inputs = verbose_blocks(transcript(child), "input")
    assert len(inputs) == 2
    second = "".join(piece for _, piece in inputs[1])
    # The cut reply was closed with the template's end-of-turn token before the next turn.
    assert second.startswith("<|im_end|>\n<|im_start|>user\nThanks. Now say hello.<|im_end|>")


def test_cli_ctrl_d_at_first_prompt_prints_timings():
    pexpect, exe = require_cli()
    child = spawn(pexpect, exe, "-cnv")
    child.expect(PROMPT)
    child.sendeof()
    child.expect("EOF by user")
    child.expect("eval time")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0


def test_cli_reverse_prompt_hands_control_back():
    pexpect, exe = require_cli()
    child = spawn(pexpect, exe, "-i", "-n", "24", "-r", "7,", "-p", "Count: 1, 2, 3, 4,")
    child.expect("7,")
    child.sendline(" 8, 9, 10, 11, 12, 13, 14, 15,")     # typed text follows the reverse prompt
    child.expect("17,")                                  # the model went on, ending on 7, again
    child.sendeof()
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0
