"""The stateless samplers of llama.cpp's chain (src/llama-sampling.cpp), one pure function each.

Each takes a Candidates and its parameters and returns a Candidates; none writes to its input.
Formulas, thresholds and edge cases follow llama.cpp; where numpy lets us skip work llama.cpp
does (a full sort), the kept set is the same.
"""
from __future__ import annotations

import math

import numpy as np

from pygguf.errors import SamplerError
from pygguf.sampling.candidates import Candidates, exp_f32, softmax, softmax_probs, sort_candidates, top_positions


def logit_bias(cand: Candidates, biases: dict[int, float]) -> Candidates:
    """logit += bias for every listed token (-inf bans it). Expects the full, id-ordered vocab."""
    if not biases:
        return cand
    ids = np.fromiter(biases.keys(), dtype=np.int64, count=len(biases))
    values = np.fromiter(biases.values(), dtype=np.float32, count=len(biases))
    if not cand.identity:
        present = np.isin(ids, cand.ids)
        ids, values = ids[present], values[present]
    logits = cand.logits.copy()
    np.add.at(logits, _positions_of(cand, ids), values)
    return cand.with_logits(logits, False)


def _positions_of(cand: Candidates, ids: np.ndarray) -> np.ndarray:
    """Where each id (known to be present) sits in cand."""
    if cand.identity:
        return ids
    order = np.argsort(cand.ids)
    return order[np.searchsorted(cand.ids[order], ids)]


def penalties(cand: Candidates, counts: dict[int, int], repeat: float, freq: float,
              present: float) -> Candidates:
    """Repeat penalty (divide positive logits, multiply the rest), then frequency and presence.

    `counts` maps each token seen in the last repeat_last_n accepted tokens to its count.
    """
    if not counts or (repeat == 1.0 and freq == 0.0 and present == 0.0):
        return cand
    seen = np.fromiter(counts.keys(), dtype=np.int64, count=len(counts))
    count = np.fromiter(counts.values(), dtype=np.float32, count=len(counts))
    if cand.identity:
        pos, c = seen, count
    else:
        hit = np.isin(cand.ids, seen)
        if not hit.any():
            return cand
        pos = np.flatnonzero(hit)
        order = np.argsort(seen)
        c = count[order][np.searchsorted(seen[order], cand.ids[pos])]
    logits = cand.logits.copy()
    x = logits[pos]
    x = np.where(x <= 0, x * np.float32(repeat), x / np.float32(repeat))
    x = x - (c * np.float32(freq) + np.float32(present))
    logits[pos] = x
    return cand.with_logits(logits, False)


def top_k(cand: Candidates, k: int) -> Candidates:
    """Keep the k highest logits, sorted descending. k <= 0 disables."""
    if k <= 0:
        return cand
    k = min(k, len(cand))
    if cand.sorted:
        return cand.take(slice(0, k), sorted=True)
    return cand.take(top_positions(cand.logits, k), sorted=True)


def top_p(cand: Candidates, p: float, min_keep: int = 0) -> Candidates:
    """Shortest descending prefix whose cumulative probability is >= p (and >= min_keep long)."""
    if p >= 1.0:
        return cand
    probs = softmax_probs(cand.logits, cand.sorted)
    n = len(cand)
    if cand.sorted:
        last = _prefix_reaching(probs, p, min_keep)
        last = n if last is None else last
        return Candidates(cand.ids[:last], cand.logits[:last], True, probs[:last])
    # llama.cpp sorts the top 256 first and everything if they do not reach p; growing the sorted
    # prefix 4x at a time finds the same prefix without sorting the whole vocabulary
    k = min(256, n) if n > 1024 else n
    while True:
        order = top_positions(cand.logits, k)
        last = _prefix_reaching(probs[order], p, min_keep)
        if last is not None or k == n:
            break
        k = min(4 * k, n)
    index = order[:n if last is None else last]
    return Candidates(cand.ids[index], cand.logits[index], True, probs[index])


def _prefix_reaching(sorted_probs: np.ndarray, p: float, min_keep: int) -> int | None:
    """Length of the shortest prefix with cumulative probability >= p and length >= min_keep."""
    cum = np.cumsum(sorted_probs, dtype=np.float32)   # sequential float sum, as llama.cpp
    first = int(np.searchsorted(cum, np.float32(p), side="left"))   # cum is non-decreasing
    last = max(first, min_keep - 1)
    return last + 1 if last < cum.shape[0] else None


def min_p(cand: Candidates, p: float, min_keep: int = 0) -> Candidates:
    """Keep tokens with logit >= max_logit + ln(p), i.e. prob >= p * max prob."""
    if p <= 0.0 or len(cand) == 0:
        return cand
    max_l = cand.logits[0] if cand.sorted else cand.logits.max()
    threshold = np.float32(max_l + np.float32(math.log(p)))
    keep = cand.logits >= threshold
    n_keep = int(np.count_nonzero(keep))
    if n_keep >= max(min_keep, 1):
        if n_keep == len(cand):
            return cand
        if cand.sorted:   # the kept tokens are a prefix
            return cand.take(slice(0, n_keep), sorted=True)
        return cand.take(np.flatnonzero(keep), sorted=False)
    # too few: sorted fallback keeps the first min_keep (the first token always matches)
    cand = sort_candidates(cand)
    below = np.flatnonzero(cand.logits < threshold)
    below = below[(below >= 1) & (below >= min_keep)]
    end = int(below[0]) if below.size else len(cand)
    return cand.take(slice(0, end), sorted=True)


def typical(cand: Candidates, p: float, min_keep: int = 0) -> Candidates:
    """Locally typical sampling: keep tokens whose surprise is closest to the entropy."""
    if p >= 1.0:
        return cand
    cand = softmax(cand, sort=True)
    probs = cand.probs
    live = probs > 0   # guard: llama.cpp would turn 0*log(0) into NaN here
    logp = np.full(probs.shape, -np.inf, dtype=np.float32)
    logp[live] = np.log(probs[live])
    entropy = np.float32(-(probs[live] * logp[live]).sum(dtype=np.float32))
    scores = np.abs(-logp - entropy)
    order = np.argsort(scores, kind="stable")
    cum = np.cumsum(probs[order], dtype=np.float32)
    i = np.arange(order.shape[0])
    ok = (cum > np.float32(p)) & ((min_keep == 0) | (i >= min_keep - 1))
    hits = np.flatnonzero(ok)
    last = int(hits[0]) + 1 if hits.size else order.shape[0]
    return cand.take(order[:last], sorted=False)


def top_n_sigma(cand: Candidates, n: float) -> Candidates:
    """Mask logits below max - n*sigma (mean and sigma over the finite logits) to -inf, sort."""
    if n <= 0.0 or len(cand) <= 1:
        return cand
    logits = cand.logits
    finite = logits != -np.inf
    values = logits[finite].astype(np.float64)
    if values.size == 0:
        return cand
    mean = values.mean()
    std = math.sqrt(((values - mean) ** 2).mean())
    cut = np.float32(values.max() - n * std)
    masked = np.where(logits < cut, np.float32(-np.inf), logits).astype(np.float32)
    # llama.cpp sorts the whole array; -inf entries stay (probability 0) after the live ones
    live = np.flatnonzero(masked != -np.inf)
    dead = np.flatnonzero(masked == -np.inf)
    order = np.concatenate([live[np.argsort(-masked[live], kind="stable")], dead])
    return Candidates(cand.ids[order], masked[order], True)


def xtc(cand: Candidates, probability: float, threshold: float, min_keep: int, rng) -> Candidates:
    """Exclude Top Choices: with chance `probability`, drop every token above the least likely
    one whose probability is >= threshold. Draws from rng on every call, as llama.cpp does."""
    if probability <= 0.0 or threshold > 0.5 or len(cand) < 2:
        return cand
    if rng.uniform_float() > probability:
        return cand
    cand = softmax(cand, sort=True)
    above = cand.probs >= np.float32(threshold)
    # index of the last token of the leading run with p >= threshold (0 when none)
    run = int(np.argmin(above)) if not above.all() else len(cand)
    pos_last = max(run - 1, 0)
    if len(cand) - pos_last >= min_keep and pos_last > 0:
        return cand.take(slice(pos_last, None), sorted=True)
    return cand


def temperature(cand: Candidates, temp: float) -> Candidates:
    """logits / temp; temp <= 0 keeps only the first maximum (every other logit -> -inf)."""
    if temp <= 0.0 or np.float32(temp) == 0.0:     # (a temperature below float32's range is 0 there)
        best = int(np.argmax(cand.logits))
        logits = np.full(len(cand), -np.inf, dtype=np.float32)
        logits[best] = cand.logits[best]
        return cand.with_logits(logits, cand.sorted)
    if temp == 1.0:
        return cand
    with np.errstate(over="ignore"):
        scaled = (cand.logits / np.float32(temp)).astype(np.float32)
    if np.isposinf(scaled).any() and np.isfinite(cand.logits).any():
        # a tiny temperature overflowed float32: the same distribution, from logits shifted so the
        # largest is 0 (softmax does not change; nothing can overflow upwards)
        top = cand.logits[np.isfinite(cand.logits)].max()
        with np.errstate(over="ignore"):
            scaled = ((cand.logits - top) / np.float32(temp)).astype(np.float32)
    return cand.with_logits(scaled, cand.sorted)


def temperature_ext(cand: Candidates, temp: float, delta: float, exponent: float) -> Candidates:
    """Dynamic temperature: T = Tmin + (Tmax - Tmin) * (H / ln n)^exponent when delta > 0."""
    if delta <= 0.0:
        return temperature(cand, temp)
    if len(cand) <= 1:
        return cand
    min_temp = max(0.0, temp - delta)
    max_temp = temp + delta
    max_entropy = -math.log(1.0 / len(cand))
    cand = softmax(cand, sort=True)
    p = cand.probs[cand.probs > 0].astype(np.float64)
    entropy = float(-(p * np.log(p)).sum())
    dyn_temp = min_temp + (max_temp - min_temp) * (entropy / max_entropy) ** exponent
    return temperature(cand, dyn_temp)   # (llama.cpp recomputes probs here; dist does its own)


def check_best_logit(max_l) -> None:
    if not np.isfinite(max_l):
        raise SamplerError(f"cannot sample: the best remaining logit is {max_l} (every token banned?)")


def dist(cand: Candidates, rng) -> int:
    """Draw a position from softmax(logits): float32 probabilities, double running sum,
    first position whose running sum reaches sum*u (u uniform in [0, 1))."""
    n = len(cand)
    if n == 0:
        raise SamplerError("no candidates left to sample from")
    max_l = cand.logits[0] if cand.sorted or n == 1 else cand.logits.max()
    check_best_logit(max_l)
    if n == 1:
        return 0
    e = exp_f32(cand.logits - max_l)
    running = np.cumsum(e, dtype=np.float64)
    target = running[-1] * rng.uniform()
    pos = int(np.searchsorted(running, target, side="left"))
    return min(pos, n - 1)


def mirostat_v1(cand: Candidates, tau: float, eta: float, m: int, mu: float, n_vocab: int,
                rng) -> tuple[int, Candidates, float]:
    """Mirostat 1: estimate the Zipf exponent from the top m probabilities, derive k, top-k,
    draw, then move mu toward the target surprise tau. Returns (position, candidates, new mu)."""
    check_best_logit(cand.logits.max())             # every token banned: no Zipf estimate to make
    all_probs = softmax_probs(cand.logits)
    upto = min(m - 1, len(cand) - 1)
    head = top_positions(cand.logits, upto + 1)
    probs = all_probs[head].astype(np.float64)
    i = np.arange(upto, dtype=np.float64)
    t = np.log((i + 2) / (i + 1))
    b = np.log(probs[:upto] / probs[1:upto + 1])
    if upto == 0:
        k = 1.0   # a single candidate: nothing to estimate
    else:
        s_hat = float((t * b).sum() / (t * t).sum())
        eps = s_hat - 1.0
        with np.errstate(all="ignore"):
            k = float(np.float64(eps * 2.0 ** mu) / (1.0 - np.float64(n_vocab) ** (-eps))) ** (1.0 / s_hat)
    k_int = int(min(k, len(cand))) if math.isfinite(k) else len(cand)
    cand = top_k(cand, max(k_int, 1))
    cand = softmax(cand, sort=True)
    pos = rng.discrete(cand.probs)
    surprise = -math.log2(float(cand.probs[pos]))
    return pos, cand, mu - eta * (surprise - tau)


def mirostat_v2(cand: Candidates, tau: float, eta: float, mu: float,
                rng) -> tuple[int, Candidates, float]:
    """Mirostat 2: drop tokens whose surprise -log2 p exceeds mu (keep at least one), draw,
    update mu. Returns (position, candidates, new mu)."""
    check_best_logit(cand.logits.max())
    probs = softmax_probs(cand.logits)
    with np.errstate(divide="ignore"):
        surprise = -np.log2(probs)
    # the sorted prefix llama.cpp keeps is exactly the set with surprise <= mu (surprise grows
    # as p falls), so select it first and sort only what is kept
    keep = np.flatnonzero(~(surprise > np.float32(mu)))
    if keep.size == 0:
        keep = top_positions(cand.logits, 1)
    cand = cand.take(keep, sorted=False)
    cand = softmax(cand, sort=True)
    pos = rng.discrete(cand.probs)
    observed = -math.log2(float(cand.probs[pos]))
    return pos, cand, mu - eta * (observed - tau)
