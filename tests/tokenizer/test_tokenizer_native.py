"""The C merge loop (csrc/bpe.c) gives the same tokens as the Python merges on varied text."""
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
    else:
        path = vocab_path(name)
    if not path.exists():
        pytest.skip(f"{path} not found")
    return load_metadata(path)


@pytest.mark.parametrize("name", ["smollm2", "llama-spm", "gpt-2", "deepseek-coder"])
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
