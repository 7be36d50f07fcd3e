"""decode(encode(text)) == text where llama.cpp round-trips: SentencePiece (llama-spm) and the
byte-level BPE vocabularies without space clean-up (qwen2-style, deepseek-coder)."""
from __future__ import annotations

import pytest

from tokenizer_vectors import load_metadata, vocab_path
from pygguf.tokenizer import Tokenizer

TEXTS = [
    "Hello world", " leading space", "trailing space ", "emoji 🦙🦙 👨‍👩‍👧‍👦 🇫🇷 ✅",
    "CJK 日本語 中文 한국어", "mixed \t whitespace \n\n\r\n  \u00a0 \u3000 end",
    "def f(x):\n    if x:\n        return [x, {'a': 1}]\n\treturn None\n",
    "Ελληνικά русский Äpfel naïve café", "\n\nstarts with newlines", "   ", "",
]


def load(name: str) -> Tokenizer:
    path = vocab_path(name)
    if not path.exists():
        pytest.skip(f"{path} not found (run `make vocab`)")
    return Tokenizer.from_metadata(load_metadata(path))


@pytest.mark.parametrize("name", ["llama-spm", "deepseek-coder"])
def test_round_trip(name):
    tok = load(name)
    for text in TEXTS:
        ids = tok.encode(text, add_special=False, parse_special=False)
        assert tok.decode(ids) == text, repr(text)
        # the stream gives raw pieces (no SentencePiece leading-space strip, like llama.cpp's
        # per-token output), so compare with the plain concatenation of token bytes
        stream = tok.stream_decoder()
        raw = b"".join(tok.token_to_bytes(i) for i in ids).decode()
        assert "".join(stream.push(i) for i in ids) + stream.flush() == raw


def test_spm_byte_tokens_stream_whole_characters():
    tok = load("llama-spm")
    ids = tok.encode("🦙", add_special=False)
    byte_ids = [i for i in ids if tok.token_text(i).startswith("<0x")]
    assert len(byte_ids) == 4                      # the llama emoji is not in the vocab
    stream = tok.stream_decoder()
    outs = [stream.push(i) for i in ids]
    assert ids[-4:] == byte_ids and outs[-4:] == ["", "", "", "🦙"]
    assert stream.flush() == ""
