"""The C merge loop (csrc/tokenizer/bpe.c) gives the same tokens as the Python merges on varied
text; the C builder of SentencePiece's pair table (csrc/tokenizer/spm_table.c) gives the same
table as the plain Python construction below."""
from __future__ import annotations

import random
import sysconfig
from pathlib import Path

import pytest

from tokenizer_vectors import load_metadata, vocab_path
from pygguf_cli import paths
from pygguf.tokenizer import Tokenizer
from pygguf.tokenizer.native import HAVE_NATIVE, NativeMerger
from pygguf.tokenizer.vocab import build_vocab

if HAVE_NATIVE:
    from pygguf.tokenizer.native import ffi, lib

pytestmark = pytest.mark.skipif(not HAVE_NATIVE, reason="C extension not built (make build)")


def sample_text() -> str:
    parts = []
    for path in sorted(Path(sysconfig.get_paths()["stdlib"]).glob("*.py"))[:6]:
        parts.append(path.read_text(encoding="utf-8", errors="replace")[:6000])
    gpl = Path("/usr/share/common-licenses/GPL-3")
    if gpl.exists():
        parts.append(gpl.read_text(encoding="utf-8")[:8000])
    rng = random.Random(7)
    alphabet = "aé日🦙 \t\n'.,1٣ΩЖ\u00a0" + "xyz" * 3
    parts.append("".join(rng.choice(alphabet) for _ in range(4000)))
    parts.append("aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa " + "=" * 300 + " " * 200 + "x")
    return "\n".join(parts)


def metadata_for(name: str) -> dict:
    if name == "smollm2":
        path = paths.default_model_path()
    elif name == "gemma3":
        path = paths.gemma3_model_path()
        if not path.exists():
            pytest.skip(f"{path} not found (run `{paths.FETCH_GEMMA3_COMMAND}`)")
    else:
        path = vocab_path(name)
    if not path.exists():
        pytest.skip(f"{path} not found")
    return load_metadata(path)


@pytest.mark.parametrize("name", ["smollm2", "llama-spm", "gpt-2", "deepseek-coder", "gemma3"])
def test_native_equals_python(name):
    vocab = build_vocab(metadata_for(name))
    fast, slow = Tokenizer(vocab), Tokenizer(vocab, use_native=False)
    text = sample_text()
    assert fast.encode(text) == slow.encode(text)


def test_merge_table_rules():
    # pairs: (1,2)->10 prio 5, (10,3)->11 prio 1, (2,3)->12 prio 2 ; ties go left
    merger = NativeMerger([1, 10, 2], [2, 3, 3], [5, 1, 2], [10, 11, 12])
    assert merger.merge([1, 2, 3]) == ([1, 12], [0, 1])       # (2,3) beats (1,2)
    assert merger.merge([1, 2, 4, 3]) == ([10, 4, 3], [0, 2, 3])
    assert merger.merge([]) == ([], [])
    assert merger.merge([-1, 2, 3]) == ([-1, 12], [0, 1])      # -1 never merges
    same = NativeMerger([1], [1], [0], [2])
    assert same.merge([1, 1, 1]) == ([2, 1], [0, 2])             # leftmost first


@pytest.mark.parametrize("name", ["smollm2", "llama-spm"])
def test_shared_heap_merge_equals_the_plain_rescan(name):
    """pygguf.tokenizer.merge serves both families; on long inputs it must merge exactly as the
    simple leftmost-best rescan does."""
    from pygguf.tokenizer import bpe, spm
    vocab = build_vocab(metadata_for(name))
    rng = random.Random(7)
    words = [w for w in sample_text().split() if len(w) > 3]
    for _ in range(40):
        text = "".join(rng.choice(words) for _ in range(12))       # 40+ symbols: the heap path
        if name == "smollm2":
            symbols = [bpe.BYTE_TO_UNICODE[b] for b in text.encode("utf-8")]
            assert bpe._merge_heap(symbols, vocab.merge_ranks) == bpe._merge_short(list(symbols), vocab.merge_ranks)
        else:
            tok = spm.SPMTokenizer(vocab, use_native=False)
            chunk = text.replace(" ", "\u2581")
            assert tok._merge_heap(chunk) == tok._merge_short(list(chunk))


# --- SentencePiece's pair table: C (spm_table.c) against the plain Python construction --------

def python_spm_table(texts, scores):
    """The reference: every token split at each character into a left and a right part that are
    symbols (a token, or a single character), ranked by the token's score (highest first, equal
    scores sharing a rank). Characters that are no token get symbols past the vocab, in the order
    first met. -> (rows (left, right, rank, token), {single character: symbol})."""
    text_to_id = {}
    for i, t in enumerate(texts):
        text_to_id.setdefault(t, i)
    rank = {v: r for r, v in enumerate(sorted(set(scores), reverse=True))}
    extra: dict[str, int] = {}

    def symbol(part):
        if part in text_to_id:
            return text_to_id[part]
        return extra.setdefault(part, len(texts) + len(extra))

    rows = []
    for token_id, text in enumerate(texts):
        for k in range(1, len(text)):
            left, right = text[:k], text[k:]
            if (k == 1 or left in text_to_id) and (len(right) == 1 or right in text_to_id):
                rows.append((symbol(left), symbol(right), rank[scores[token_id]], token_id))
    chars = {t: i for i, t in enumerate(texts) if len(t) == 1}
    chars.update(extra)
    return rows, chars


def merges_agree(texts, scores, words):
    rows, chars = python_spm_table(texts, scores)
    reference = NativeMerger(*(zip(*rows) if rows else ([], [], [], [])))
    merger, c_chars = NativeMerger.sentencepiece(texts, scores)
    assert c_chars == chars
    for word in words:
        symbols = [chars.get(c, -1) for c in word]
        assert merger.merge(symbols) == reference.merge(symbols), word


SMALL_VOCAB = ["<unk>", "a", "b", "ab", "abc", "bc", "▁", "▁a", "▁ab",
               "é", "éa", "日本", "本語", "日本語", "🦙x", "x🦙", "q🦙q", "zz", "aa", "aaa"]


def test_spm_table_matches_python_on_a_small_vocab():
    # c, 日, 本, 語, 🦙, x, z are halves of tokens but no tokens: symbols past the vocab, in the
    # order met; q is not (q🦙q has no split into two symbols). Equal scores share a rank.
    scores = [0.0, -1, -1, -2, -3, -2.5, -1, -2, -3, -1, -4, -5, -5, -6, -7, -7, -8, -9, -2, -3]
    words = ["abc", "▁ab▁abc", "éaé", "日本語日本", "🦙x🦙q🦙q", "zzz", "aaaaaaa", "x🦙x", "", "a"]
    merges_agree(SMALL_VOCAB, scores, words)
    _, chars = NativeMerger.sentencepiece(SMALL_VOCAB, scores)
    n = len(SMALL_VOCAB)
    assert [c for c, s in sorted(chars.items(), key=lambda kv: kv[1]) if s >= n] == list("c日本語🦙xz")
    assert sorted(s for s in chars.values() if s >= n) == list(range(n, n + 7))


@pytest.mark.parametrize("name", ["llama-spm", "gemma3"])
def test_spm_table_matches_python_on_real_vocabularies(name):
    metadata = metadata_for(name)
    vocab = build_vocab(metadata)
    rng = random.Random(3)
    words = [w.replace(" ", "▁") for w in sample_text().split("\n") if w][:300]
    words += ["".join(rng.choice(vocab.texts[:5000]) for _ in range(8)) for _ in range(100)]
    merges_agree(vocab.texts, vocab.scores, words)


def test_spm_table_refuses_malformed_input():
    import numpy as np
    blob = "aé".encode()
    extra = np.empty(4, dtype=np.uint32)
    n_extra = ffi.new("int64_t *")

    def build(data, n_chars, max_extra=4):
        n_chars = np.asarray(n_chars, dtype=np.int32)
        priority = np.zeros(len(n_chars), dtype=np.int32)
        return lib.pg_spm_table_new(len(n_chars), ffi.from_buffer(data), len(data),
                                    ffi.cast("int32_t *", n_chars.ctypes.data), ffi.cast("int32_t *", priority.ctypes.data),
                                    ffi.cast("uint32_t *", extra.ctypes.data), max_extra, n_extra)

    def builds(data, n_chars, max_extra=4):
        table = build(data, n_chars, max_extra)
        lib.pg_merge_table_free(table)
        return table != ffi.NULL

    assert builds(blob, [1, 1])
    assert build(blob, [1, 2]) == ffi.NULL                 # more characters than bytes
    assert build(blob, [1]) == ffi.NULL                    # bytes left over
    assert build(blob, [-1, 3]) == ffi.NULL
    assert build(b"a\xc3", [1, 1]) == ffi.NULL             # a truncated character
    assert build(b"a\xff", [1, 1]) == ffi.NULL             # not UTF-8
    assert builds(b"xy", [2])                              # "xy" = x + y: two extra symbols
    assert not builds(b"xy", [2], max_extra=1)             # no room for the second
