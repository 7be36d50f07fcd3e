"""Gemma 3's SentencePiece vocabulary (262,144 tokens, no space prefix, byte fallback, thousands of
control / user-defined tokens) against llama.cpp: tests/data/gemma3/tokenizer.json holds the ids
and texts llama.cpp's tokenizer gave (recorded by bench/record_gemma3.py through llama-cpp-python
0.3.36), and what llama.cpp derives for every token (attributes, pieces, end-of-generation set)."""
from __future__ import annotations

import hashlib
import json
import struct
import tracemalloc

import numpy as np
import pytest

from pygguf.gguf import GGUFReader
from pygguf.tokenizer import Tokenizer
from pygguf_cli import paths
from testpaths import TESTS

DATA = TESTS / "data" / "gemma3" / "tokenizer.json"


@pytest.fixture(scope="module")
def metadata():
    path = paths.gemma3_model_path()
    if not path.exists():
        pytest.skip(f"{path} is absent: run `{paths.FETCH_GEMMA3_COMMAND}`")
    with GGUFReader(path) as reader:
        return dict(reader.metadata)


@pytest.fixture(scope="module")
def tok(metadata):
    return Tokenizer.from_metadata(metadata)


@pytest.fixture(scope="module")
def ref():
    return json.loads(DATA.read_text(encoding="utf-8"))


def test_vocabulary_facts_match_llama_cpp(tok, ref):
    v = ref["vocab"]
    assert tok.n_vocab == v["n_tokens"] == 262144
    assert (tok.bos_id, tok.eos_id, tok.eot_id, tok.pad_id) == tuple(v["special_ids"][k] for k in ("bos", "eos", "eot", "pad"))
    assert (tok.add_bos, tok.add_eos) == (v["add_bos"], v["add_eos"])
    assert not tok.vocab.add_space_prefix
    assert sorted(tok.eog_ids) == v["eog_ids"]            # <eos>, <end_of_turn>, </s>
    attrs = np.asarray(tok.vocab.attrs, dtype="<i4")
    values, counts = np.unique(attrs, return_counts=True)
    assert {str(int(a)): int(c) for a, c in zip(values, counts)} == v["attr_counts"]
    CONTROL, USER_DEFINED, UNUSED = 8, 16, 2
    marked = {str(i): int(attrs[i]) for i in np.flatnonzero(((attrs & (CONTROL | USER_DEFINED)) != 0) & ((attrs & UNUSED) == 0))}
    assert marked == v["control_or_user_defined_not_unused"]
    assert hashlib.sha256(attrs.tobytes()).hexdigest() == v["attrs_sha256"]


@pytest.mark.parametrize("special", [False, True])
def test_every_piece_matches_llama_cpp(tok, ref, special):
    h = hashlib.sha256()
    for i in range(tok.n_vocab):
        piece = tok.token_to_bytes(i, special=special)
        h.update(struct.pack("<I", len(piece)) + piece)
    assert h.hexdigest() == ref["vocab"]["pieces_sha256"]["special" if special else "plain"]


def expected_ids(case, bos):
    """The four add_special x parse_special combinations (the file stores only the telling ones)."""
    return {
        (False, False): case["ids"],
        (True, True): case["ids_bos_parse_special"],
        (True, False): case.get("ids_bos", [bos] + case["ids"]),
        (False, True): case.get("ids_parse_special", case["ids_bos_parse_special"][1:]),
    }


def test_ids_match_llama_cpp(tok, ref):
    failures = []
    for case in ref["cases"]:
        for (add_special, parse_special), want in expected_ids(case, ref["bos"]).items():
            got = tok.encode(case["text"], add_special=add_special, parse_special=parse_special)
            if got != want:
                failures.append(f"{case['name']} add_special={add_special} parse_special={parse_special}: "
                                f"{got} != llama.cpp {want}")
    assert not failures, "\n".join(failures)


def test_texts_cover_what_they_claim(ref):
    names = {c["name"] for c in ref["cases"]}
    assert {"python", "many_spaces", "emoji", "chinese", "special_chat", "digits", "hello_leading_space"} <= names
    chat = next(c for c in ref["cases"] if c["name"] == "special_chat")
    assert 105 in chat["ids_bos_parse_special"] and 105 not in chat["ids"]   # <start_of_turn> only when parsed


def test_detokenize_matches_llama_cpp(tok, ref):
    for case in ref["cases"]:
        assert tok.decode(case["ids"]) == case["detok"], case["name"]
        assert tok.decode(case["ids_bos_parse_special"], special=True) == case.get("detok_special", case["detok"]), case["name"]


def test_build_keeps_python_memory_small(metadata):
    """The SentencePiece pair table (515k pairs here) is built in C: building the tokenizer
    allocates ~39 MB in Python at its peak (the text -> id dict is 15 MB of it). Built in Python,
    one int object per pair column entry, it peaked at ~69 MB (and took ~1.5 s instead of ~0.3)."""
    tracemalloc.start()
    try:
        tok = Tokenizer.from_metadata(metadata)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert tok._spm is not None and (tok._spm._native is not None or not _have_native())
    assert peak < 50 * 2 ** 20, f"{peak / 2 ** 20:.1f} MB"


def _have_native():
    from pygguf.tokenizer import native
    return native.HAVE_NATIVE
