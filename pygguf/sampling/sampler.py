"""Sampling: llama.cpp's sampler chain behind one object.

    params = SamplerParams(temp=0.7, top_k=20)
    s = Sampler(params, n_vocab, eog_ids=tok.eog_ids, detokenize=...)
    for t in prompt_ids: s.accept(t)          # penalties and DRY see the prompt too
    tok = s.sample(logits); s.accept(tok)

The defaults (llama.cpp's common.h) and the default chain order live in `params`. A grammar
(`params.grammar`, GBNF text) is a stage beside the chain, where llama.cpp's common sampler puts
it: the chain samples first, the grammar checks that one token, and only when it refuses it are
all the tokens the grammar refuses masked and the chain run again (same RNG, so a seed replays
llama.cpp's draws); accepted tokens advance the grammar, prompt tokens do not. The samplers
themselves are pure functions (`filters`, `dry`); the Sampler owns the parameters,
the accepted-token history, mirostat's mu and the RNGs (std::mt19937, so a fixed seed replays
llama.cpp's draws on the same logits). Chains made only of logit bias, penalties, top-k, top-p,
min-p, temperature and dist (the default one among them), and greedy, run as one C call
(`pygguf.sampling.fast`) that computes what those functions compute; the rest run them in turn.
"""
from __future__ import annotations

import math
from collections import Counter, deque
from typing import Callable, Iterable, Sequence

import numpy as np

from pygguf._native import ffi as _ffi
from pygguf.errors import NonFiniteLogits, SamplerError
from pygguf.sampling import filters
from pygguf.sampling.candidates import Candidates
from pygguf.sampling.dry import dry, process_breakers
from pygguf.sampling.fast import FastChain, plan_steps
from pygguf.sampling.params import SamplerParams, parse_samplers
from pygguf.sampling.rng import Mt19937, resolve_seed

MIROSTAT_M = 100   # mirostat v1 estimates the Zipf exponent from this many top tokens

# How each chain entry is shown in the "sampler chain:" line (llama.cpp's sampler names).
_DISPLAY = {"penalties": "penalties", "dry": "dry", "top_n_sigma": "top-n-sigma", "top_k": "top-k",
            "typ_p": "typical", "top_p": "top-p", "min_p": "min-p", "xtc": "xtc",
            "temperature": "temp-ext"}


def check_finite(logits: np.ndarray) -> None:
    """NonFiniteLogits when the logits hold a NaN or +inf (a model gone wrong: nothing can be
    drawn from them). One reduction: max() is NaN as soon as one logit is. -inf is a banned
    token; all of them -inf is the chain's "every token banned" SamplerError."""
    top = float(logits.max())
    if top != top:
        raise NonFiniteLogits("the logits hold a NaN (a corrupt weight in the model, or a setting that "
                              "overflows): nothing can be sampled")
    if top == math.inf:
        raise NonFiniteLogits("the logits reach +inf (a corrupt weight in the model, or a setting that "
                              "overflows): nothing can be sampled")


def check_model_logits(logits: np.ndarray) -> None:
    """NonFiniteLogits for a -inf in a model's logits, which a caller may set to ban a token but a
    model never computes (a -inf scale in its weights does). One reduction, no temporary array:
    NaN and +inf are left to Sampler.sample's check_finite, which every sampled row goes through."""
    low = float(logits.min())
    if low == -math.inf:
        raise NonFiniteLogits("the model's logits hold -inf (a corrupt weight in the model, or a setting that "
                              "overflows): nothing can be sampled")


class GrammarDeadEnd(SamplerError):
    """The grammar allows no token at this point (nor an end of generation): the sequence ends."""


class Sampler:
    """llama.cpp's common sampler: logit-bias -> the configured chain -> dist (or mirostat)."""

    def __init__(self, params: SamplerParams, n_vocab: int, eog_ids: Iterable[int] = (),
                 detokenize: Callable[[int], str] | None = None, *,
                 tokenize: Callable[[str], Sequence[int]] | None = None,
                 n_ctx_train: int | None = None, pieces: Sequence[bytes] | None = None):
        """eog_ids: end-of-generation tokens (banned by ignore_eos). detokenize(id) -> str and,
        optionally, tokenize(str) -> ids let DRY find its sequence breakers in the vocabulary.
        n_ctx_train: the model's training context, DRY's window when dry_penalty_last_n = -1
        (llama.cpp's meaning); unbounded when not given. pieces: every token's bytes as the
        grammar reads them (Tokenizer.grammar_pieces()), needed when params.grammar is set."""
        self.params = params
        self.n_vocab = int(n_vocab)
        self._check_params()
        self._order = parse_samplers(params.samplers)
        self._bias = self._build_bias(eog_ids)
        self._all_ids = np.arange(self.n_vocab, dtype=np.int64)
        self._context_size = int(n_ctx_train) if n_ctx_train else 1 << 30
        self._breakers = {}
        if self._dry_enabled():
            if detokenize is None:
                raise SamplerError("DRY needs detokenize(id) -> str to find its sequence breakers")
            self._breakers = process_breakers(params.dry_sequence_breakers, self.n_vocab,
                                              detokenize, tokenize)
        self._requested_seed = params.seed
        self._rng_dist = Mt19937(0)
        self._rng_xtc = Mt19937(0)
        self._rng_mirostat = Mt19937(0)
        self._window_limit = max(params.repeat_last_n, 1)
        self._fast = self._build_fast_chain()
        self._matcher = self._build_grammar(pieces, eog_ids)
        self.reset()

    # --- construction -------------------------------------------------------------------
    def _check_params(self) -> None:
        if self.n_vocab <= 0:
            raise SamplerError(f"n_vocab must be positive, got {self.n_vocab}")
        self.params.check()             # again: a dataclass's fields can be set after it was built

    def _build_bias(self, eog_ids: Iterable[int]) -> dict[int, float]:
        bias: dict[int, float] = {}
        for token, value in self.params.logit_bias.items():
            token = int(token)
            if not 0 <= token < self.n_vocab:
                raise SamplerError(f"logit bias for token {token}, outside the vocabulary (0..{self.n_vocab - 1})")
            bias[token] = bias.get(token, 0.0) + float(value)
        if self.params.ignore_eos:
            for token in eog_ids:
                if 0 <= int(token) < self.n_vocab:
                    bias[int(token)] = -math.inf
        return bias

    def _build_fast_chain(self) -> FastChain | None:
        """The C chain when it covers this configuration (read once: like the order and the bias,
        the parameters are taken at construction)."""
        greedy = self._greedy_shortcut
        steps = plan_steps(self.params, self._order, self.n_vocab, greedy=greedy,
                           dry_enabled=self._dry_enabled())
        if steps is None or any(math.isnan(v) for v in self._bias.values()):
            return None
        return FastChain(self.n_vocab, steps, greedy=greedy, bias=self._bias)

    def _build_grammar(self, pieces, eog_ids):
        """The grammar's matcher over this vocabulary (shared by samplers of the same grammar and
        vocabulary: it caches what it learns), or None"""
        if not self.params.grammar:
            return None
        if pieces is None or len(pieces) != self.n_vocab:
            raise SamplerError("a grammar needs every token's bytes (pieces) to match them against it")
        from pygguf.grammar.compiled import matcher_for   # only with a grammar: keeps plain sampling light
        return matcher_for(self.params.grammar, pieces, eog_ids)

    def _dry_enabled(self) -> bool:
        p = self.params
        return p.dry_multiplier != 0.0 and p.dry_base >= 1.0 and p.dry_penalty_last_n != 0

    # --- state ----------------------------------------------------------------------------
    @property
    def seed(self) -> int:
        """The seed in use (a random one when params.seed is -1)."""
        return self._seed

    def reset(self) -> None:
        """Forget accepted tokens and mirostat's state; reseed (a new random seed if seed=-1)."""
        p = self.params
        self._seed = resolve_seed(self._requested_seed)
        for rng in (self._rng_dist, self._rng_xtc, self._rng_mirostat):
            rng.seed(self._seed)
        # the last repeat_last_n accepted tokens: a ring the C chain reads in place, grown as
        # tokens come (up to repeat_last_n) rather than allocated at its full size
        self._window = np.zeros(min(self._window_limit, 256), dtype=np.int32)
        self._window_ptr = _ffi.from_buffer("int32_t[]", self._window)
        self._window_len = 0      # how many of _window are filled
        self._window_next = 0     # where the next accepted token goes
        dry_window = self._context_size if p.dry_penalty_last_n == -1 else p.dry_penalty_last_n
        self._dry_history: deque[int] = deque(maxlen=max(min(dry_window, self._context_size), 1))
        self._mu = 2.0 * p.mirostat_ent
        self.grammar = self._matcher.start() if self._matcher is not None else None   # its state

    def restart_grammar(self) -> None:
        """The grammar from its start (a new interactive turn, as llama.cpp's main does)"""
        if self._matcher is not None:
            self.grammar = self._matcher.start()

    @property
    def grammar_done(self) -> bool:
        """The grammar is complete and allows nothing more but an end of generation."""
        return self.grammar is not None and self.grammar.finished

    def accept(self, token: int, *, grammar: bool = True) -> None:
        """Record an accepted token for the penalties and DRY, and (grammar: a sampled token, not
        the prompt's) advance the grammar over it."""
        token = int(token)
        if not 0 <= token < self.n_vocab:
            raise SamplerError(f"accepted token {token} is outside the vocabulary (0..{self.n_vocab - 1})")
        if grammar and self.grammar is not None:
            self.grammar.accept(token)
        if self.params.repeat_last_n > 0:
            if self._window_len == self._window.shape[0] < self._window_limit:
                self._grow_window()
            size = self._window.shape[0]
            self._window[self._window_next] = token
            self._window_next = (self._window_next + 1) % size
            if self._window_len < size:
                self._window_len += 1
        if self._dry_enabled():
            self._dry_history.append(token)

    def _grow_window(self) -> None:
        """Double the ring (it is full and has not wrapped yet, so its order is kept)."""
        bigger = np.zeros(min(2 * self._window.shape[0], self._window_limit), dtype=np.int32)
        bigger[:self._window_len] = self._window
        self._window = bigger
        self._window_ptr = _ffi.from_buffer("int32_t[]", bigger)
        self._window_next = self._window_len

    def accept_all(self, tokens: Iterable[int]) -> None:
        """Prompt or input tokens: the penalties see them, the grammar does not"""
        for token in tokens:
            self.accept(token, grammar=False)

    # --- sampling ---------------------------------------------------------------------------
    def sample(self, logits: np.ndarray) -> int:
        """Run the chain on one row of logits and return the chosen token id (not accepted);
        with a grammar, a token it refuses is sampled again from the tokens it allows."""
        logits = np.asarray(logits)
        if logits.ndim != 1 or logits.shape[0] != self.n_vocab:
            raise SamplerError(f"expected logits of shape ({self.n_vocab},), got {logits.shape}")
        if logits.dtype != np.float32 or not logits.flags.c_contiguous:
            logits = np.ascontiguousarray(logits, dtype=np.float32)
        check_finite(logits)
        token = self._sample_chain(logits)
        if self.grammar is None or self.grammar.allows(token):
            return token
        masked = logits.copy()                  # the caller's logits are not ours to edit
        self.grammar.mask(masked)
        for token, bias in self._bias.items():
            if bias == -math.inf:
                masked[token] = -math.inf
        if not np.isfinite(masked).any():
            raise GrammarDeadEnd("the grammar allows no token here (nor an end of generation)")
        return self._sample_chain(masked)

    def _sample_chain(self, logits: np.ndarray) -> int:
        if self._fast is not None:
            token = self._fast.sample(logits, self._window_ptr, self._window_len, self._rng_dist)
            if token is not None:
                return token
        cand = Candidates(self._all_ids, logits, identity=True)
        cand = filters.logit_bias(cand, self._bias)
        p = self.params
        if self._greedy_shortcut:
            return self._sample_greedy(cand)
        if p.mirostat == 0:
            for name in self._order:
                cand = self._apply(name, cand)
            pos = filters.dist(cand, self._rng_dist)
        else:
            cand = filters.temperature(cand, p.temp)
            if p.mirostat == 1:
                pos, cand, self._mu = filters.mirostat_v1(cand, p.mirostat_ent, p.mirostat_lr,
                                                          MIROSTAT_M, self._mu, self.n_vocab,
                                                          self._rng_mirostat)
            else:
                pos, cand, self._mu = filters.mirostat_v2(cand, p.mirostat_ent, p.mirostat_lr,
                                                          self._mu, self._rng_mirostat)
        return int(cand.ids[pos])

    @property
    def _greedy_shortcut(self) -> bool:
        """temp <= 0 keeps only the maximum; top-n-sigma, top-k, top-p and min-p always keep it,
        so the chain's result is the argmax after the logit-changing samplers. (Typical and XTC
        can drop the maximum, and dynatemp can raise the temperature: no shortcut with them.)
        dist's RNG is not drawn: with temp <= 0 for the Sampler's life its draws never matter."""
        p = self.params
        return (p.temp <= 0.0 and p.mirostat == 0 and p.dynatemp_range <= 0.0
                and "temperature" in self._order
                and not any(self._active(n) for n in ("typ_p", "xtc")))

    def _sample_greedy(self, cand: Candidates) -> int:
        for name in self._order:
            if name in ("penalties", "dry"):
                cand = self._apply(name, cand)
        return int(cand.ids[int(np.argmax(cand.logits))])

    def _apply(self, name: str, cand: Candidates) -> Candidates:
        p = self.params
        if name == "penalties":
            if p.repeat_last_n == 0:
                return cand
            counts = Counter(self._window[:self._window_len].tolist())
            return filters.penalties(cand, counts, p.repeat_penalty, p.frequency_penalty,
                                     p.presence_penalty)
        if name == "dry":
            return dry(cand, self._dry_history, self._breakers, p.dry_multiplier, p.dry_base,
                       p.dry_allowed_length, p.dry_penalty_last_n, self._context_size)
        if name == "top_n_sigma":
            return filters.top_n_sigma(cand, p.top_n_sigma)
        if name == "top_k":
            return filters.top_k(cand, p.top_k)
        if name == "typ_p":
            return filters.typical(cand, p.typical_p, p.min_keep)
        if name == "top_p":
            return filters.top_p(cand, p.top_p, p.min_keep)
        if name == "min_p":
            return filters.min_p(cand, p.min_p, p.min_keep)
        if name == "xtc":
            return filters.xtc(cand, p.xtc_probability, p.xtc_threshold, p.min_keep, self._rng_xtc)
        if name == "temperature":
            return filters.temperature_ext(cand, p.temp, p.dynatemp_range, p.dynatemp_exponent)
        raise SamplerError(f"unknown sampler {name!r}")

    # --- description ------------------------------------------------------------------------
    def _active(self, name: str) -> bool:
        p = self.params
        return {
            "penalties": p.repeat_last_n != 0 and (p.repeat_penalty != 1.0 or p.frequency_penalty != 0.0
                                                   or p.presence_penalty != 0.0),
            "dry": self._dry_enabled(),
            "top_n_sigma": p.top_n_sigma > 0.0,
            "top_k": p.top_k > 0,
            "typ_p": p.typical_p < 1.0,
            "top_p": p.top_p < 1.0,
            "min_p": p.min_p > 0.0,
            "xtc": p.xtc_probability > 0.0 and p.xtc_threshold <= 0.5,
            "temperature": True,
        }[name]

    def chain_description(self) -> str:
        """llama.cpp's start-up line, e.g. 'sampler chain: logits -> ?penalties -> ... -> dist'
        (a '?' marks a sampler its parameters switch off)."""
        parts = ["logits"]
        if self._bias:
            parts.append("logit-bias")
        if self.params.mirostat == 0:
            parts += [(_DISPLAY[n] if self._active(n) else "?" + _DISPLAY[n]) for n in self._order]
            parts.append("dist")
        else:
            parts += ["temp", "mirostat" if self.params.mirostat == 1 else "mirostat-v2"]
        return "sampler chain: " + " -> ".join(parts)

    def params_description(self) -> str:
        """llama.cpp's 'sampler params:' block (four tab-indented lines)."""
        p = self.params
        return (
            "sampler params: \n"
            f"\trepeat_last_n = {p.repeat_last_n}, repeat_penalty = {p.repeat_penalty:.3f}, "
            f"frequency_penalty = {p.frequency_penalty:.3f}, presence_penalty = {p.presence_penalty:.3f}\n"
            f"\tdry_multiplier = {p.dry_multiplier:.3f}, dry_base = {p.dry_base:.3f}, "
            f"dry_allowed_length = {p.dry_allowed_length}, dry_penalty_last_n = {p.dry_penalty_last_n}\n"
            f"\ttop_k = {p.top_k}, top_p = {p.top_p:.3f}, min_p = {p.min_p:.3f}, "
            f"xtc_probability = {p.xtc_probability:.3f}, xtc_threshold = {p.xtc_threshold:.3f}, "
            f"typical_p = {p.typical_p:.3f}, top_n_sigma = {p.top_n_sigma:.3f}, temp = {p.temp:.3f}\n"
            f"\tmirostat = {p.mirostat}, mirostat_lr = {p.mirostat_lr:.3f}, mirostat_ent = {p.mirostat_ent:.3f}"
        )
