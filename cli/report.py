"""What the command tells the user besides the text: set-up lines, the stop, the perf block, JSON.

All of it on stderr (llama.cpp's formats), except the --json object, which is the only thing on
stdout in that mode.
"""
from __future__ import annotations

import json

from pygguf.generation.generate import GenerationParams, GenerationResult, StopReason, keep_count
from pygguf.generation.timings import format_perf_block

from .options import DisplayParams, ModelParams
from .output import log, write_stdout


def token_piece(tokenizer, token: int, special: bool = True) -> str:
    return tokenizer.token_to_bytes(token, special=special).decode("utf-8", "replace")


def log_run_setup(model, sampler, gp: GenerationParams, mp: ModelParams, prompt_tokens: list[int]) -> None:
    n_keep = keep_count(gp.n_keep, prompt_tokens, model.tokenizer.add_bos)
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
    n_keep = keep_count(gp.n_keep, prompt_tokens, tokenizer.add_bos)
    if n_keep > int(tokenizer.add_bos):
        static = "".join(token_piece(tokenizer, t) for t in prompt_tokens[:n_keep])
        log(f"main: static prompt based on n_keep: '{static}'")
    for reverse in gp.reverse_prompts:
        log(f"Reverse prompt: '{reverse}'")
        for token in tokenizer.encode(reverse, add_special=False, parse_special=True):
            log(f"{token:6d} -> '{token_piece(tokenizer, token)}'")
    log()


def report(result: GenerationResult, sampler, display: DisplayParams) -> None:
    """Why it stopped, then the perf block (stderr); with --json the result object (stdout)."""
    if result.stop_reason is StopReason.EOS:
        log("[end of text]")
    elif result.stop_reason is StopReason.CONTEXT_FULL:
        log(f"main: {result.detail}")
    log()
    for line in format_perf_block(result.timings):
        log(line)
    if result.stop_reason is StopReason.INTERRUPTED:
        log("Interrupted by user")
    if display.json:
        write_stdout(json.dumps(result_json(result, sampler), ensure_ascii=False) + "\n")


def result_json(result: GenerationResult, sampler) -> dict:
    return {
        "text": result.text,
        "tokens": result.tokens,
        "prompt_tokens": result.prompt_tokens,
        "stop_reason": result.stop_reason.value,
        "stop_string": result.stop_string,
        "seed": sampler.seed,
        "timings": result.timings.as_dict(),
    }
