"""Tokenizer behaviour on small synthetic vocabularies (no downloaded files needed)."""
from __future__ import annotations

import pytest

from pygguf.tokenizer import TokenAttr, Tokenizer, TokenizerError
from pygguf.tokenizer.bpe import BYTE_TO_UNICODE, merge_word

NORMAL, UNKNOWN, CONTROL, USER, BYTE = 1, 2, 3, 4, 6


def spm_metadata(**extra):
    tokens = ["<unk>", "<s>", "</s>", "<ctl>", "<user>"]
    types = [UNKNOWN, CONTROL, CONTROL, CONTROL, USER]
    tokens += [f"<0x{b:02X}>" for b in range(256)]
    types += [BYTE] * 256
    words = {"▁": -1.0, "a": -2.0, "b": -2.0, "▁a": -0.5, "ab": -0.4, "▁ab": -0.1, "▁▁": -3.0,
             "c": -2.0, "bc": -0.2}
    tokens += list(words)
    types += [NORMAL] * len(words)
    scores = [0.0] * (5 + 256) + list(words.values())
    md = {"tokenizer.ggml.model": "llama", "tokenizer.ggml.tokens": tokens,
          "tokenizer.ggml.scores": scores, "tokenizer.ggml.token_type": types,
          "tokenizer.ggml.bos_token_id": 1, "tokenizer.ggml.eos_token_id": 2,
          "tokenizer.ggml.unknown_token_id": 0}
    md.update(extra)
    return md


def bpe_metadata(pre="gpt-2", **extra):
    tokens = list(BYTE_TO_UNICODE)
    merges = ["h e", "l l", "he ll", "hell o", "Ġ w", "Ġw o"]
    tokens += ["he", "ll", "hell", "hello", "Ġw", "Ġwo", "<|endoftext|>", "<|im_end|>"]
    types = [NORMAL] * (len(tokens) - 2) + [CONTROL, CONTROL]
    md = {"tokenizer.ggml.model": "gpt2", "tokenizer.ggml.pre": pre,
          "tokenizer.ggml.tokens": tokens, "tokenizer.ggml.token_type": types,
          "tokenizer.ggml.merges": merges, "tokenizer.ggml.eos_token_id": len(tokens) - 2,
          "tokenizer.ggml.bos_token_id": len(tokens) - 2}
    md.update(extra)
    return md


def spm_id(tok, text):
    return tok.vocab.text_to_id[text]


# ---- SentencePiece ------------------------------------------------------------------------------

def test_spm_merges_by_score_with_space_prefix_and_bos():
    tok = Tokenizer.from_metadata(spm_metadata())
    assert tok.add_bos and not tok.add_eos            # llama.cpp's SPM defaults
    assert tok.encode("ab") == [1, spm_id(tok, "▁ab")]
    assert tok.encode("ab", add_special=False) == [spm_id(tok, "▁ab")]
    # "▁abc": of the first pairs bc (-0.2) scores best, then ▁a; ▁ab never gets a chance
    assert tok.encode("abc", add_special=False) == [spm_id(tok, "▁a"), spm_id(tok, "bc")]


def test_spm_byte_fallback_and_decode_strips_leading_space():
    tok = Tokenizer.from_metadata(spm_metadata())
    ids = tok.encode("a é", add_special=False)
    assert ids == [spm_id(tok, "▁a"), spm_id(tok, "▁"), 5 + 0xC3, 5 + 0xA9]
    assert tok.decode(ids) == "a é"
    assert tok.decode([1] + ids) == " a é"     # llama.cpp strips only on the first token


def test_spm_add_space_prefix_false():
    tok = Tokenizer.from_metadata(spm_metadata(**{"tokenizer.ggml.add_space_prefix": False}))
    assert tok.encode("ab", add_special=False) == [spm_id(tok, "ab")]
    assert tok.decode([spm_id(tok, "▁a")]) == " a"


def test_spm_special_parsing_control_vs_user_defined():
    tok = Tokenizer.from_metadata(spm_metadata())
    ctl, user = 3, 4
    # text after a special token gets the space prefix again
    assert tok.encode("a<ctl>b", add_special=False) == [
        spm_id(tok, "▁a"), ctl, spm_id(tok, "▁"), spm_id(tok, "b")]
    plain = tok.encode("<ctl>", add_special=False, parse_special=False)
    assert ctl not in plain
    # user-defined tokens are matched even without parse_special (llama.cpp, like HF)
    assert user in tok.encode("a<user>", add_special=False, parse_special=False)
    assert tok.decode([ctl]) == "" and tok.decode([ctl], special=True) == "<ctl>"
    assert tok.decode([user]) == "<user>"


def test_spm_eog_and_unknown():
    tok = Tokenizer.from_metadata(spm_metadata())
    assert tok.eog_ids == {2}                        # </s> by text and as EOS
    assert tok.token_attr(0) == TokenAttr.UNKNOWN
    assert tok.token_to_bytes(0) == b"" and tok.token_to_bytes(0, special=True) == b"<unk>"


def test_stream_decoder_holds_partial_characters():
    tok = Tokenizer.from_metadata(spm_metadata())
    llama = "🦙".encode("utf-8")                     # 4 bytes -> 4 byte tokens
    stream = tok.stream_decoder()
    outs = [stream.push(5 + b) for b in llama]
    assert outs == ["", "", "", "🦙"]
    assert stream.flush() == ""
    # a truncated character is not dropped at flush: it comes out as U+FFFD
    stream.push(5 + llama[0])
    assert stream.flush() == "\ufffd"


# ---- byte-level BPE -----------------------------------------------------------------------------

def test_bpe_merges_lowest_rank_first():
    tok = Tokenizer.from_metadata(bpe_metadata())
    ids = tok.encode("hello wo", add_special=False)
    assert [tok.token_text(i) for i in ids] == ["hello", "Ġwo"]
    assert tok.decode(ids) == "hello wo"


def test_merge_word_prefers_leftmost_on_ties():
    ranks = {("a", "a"): 0}
    assert merge_word(list("aaa"), ranks) == ["aa", "a"]
    assert merge_word(list("aaaa"), ranks) == ["aa", "aa"]


def test_bpe_unknown_pre_falls_back_with_warning(caplog):
    with caplog.at_level("WARNING", logger="pygguf.tokenizer"):
        tok = Tokenizer.from_metadata(bpe_metadata(pre="no-such-pre"))
    assert any("no-such-pre" in w for w in tok.warnings)
    assert sum("no-such-pre" in r.getMessage() for r in caplog.records) == 1
    assert [tok.token_text(i) for i in tok.encode("hello", add_special=False)] == ["hello"]


def test_bpe_defaults_and_eog():
    tok = Tokenizer.from_metadata(bpe_metadata())
    eot = tok.vocab.text_to_id["<|endoftext|>"]
    im_end = tok.vocab.text_to_id["<|im_end|>"]
    assert not tok.add_bos
    assert tok.eog_ids == {eot, im_end}
    assert tok.eot_id in {eot, im_end}
    assert tok.encode("x<|im_end|>", add_special=False)[-1] == im_end
    assert im_end not in tok.encode("x<|im_end|>", add_special=False, parse_special=False)


def test_llama3_pre_adds_bos_by_default():
    tok = Tokenizer.from_metadata(bpe_metadata(pre="llama-bpe"))
    assert tok.add_bos
    assert tok.encode("hello")[0] == tok.bos_id
    off = Tokenizer.from_metadata(bpe_metadata(pre="llama-bpe",
                                               **{"tokenizer.ggml.add_bos_token": False}))
    assert off.encode("hello")[0] != off.bos_id


def test_clean_spaces_on_gpt2_decode():
    tok = Tokenizer.from_metadata(bpe_metadata())
    ids = tok.encode("a , b 's", add_special=False)
    assert tok.decode(ids) == "a, b's"                # llama.cpp cleans up for gpt-2
    qwen = Tokenizer.from_metadata(bpe_metadata(pre="qwen2"))
    assert qwen.decode(qwen.encode("a , b 's", add_special=False)) == "a , b 's"


# ---- bad metadata -------------------------------------------------------------------------------

@pytest.mark.parametrize("change, message", [
    ({"tokenizer.ggml.model": "bert"}, "unsupported"),
    ({"tokenizer.ggml.tokens": []}, "tokens"),
    ({"tokenizer.ggml.tokens": ["a", "a"], "tokenizer.ggml.token_type": [1, 1],
      "tokenizer.ggml.scores": [0.0, 0.0]}, "duplicate"),
    ({"tokenizer.ggml.token_type": [1]}, "fewer"),
    ({"tokenizer.ggml.merges": None}, "merges"),
])
def test_bad_metadata_raises_typed_error(change, message):
    base = bpe_metadata() if "tokenizer.ggml.merges" in change else spm_metadata()
    md = {**base, **change}
    md = {k: v for k, v in md.items() if v is not None}
    with pytest.raises(TokenizerError, match=message):
        Tokenizer.from_metadata(md)


def test_out_of_range_ids_raise():
    tok = Tokenizer.from_metadata(spm_metadata())
    with pytest.raises(TokenizerError):
        tok.decode([tok.n_vocab])
    with pytest.raises(TokenizerError):
        tok.token_to_bytes(-1)
