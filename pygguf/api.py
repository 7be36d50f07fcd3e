"""The Python API, shaped like llama-cpp-python's `Llama` so scripts written for it read the same.

    from pygguf import Llama
    llm = Llama("model.gguf", n_ctx=2048, seed=42)
    out = llm("Q: Name the planets. A:", max_tokens=32, stop=["Q:", "\\n"])
    print(out["choices"][0]["text"])
    for chunk in llm("Once upon a time", stream=True):
        print(chunk["choices"][0]["text"], end="")
    llm.create_chat_completion(messages=[{"role": "user", "content": "Hi"}])

Decoding goes through the one engine (pygguf.generation), the same token loop as the CLI and
pygguf-batch. A fixed seed (per call, or the Llama's) gives the same text every time, whatever
was run before: each call starts a fresh sampler, and a prompt prefix reused from the KV cache
gives the same logits as recomputing it. With seed=-1 (the default) every call draws a new random
seed. Sampling defaults are SamplerParams' (llama.cpp's), but for chat's temperature.

A Llama may be shared between threads: its calls take turns on its one engine (see
pygguf.generation.turns: a call from another thread waits, a stream holds the Llama from its first
read to its end or close()), and each call has its own Sequence and sampler, so every call gives
the text it would give alone.
"""
from __future__ import annotations

import os
import time
import uuid
from typing import Iterable, Iterator, Mapping, Sequence

from pygguf.errors import PyggufError
from pygguf.generation.engine import Engine
from pygguf.generation.sequence import FinishReason, Request, Sequence as DecodeSequence
from pygguf.generation.turns import Turns
from pygguf.model import state as saved_state
from pygguf.sampling import SamplerParams
from pygguf.sampling.params import default

__all__ = ["Llama", "LlamaState"]

CHAT_TEMPERATURE = 0.2      # llama-cpp-python's create_chat_completion default (completions use SamplerParams')


class ParallelError(PyggufError, ValueError):
    """More parallel sequences asked for than the Llama's KV cache holds."""


def api_finish_reason(reason: str | None) -> str | None:
    """OpenAI's two words: "stop" (end of generation or a stop string) or "length" (budget or context)."""
    if reason is None:
        return None
    return "stop" if reason in (FinishReason.EOS, FinishReason.STOP) else "length"


def completion_request(prompt_tokens: list[int], *, n_predict: int, temperature: float, top_k: int, top_p: float,
                       min_p: float, repeat_penalty: float, stop, seed: int, logprobs: int | None,
                       grammar: str = "") -> Request:
    """The Request of a completion call or a batch record: the API's few sampling parameters over
    SamplerParams' defaults for the rest; grammar: GBNF text the output must match
    (pygguf.grammar.constraint.grammar_of makes it from a schema or a response_format)."""
    # handed over as given: SamplerParams checks each value (a SamplerValueError naming it, never an
    # OverflowError from int(inf) or a str() of a 5000-digit integer)
    sampling = SamplerParams(temp=temperature, top_k=top_k, top_p=top_p, min_p=min_p,
                             repeat_penalty=repeat_penalty, seed=seed, grammar=grammar)
    return Request(list(prompt_tokens), n_predict=n_predict, sampling=sampling, stop=_stop_tuple(stop),
                   logprobs=None if logprobs is None else int(logprobs))


def _stop_tuple(stop) -> tuple[str, ...]:
    if stop is None:
        return ()
    if isinstance(stop, str):
        return (stop,)
    return tuple(s for s in stop if s)


class LlamaState:
    """llama-cpp-python's LlamaState, over pygguf's state format (pygguf.model.state): llama_state
    holds the tokens, their KV cache and a checksum, checked against the model on load. scores is
    None: logits are not saved (the last token is evaluated again when the next call reuses the
    state, as llama.cpp's main replays it)."""

    def __init__(self, input_ids, scores, n_tokens: int, llama_state: bytes, llama_state_size: int, seed: int):
        self.input_ids = input_ids
        self.scores = scores
        self.n_tokens = n_tokens
        self.llama_state = llama_state
        self.llama_state_size = llama_state_size
        self.seed = seed


class Llama:
    def __init__(self, model_path: str | os.PathLike, *, n_ctx: int = 512, n_threads: int | None = None,
                 n_batch: int = 512, seed: int = -1, verbose: bool = False, n_seq_max: int = 1,
                 type_k: str | int | None = None, type_v: str | int | None = None, use_mmap: bool = True,
                 use_mlock: bool = False, model=None):
        """n_ctx is each sequence's context (0: the model's, capped to fit in memory); n_seq_max
        sequences can be decoded together by batch() (the KV cache holds n_seq_max * n_ctx
        positions). type_k, type_v: the KV cache types, "f16" (None), "q8_0" or "q4_0", or
        llama-cpp-python's ggml type ids (1, 8, 2). use_mmap=False reads the file into memory;
        use_mlock locks the model in RAM (a warning when the system refuses). `model` (tests): an already-built object with
        Model's interface, used instead of loading."""
        self.model_path = os.fspath(model_path)
        self.verbose = verbose
        self.seed = int(seed)
        if model is None:
            from pygguf.model import Model  # the C extension loads only when a model does
            if verbose:
                import sys
                print(f"pygguf: loading {self.model_path}", file=sys.stderr)
            model = Model.load(self.model_path, n_ctx=n_ctx or None, n_threads=n_threads or 2, n_batch=n_batch,
                               n_seq=n_seq_max, type_k=type_k, type_v=type_v, use_mmap=use_mmap,
                               use_mlock=use_mlock)
        self.model = model
        self.tokenizer = model.tokenizer
        self.engine = Engine(model, self.tokenizer)        # one slot per sequence of the KV cache
        self._turns = Turns()                              # its calls, one at a time
        self._chat = None

    # ---- tokens ----------------------------------------------------------------------------

    def tokenize(self, text: bytes | str, add_bos: bool = True, special: bool = False) -> list[int]:
        """BOS is added when add_bos and the model asks for one (llama-cpp-python's rule)."""
        if isinstance(text, (bytes, bytearray)):
            text = bytes(text).decode("utf-8", errors="replace")
        return self.tokenizer.encode(text, add_special=add_bos, parse_special=special)

    def detokenize(self, tokens: Iterable[int], special: bool = False) -> bytes:
        return b"".join(self.tokenizer.token_to_bytes(int(t), special) for t in tokens)

    def n_ctx(self) -> int:
        return self.model.n_ctx

    # ---- requests --------------------------------------------------------------------------

    def _request(self, prompt_tokens: list[int], *, max_tokens, seed, grammar=None, response_format=None,
                 **params) -> Request:
        """llama-cpp-python's meanings: max_tokens None or <= 0 is no limit, seed None the Llama's;
        grammar (GBNF text or a LlamaGrammar-like object) or OpenAI's response_format constrain the
        output."""
        from pygguf.grammar.constraint import grammar_of
        n_predict = -1 if max_tokens is None or max_tokens <= 0 else int(max_tokens)
        return completion_request(prompt_tokens, n_predict=n_predict, seed=self.seed if seed is None else seed,
                                  grammar=grammar_of(grammar=grammar, response_format=response_format), **params)

    def _prompt_tokens(self, prompt: str | Sequence[int]) -> list[int]:
        if isinstance(prompt, str):
            return self.tokenize(prompt, add_bos=True, special=True)
        return [int(t) for t in prompt]

    def _logprobs_dict(self, seq: DecodeSequence) -> dict | None:
        if seq.request.logprobs is None:
            return None
        texts, offsets, chosen, tops = [], [], [], []
        offset = 0
        for lp in seq.logprobs:
            piece = self.tokenizer.token_to_bytes(lp.token).decode("utf-8", errors="replace")
            texts.append(piece)
            offsets.append(offset)
            offset += len(piece)
            chosen.append(lp.logprob)
            tops.append({self.tokenizer.token_to_bytes(t).decode("utf-8", errors="replace"): v for t, v in lp.top})
        return {"tokens": texts, "text_offset": offsets, "token_logprobs": chosen, "top_logprobs": tops}

    @staticmethod
    def _usage(seq: DecodeSequence) -> dict:
        n_prompt, n_done = len(seq.request.prompt_tokens), len(seq.tokens)
        return {"prompt_tokens": n_prompt, "completion_tokens": n_done, "total_tokens": n_prompt + n_done}

    # ---- completion ------------------------------------------------------------------------

    def create_completion(self, prompt: str | Sequence[int], max_tokens: int | None = 16, temperature: float = default("temp"),
                          top_k: int = default("top_k"), top_p: float = default("top_p"), min_p: float = default("min_p"), repeat_penalty: float = default("repeat_penalty"),
                          stop: str | Sequence[str] | None = None, seed: int | None = None, stream: bool = False,
                          logprobs: int | None = None, grammar=None, response_format: Mapping | None = None):
        request = self._request(self._prompt_tokens(prompt), max_tokens=max_tokens, temperature=temperature,
                                top_k=top_k, top_p=top_p, min_p=min_p, repeat_penalty=repeat_penalty, stop=stop,
                                seed=seed, logprobs=logprobs, grammar=grammar, response_format=response_format)
        seq = self.engine.new_sequence(request)         # a too-long prompt raises here, before streaming
        if stream:
            return self._stream_completion(seq, self._completion_head())
        self._run(seq)
        return self._completion(seq)

    def _run(self, seq: DecodeSequence) -> None:
        for _ in self._stream(seq):
            pass

    def _stream(self, seq: DecodeSequence) -> Iterator[str]:
        """seq's text in pieces, the turn held from the first read to the end (turns.py); the
        engine's generator is closed inside the turn, where it gives its slot back."""
        with self._turns.call() as turn:
            self.engine.abandon()                       # a stream of this thread, left open, ends
            self._last_seq = seq                        # whose slot save_state saves
            pieces = self.engine.stream(seq)
            try:
                for delta in pieces:
                    with self._turns.paused(turn):
                        yield delta
                    if turn.taken_over:                 # by a later call of this thread
                        if not seq.finished:
                            seq.finish(FinishReason.INTERRUPTED)
                        return
            finally:
                pieces.close()

    def _completion_head(self) -> dict:
        return {"id": f"cmpl-{uuid.uuid4()}", "object": "text_completion", "created": int(time.time()),
                "model": self.model_path}

    def _completion(self, seq: DecodeSequence) -> dict:
        return dict(self._completion_head(),
                    choices=[{"text": seq.text, "index": 0, "logprobs": self._logprobs_dict(seq),
                              "finish_reason": api_finish_reason(seq.finish_reason)}],
                    usage=self._usage(seq))

    __call__ = create_completion

    def _stream_completion(self, seq: DecodeSequence, head: dict) -> Iterator[dict]:
        for delta in self._stream(seq):
            yield dict(head, choices=[{"text": delta, "index": 0, "logprobs": None, "finish_reason": None}])
        yield dict(head, choices=[{"text": "", "index": 0, "logprobs": self._logprobs_dict(seq),
                                   "finish_reason": api_finish_reason(seq.finish_reason)}],
                   usage=self._usage(seq))

    def batch(self, prompts: Iterable[str | Sequence[int]], *, parallel: int | None = None, max_tokens: int | None = 16,
              temperature: float = default("temp"), top_k: int = default("top_k"), top_p: float = default("top_p"), min_p: float = default("min_p"),
              repeat_penalty: float = default("repeat_penalty"), stop: str | Sequence[str] | None = None, seed: int | None = None,
              logprobs: int | None = None, grammar=None, response_format: Mapping | None = None) -> list[dict]:
        """One completion dict per prompt, in order, decoded `parallel` at a time (default: n_seq_max)
        through one forward pass per token; a prompt prefix shared with another is computed once.
        Each result is the one create_completion gives with the same seed. A prompt too long for
        the context raises before anything is decoded."""
        requests = [self._request(self._prompt_tokens(p), max_tokens=max_tokens, temperature=temperature, top_k=top_k,
                                  top_p=top_p, min_p=min_p, repeat_penalty=repeat_penalty, stop=stop, seed=seed,
                                  logprobs=logprobs, grammar=grammar, response_format=response_format)
                    for p in prompts]
        sequences = [self.engine.new_sequence(r) for r in requests]
        parallel = self.parallel(parallel)
        with self._turns.call():
            self.engine.abandon()
            self._last_seq = sequences[-1] if sequences else self._last_seq
            for _ in self.engine.run(sequences, parallel):
                pass
        return [self._completion(seq) for seq in sequences]

    def parallel(self, parallel: int | None = None) -> int:
        """How many sequences batch() decodes together: at most the Llama's n_seq_max."""
        n_seq = len(self.engine.slots)
        parallel = n_seq if parallel is None else int(parallel)
        if not 1 <= parallel <= n_seq:
            raise ParallelError(f"parallel={parallel}: this Llama holds {n_seq} sequence(s) (raise n_seq_max)")
        return parallel

    # ---- chat ------------------------------------------------------------------------------

    @property
    def chat_formatter(self):
        if self._chat is None:
            from pygguf.chat import ChatFormatter
            self._chat = ChatFormatter.from_metadata(self.model.metadata)
        return self._chat

    def chat_prompt_tokens(self, messages: Sequence[Mapping[str, str]]) -> list[int]:
        """The messages rendered with the model's chat template, tokenized (one BOS at most)."""
        text = self.chat_formatter.render(messages, add_generation_prompt=True)
        ids = self.tokenizer.encode(text, add_special=True, parse_special=True)
        bos = self.tokenizer.bos_id
        if len(ids) >= 2 and bos is not None and ids[0] == ids[1] == bos:
            ids = ids[1:]                       # the template wrote BOS as text too
        return ids

    def create_chat_completion(self, messages: Sequence[Mapping[str, str]], max_tokens: int | None = None,
                               temperature: float = CHAT_TEMPERATURE, top_k: int = default("top_k"), top_p: float = default("top_p"),
                               min_p: float = default("min_p"), repeat_penalty: float = default("repeat_penalty"),
                               stop: str | Sequence[str] | None = None, seed: int | None = None,
                               stream: bool = False, logprobs: int | None = None, grammar=None,
                               response_format: Mapping | None = None):
        request = self._request(self.chat_prompt_tokens(messages), max_tokens=max_tokens, temperature=temperature,
                                top_k=top_k, top_p=top_p, min_p=min_p, repeat_penalty=repeat_penalty, stop=stop,
                                seed=seed, logprobs=logprobs, grammar=grammar, response_format=response_format)
        seq = self.engine.new_sequence(request)
        head = {"id": f"chatcmpl-{uuid.uuid4()}", "created": int(time.time()), "model": self.model_path}
        if stream:
            return self._stream_chat(seq, head)
        self._run(seq)
        return dict(head, object="chat.completion",
                    choices=[{"index": 0, "message": {"role": "assistant", "content": seq.text},
                              "logprobs": self._logprobs_dict(seq),
                              "finish_reason": api_finish_reason(seq.finish_reason)}],
                    usage=self._usage(seq))

    def _stream_chat(self, seq: DecodeSequence, head: dict) -> Iterator[dict]:
        chunk = dict(head, object="chat.completion.chunk")
        yield dict(chunk, choices=[{"index": 0, "delta": {"role": "assistant"}, "logprobs": None,
                                    "finish_reason": None}])
        for delta in self._stream(seq):
            yield dict(chunk, choices=[{"index": 0, "delta": {"content": delta}, "logprobs": None,
                                        "finish_reason": None}])
        yield dict(chunk, choices=[{"index": 0, "delta": {}, "logprobs": None,
                                    "finish_reason": api_finish_reason(seq.finish_reason)}])

    # ---- saved state -----------------------------------------------------------------------

    def _state_slot(self) -> int:
        """The slot of the last call (the only one unless n_seq_max > 1)."""
        last = getattr(self, "_last_seq", None)
        return last.slot.index if last is not None and last.slot is not None else 0

    def save_state(self) -> LlamaState:
        """The tokens the last call left in the KV cache and their cells (llama-cpp-python's name)."""
        import numpy as np
        with self._turns.call():
            self.engine.abandon()                   # a stream left unread gives its slot back
            slot = self._state_slot()
            data = self.engine.save_state(slot)
            tokens = self.engine.slots[slot].cached
            return LlamaState(np.asarray(tokens, dtype=np.intc), None, len(tokens), data, len(data), self.seed)

    def load_state(self, state: LlamaState) -> None:
        """Restore a save_state() of this model with this n_ctx and cache types (else StateError,
        saying what differs): the next prompt sharing a prefix with its tokens evaluates only the rest."""
        with self._turns.call():
            self.engine.abandon()
            self.engine.load_state(state.llama_state, self._state_slot(), source="LlamaState")
            self.seed = int(state.seed)

    def save_state_file(self, path: str | os.PathLike) -> None:
        """save_state() written to path atomically (a temporary file renamed over it)."""
        with self._turns.call():
            self.engine.abandon()
            saved_state.write_file(path, self.engine.state_parts(self._state_slot()))

    def load_state_file(self, path: str | os.PathLike) -> None:
        """A save_state_file() restored, checked as load_state; the seed stays this Llama's."""
        with self._turns.call():
            self.engine.abandon()
            self.engine.load_state(saved_state.read_file(path), self._state_slot(), source=os.fspath(path))

    def reset(self) -> None:
        """Forget the KV cache's contents: no prompt prefix is reused by the next call."""
        with self._turns.call():
            self.engine.reset()

    # ---- lifetime --------------------------------------------------------------------------

    def close(self) -> None:
        """Frees the model once no other thread's call is using it."""
        close = getattr(self.model, "close", None)
        if close is not None:
            with self._turns.call():
                close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
