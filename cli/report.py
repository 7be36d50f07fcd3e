"""What the command tells the user besides the text: set-up lines, the stop, the perf block, JSON.

All of it on stderr (llama.cpp's formats), except the --json object, which is the only thing on
stdout in that mode.
"""
from __future__ import annotations

import json

from pygguf.generation.sequence import FinishReason, Sequence, keep_count
from pygguf.generation.timings import format_perf_block

from .options import DisplayParams, GenerationParams, ModelParams
from .output import log, write_stdout


def token_piece(tokenizer, token: int, special: bool = True) -> str:
    return tokenizer.token_to_bytes(token, special=special).decode("utf-8", "replace")


def log_run_setup(model, sampler, gp: GenerationParams, mp: ModelParams, prompt_tokens: list[int]) -> None:
    n_keep = keep_count(gp.n_keep, prompt_tokens, model.tokenizer)
    log(f"sampler seed: {sampler.seed}")
    log(sampler.params_description())
    log(sampler.chain_description())
    log(f"generate: n_ctx = {model.n_ctx}, n_batch = {mp.n_batch}, n_predict = {gp.n_predict}, n_keep = {n_keep}")
    log()


def log_verbose_prompt(tokenizer, prompt: str, prompt_tokens: list[int], gp: GenerationParams) -> None:
    """llama.cpp's --verbose-prompt listing: the prompt, then `id -> 'piece'` per token."""
    log(f"main: prompt: '{prompt}'")
    log(f"main: number of tokens in prompt = {len(prompt_tokens)}")
    for token in prompt_tokens:
        log(f"{token:6d} -> '{token_piece(tokenizer, token)}'")
    n_keep = keep_count(gp.n_keep, prompt_tokens, tokenizer)
    if n_keep > int(tokenizer.add_bos):
        static = "".join(token_piece(tokenizer, t) for t in prompt_tokens[:n_keep])
        log(f"main: static prompt based on n_keep: '{static}'")
    for reverse in gp.reverse_prompts:
        log(f"Reverse prompt: '{reverse}'")
        for token in tokenizer.encode(reverse, add_special=False, parse_special=True):
            log(f"{token:6d} -> '{token_piece(tokenizer, token)}'")
    log()


# --json's names for the finish reasons (a full context was "context_full" there before the engine)
JSON_STOP_REASON = {FinishReason.CONTEXT: "context_full"}


def report(seq: Sequence, display: DisplayParams) -> None:
    """Why it stopped, then the perf block (stderr); with --json the result object (stdout)."""
    if seq.finish_reason is FinishReason.EOS:
        log("[end of text]")
    elif seq.finish_reason is FinishReason.CONTEXT:
        log(f"main: {seq.detail}")
    log()
    for line in format_perf_block(seq.timings):
        log(line)
    if seq.finish_reason is FinishReason.INTERRUPTED:
        log("Interrupted by user")
    if display.json:
        write_stdout(json.dumps(result_json(seq), ensure_ascii=False) + "\n")


def result_json(seq: Sequence) -> dict:
    return {
        "text": seq.text,
        "tokens": seq.tokens,
        "prompt_tokens": seq.request.prompt_tokens,
        "stop_reason": JSON_STOP_REASON.get(seq.finish_reason, seq.finish_reason.value),
        "stop_string": seq.stop_string,
        "seed": seq.seed,
        "timings": seq.timings.as_dict(),
    }
