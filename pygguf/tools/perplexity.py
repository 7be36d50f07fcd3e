"""Perplexity and KL divergence the way llama-perplexity measures them.

Method (llama.cpp tools/perplexity): tokenize the whole text (BOS as the tokenizer says), cut it into
chunks of n_ctx tokens, evaluate every chunk from an empty cache (the first token replaced by BOS
when the model adds one), and score only the second half of each chunk: the logits at positions
n_ctx/2 .. n_ctx-2 against the tokens that follow them, so every scored token has at least n_ctx/2
tokens of context. PPL = exp(mean NLL); its uncertainty is PPL * sqrt(var(NLL) / (count - 1)).

KL divergence: a base run (`--kl-divergence-base FILE`) stores, for every scored position, the
base model's log-probabilities over the whole vocabulary; a second run (`--kl-divergence`) on
another model (e.g. a quantization) reads them and reports mean KL(base || model) with its
uncertainty, the PPL ratio and how often both models put the same token on top.

Base file format (ours, little-endian; llama.cpp's is similar in spirit, not byte-compatible):
    8 bytes  magic b"PGKLD\\x00\\x01\\x00"
    uint32   n_ctx, n_vocab, n_chunk
    int32    tokens[n_chunk * n_ctx]          the evaluated tokens (as tokenized, before BOS swap)
    then per chunk, per scored position (n_ctx - 1 - n_ctx/2 rows), one record:
    float32  scale, float32 min_logprob, uint16 q[n_vocab]
             logprob_i = min_logprob + scale * q_i, quantized linearly over the 16 nats below the
             top token (anything lower is stored as the floor and ignored by the KL sum).
"""
from __future__ import annotations

import math
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, Callable

import numpy as np

from pygguf.errors import PyggufError
from pygguf.model.batch import Batch

MAGIC = b"PGKLD\x00\x01\x00"
LOGPROB_RANGE = 16.0     # nats below the top log-prob kept by the base file (as llama.cpp)
_HEADER = struct.Struct("<III")


class PerplexityError(PyggufError, ValueError):
    """The text, the parameters or a base file cannot be used (the message says why)."""


# --- the math ----------------------------------------------------------------------------------
def log_normalizers(logits: np.ndarray) -> np.ndarray:
    """log(sum(exp(row))) per row: float32 exp of (l - max), summed in float64 as llama.cpp does."""
    max_l = logits.max(axis=1, keepdims=True)
    sums = np.exp(logits - max_l, dtype=np.float32).sum(axis=1, dtype=np.float64)
    return max_l[:, 0].astype(np.float64) + np.log(sums)


def token_nll(logits: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """Negative log-likelihood of targets[i] under softmax(logits[i]), float64."""
    picked = logits[np.arange(logits.shape[0]), targets].astype(np.float64)
    return log_normalizers(logits) - picked


def mean_and_uncertainty(total: float, total2: float, count: int) -> tuple[float, float]:
    """Mean and its standard error from a sum and a sum of squares (0 when not estimable)."""
    if count < 1:
        return 0.0, 0.0
    mean = total / count
    var = total2 / count - mean * mean
    return mean, (math.sqrt(var / (count - 1)) if var > 0 and count > 1 else 0.0)


@dataclass
class PplAccumulator:
    nll: float = 0.0
    nll2: float = 0.0
    count: int = 0

    def add(self, nll: np.ndarray) -> None:
        self.nll += float(nll.sum())
        self.nll2 += float((nll * nll).sum())
        self.count += int(nll.shape[0])

    @property
    def ppl(self) -> float:
        return math.exp(self.nll / self.count)

    def estimate(self) -> tuple[float, float]:
        """(PPL, uncertainty) with llama.cpp's formula: PPL * sqrt((E[x^2] - E[x]^2) / (count - 1))."""
        mean, err = mean_and_uncertainty(self.nll, self.nll2, self.count)
        ppl = math.exp(mean)
        return ppl, err * ppl


# --- chunking ----------------------------------------------------------------------------------
def count_chunks(n_tokens: int, n_ctx: int, max_chunks: int = -1) -> int:
    if n_ctx < 4:
        raise PerplexityError(f"the context size must be at least 4 tokens, got {n_ctx}")
    if n_tokens < 2 * n_ctx:
        raise PerplexityError(
            f"you need at least {2 * n_ctx} tokens to evaluate perplexity with a context of {n_ctx}; "
            f"the text tokenizes to only {n_tokens} tokens")
    n = n_tokens // n_ctx
    return n if max_chunks < 0 else min(max_chunks, n)


def scored_range(n_ctx: int) -> tuple[int, int]:
    """Positions whose logits are scored: [n_ctx/2, n_ctx - 1)."""
    return n_ctx // 2, n_ctx - 1


def chunk_logits(model, tokens: np.ndarray, bos_id: int | None) -> np.ndarray:
    """Evaluate one chunk from an empty cache; return the logits of the scored positions."""
    feed = [int(t) for t in tokens]
    if bos_id is not None:
        feed[0] = bos_id
    logits = np.concatenate([model.decode(Batch.of(feed[i:i + model.n_batch], pos0=i, logits="all")).copy()
                             for i in range(0, len(feed), model.n_batch)])
    if logits.ndim != 2 or logits.shape[0] != len(feed):
        raise PerplexityError(f"model returned logits of shape {logits.shape} for {len(feed)} tokens")
    first, last = scored_range(len(feed))
    return logits[first:last]


# --- the base log-prob file ----------------------------------------------------------------------
def quantize_logprobs(logits: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Rows of logits -> (scale, min_logprob, uint16 q) per row; see the module docstring."""
    max_l = logits.max(axis=1).astype(np.float64)
    min_l = np.maximum(logits.min(axis=1).astype(np.float64), max_l - LOGPROB_RANGE)
    log_z = log_normalizers(logits)
    scale = ((max_l - min_l) / 65535.0).astype(np.float32)
    min_lp = (min_l - log_z).astype(np.float32)
    inv = np.divide(1.0, scale, out=np.zeros_like(scale), where=scale > 0).astype(np.float64)
    q = np.rint((logits - min_l[:, None]) * inv[:, None])
    q = np.clip(q, 0, 65535).astype(np.uint16)
    return scale, min_lp, q


def dequantize_logprobs(scale: np.ndarray, min_lp: np.ndarray, q: np.ndarray) -> np.ndarray:
    return min_lp[:, None].astype(np.float32) + scale[:, None].astype(np.float32) * q.astype(np.float32)


def _record_dtype(n_vocab: int) -> np.dtype:
    return np.dtype([("scale", "<f4"), ("min_lp", "<f4"), ("q", "<u2", (n_vocab,))])


class BaseLogprobWriter:
    def __init__(self, path: str | Path, n_ctx: int, n_vocab: int, tokens: np.ndarray, n_chunk: int):
        self.n_vocab = n_vocab
        self._file: BinaryIO = open(path, "wb")
        self._file.write(MAGIC)
        self._file.write(_HEADER.pack(n_ctx, n_vocab, n_chunk))
        self._file.write(np.asarray(tokens[: n_chunk * n_ctx], dtype="<i4").tobytes())

    def write_chunk(self, logits: np.ndarray) -> None:
        scale, min_lp, q = quantize_logprobs(logits)
        rec = np.empty(logits.shape[0], dtype=_record_dtype(self.n_vocab))
        rec["scale"], rec["min_lp"], rec["q"] = scale, min_lp, q
        self._file.write(rec.tobytes())

    def close(self) -> None:
        self._file.close()


class BaseLogprobReader:
    def __init__(self, path: str | Path):
        self.path = Path(path)
        try:
            data = np.memmap(self.path, dtype=np.uint8, mode="r")
        except (OSError, ValueError) as e:
            raise PerplexityError(f"{self.path}: cannot read the base log-prob file ({e})") from None
        head = len(MAGIC) + _HEADER.size
        if data.shape[0] < head or bytes(data[: len(MAGIC)]) != MAGIC:
            raise PerplexityError(f"{self.path}: not a pygguf KL-divergence base file (bad magic)")
        self.n_ctx, self.n_vocab, self.n_chunk = _HEADER.unpack(bytes(data[len(MAGIC):head]))
        if self.n_ctx < 4 or self.n_vocab < 1:
            raise PerplexityError(f"{self.path}: corrupt header (n_ctx={self.n_ctx}, n_vocab={self.n_vocab})")
        first, last = scored_range(self.n_ctx)
        self.rows_per_chunk = last - first
        self._rec = _record_dtype(self.n_vocab)
        tok_bytes = 4 * self.n_ctx * self.n_chunk
        need = head + tok_bytes + self._rec.itemsize * self.rows_per_chunk * self.n_chunk
        if data.shape[0] != need:
            raise PerplexityError(f"{self.path}: size {data.shape[0]} bytes, expected {need} for "
                                  f"{self.n_chunk} chunks of {self.n_ctx} tokens over {self.n_vocab} tokens")
        self.tokens = np.frombuffer(data, dtype="<i4", count=self.n_ctx * self.n_chunk, offset=head)
        self._records = np.frombuffer(data, dtype=self._rec, offset=head + tok_bytes)

    def chunk_tokens(self, i: int) -> np.ndarray:
        return self.tokens[i * self.n_ctx:(i + 1) * self.n_ctx]

    def chunk_logprobs(self, i: int) -> np.ndarray:
        rec = self._records[i * self.rows_per_chunk:(i + 1) * self.rows_per_chunk]
        return dequantize_logprobs(rec["scale"], rec["min_lp"], rec["q"])


# --- KL divergence ------------------------------------------------------------------------------
@dataclass
class KldAccumulator:
    nll: PplAccumulator = field(default_factory=PplAccumulator)
    nll_base: PplAccumulator = field(default_factory=PplAccumulator)
    nll_cross: float = 0.0
    kld: float = 0.0
    kld2: float = 0.0
    p_diff2: float = 0.0
    p_diff4: float = 0.0
    same_top: int = 0
    count: int = 0
    kld_values: list = field(default_factory=list)

    def add(self, logits: np.ndarray, base_logprobs: np.ndarray, targets: np.ndarray) -> None:
        rows = np.arange(logits.shape[0])
        log_z = log_normalizers(logits)
        logprobs = logits.astype(np.float64) - log_z[:, None]
        nll = -logprobs[rows, targets]
        nll_base = -base_logprobs[rows, targets].astype(np.float64)
        base = base_logprobs.astype(np.float64)
        live = base > -LOGPROB_RANGE   # entries at the quantization floor carry no information
        kld = np.where(live, np.exp(base) * (base - logprobs), 0.0).sum(axis=1)
        p_diff = np.exp(-nll) - np.exp(-nll_base)
        self.nll.add(nll)
        self.nll_base.add(nll_base)
        self.nll_cross += float((nll * nll_base).sum())
        self.kld += float(kld.sum())
        self.kld2 += float((kld * kld).sum())
        self.p_diff2 += float((p_diff ** 2).sum())
        self.p_diff4 += float((p_diff ** 4).sum())
        self.same_top += int((logits.argmax(axis=1) == base_logprobs.argmax(axis=1)).sum())
        self.count += int(logits.shape[0])
        self.kld_values.extend(kld.tolist())

    def ppl(self) -> tuple[float, float]:
        return self.nll.estimate()

    def ppl_base(self) -> tuple[float, float]:
        return self.nll_base.estimate()

    def log_ppl_ratio(self) -> tuple[float, float]:
        a, da = mean_and_uncertainty(self.nll.nll, self.nll.nll2, self.count)
        b, db = mean_and_uncertainty(self.nll_base.nll, self.nll_base.nll2, self.count)
        return a - b, math.sqrt(max(da * da + db * db - 2.0 * self._covariance(), 0.0))

    def _covariance(self) -> float:
        n = self.count
        if n < 10:
            return 0.0
        return (self.nll_cross / n - (self.nll.nll / n) * (self.nll_base.nll / n)) / (n - 1)

    def correlation(self) -> float:
        _, da = mean_and_uncertainty(self.nll.nll, self.nll.nll2, self.count)
        _, db = mean_and_uncertainty(self.nll_base.nll, self.nll_base.nll2, self.count)
        return self._covariance() / (da * db) if da > 0 and db > 0 else 0.0

    def mean_kld(self) -> tuple[float, float]:
        return mean_and_uncertainty(self.kld, self.kld2, self.count)

    def same_top_fraction(self) -> tuple[float, float]:
        f = self.same_top / self.count
        return f, (math.sqrt(f * (1 - f) / (self.count - 1)) if self.count > 1 else 0.0)

    def rms_p_diff(self) -> tuple[float, float]:
        mse, dmse = mean_and_uncertainty(self.p_diff2, self.p_diff4, self.count)
        rms = math.sqrt(mse)
        return rms, (0.5 / rms * dmse if rms > 0 else 0.0)


# --- the runs -----------------------------------------------------------------------------------
@dataclass
class PplResult:
    ppl: float
    uncertainty: float
    n_chunk: int
    count: int
    chunk_estimates: list[float]


def perplexity(model, tokens, n_ctx: int, max_chunks: int = -1, bos_id: int | None = None,
               base_file: str | Path | None = None,
               on_chunk: Callable[[int, int, float], None] | None = None) -> PplResult:
    """Run llama-perplexity's method; optionally save the base log-probs for a later KL run.

    `bos_id` replaces each chunk's first token (pass it when the tokenizer adds BOS).
    `on_chunk(i, n_chunk, running_ppl)` is called after every chunk (1-based i)."""
    tokens = np.asarray(tokens, dtype=np.int64)
    n_chunk = count_chunks(tokens.shape[0], n_ctx, max_chunks)
    acc = PplAccumulator()
    estimates = []
    writer = None
    try:
        for i in range(n_chunk):
            chunk = tokens[i * n_ctx:(i + 1) * n_ctx]
            logits = chunk_logits(model, chunk, bos_id)
            if writer is None and base_file is not None:
                writer = BaseLogprobWriter(base_file, n_ctx, logits.shape[1], tokens, n_chunk)
            if writer is not None:
                writer.write_chunk(logits)
            first, last = scored_range(n_ctx)
            acc.add(token_nll(logits, chunk[first + 1:last + 1]))
            estimates.append(acc.ppl)
            if on_chunk:
                on_chunk(i + 1, n_chunk, acc.ppl)
    finally:
        if writer is not None:
            writer.close()
    ppl, err = acc.estimate()
    return PplResult(ppl, err, n_chunk, acc.count, estimates)


def kl_divergence(model, base: BaseLogprobReader, max_chunks: int = -1, bos_id: int | None = None,
                  on_chunk: Callable[[int, int, KldAccumulator], None] | None = None) -> KldAccumulator:
    """Evaluate the base file's chunks with `model` and compare against the stored log-probs."""
    n_chunk = base.n_chunk if max_chunks < 0 else min(max_chunks, base.n_chunk)
    acc = KldAccumulator()
    first, last = scored_range(base.n_ctx)
    for i in range(n_chunk):
        chunk = base.chunk_tokens(i).astype(np.int64)
        logits = chunk_logits(model, chunk, bos_id)
        if logits.shape[1] != base.n_vocab:
            raise PerplexityError(f"vocabulary mismatch: the model has {logits.shape[1]} tokens, "
                                  f"the base file {base.n_vocab}")
        acc.add(logits, base.chunk_logprobs(i), chunk[first + 1:last + 1])
        if on_chunk:
            on_chunk(i + 1, n_chunk, acc)
    return acc


def kld_report(acc: KldAccumulator) -> list[str]:
    """The closing statistics block, in llama-perplexity's wording."""
    ppl, dppl = acc.ppl()
    ppl_b, dppl_b = acc.ppl_base()
    ratio, dratio = acc.log_ppl_ratio()
    kld, dkld = acc.mean_kld()
    rms, drms = acc.rms_p_diff()
    top, dtop = acc.same_top_fraction()
    values = np.sort(np.asarray(acc.kld_values))

    def pct(q: float) -> float:
        return float(values[min(int(q * (values.shape[0] - 1) + 0.5), values.shape[0] - 1)])

    return [
        "====== Perplexity statistics ======",
        f"Mean PPL(Q)                   : {ppl:10.6f} ± {dppl:10.6f}",
        f"Mean PPL(base)                : {ppl_b:10.6f} ± {dppl_b:10.6f}",
        f"Cor(ln(PPL(Q)), ln(PPL(base))): {100.0 * acc.correlation():6.2f}%",
        f"Mean ln(PPL(Q)/PPL(base))     : {ratio:10.6f} ± {dratio:10.6f}",
        f"Mean PPL(Q)/PPL(base)         : {math.exp(ratio):10.6f} ± {math.exp(ratio) * dratio:10.6f}",
        "",
        "====== KL divergence statistics ======",
        f"Mean    KLD: {kld:10.6f} ± {dkld:10.6f}",
        f"Maximum KLD: {values[-1]:10.6f}",
        f"99.9%   KLD: {pct(0.999):10.6f}",
        f"99.0%   KLD: {pct(0.99):10.6f}",
        f"Median  KLD: {pct(0.5):10.6f}",
        f"1.0%    KLD: {pct(0.01):10.6f}",
        f"Minimum KLD: {values[0]:10.6f}",
        "",
        "====== Token probability statistics ======",
        f"RMS Δp    : {100.0 * rms:6.3f} ± {100.0 * drms:5.3f} %",
        f"Same top p: {100.0 * top:6.3f} ± {100.0 * dtop:5.3f} %",
    ]
