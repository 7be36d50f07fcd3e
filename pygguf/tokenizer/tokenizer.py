"""The Tokenizer: llama.cpp's tokenize/detokenize over a Vocab (SentencePiece or byte-level BPE)."""
from __future__ import annotations

import logging
from functools import partial
from typing import Mapping

from pygguf.errors import TokenizerError
from pygguf.tokenizer.special import TokenAttr
from pygguf.tokenizer.vocab import Vocab, build_vocab

from . import special
from .bpe import UNICODE_TO_BYTE, BPETokenizer
from .spm import SPACE, SPMTokenizer
from .stream import StreamDecoder

log = logging.getLogger("pygguf.tokenizer")

_HIDDEN = int(TokenAttr.UNKNOWN | TokenAttr.CONTROL)        # printed only with special=True
_VERBATIM = _HIDDEN | int(TokenAttr.USER_DEFINED)            # printed as their text


class Tokenizer:
    def __init__(self, vocab: Vocab, use_native: bool = True):
        """use_native=False keeps the merges in Python (the reference for the C merge loop)."""
        self.vocab = vocab
        if vocab.model == "llama":
            self._spm: SPMTokenizer | None = SPMTokenizer(vocab, use_native)
            self._bpe: BPETokenizer | None = None
        else:
            self._spm = None
            self._bpe = BPETokenizer(vocab, use_native)
        self._pieces: dict[int, bytes] = {}   # token id -> bytes, special=True spelling
        self._grammar_pieces: list[bytes] | None = None

    @classmethod
    def from_metadata(cls, metadata: Mapping[str, object]) -> "Tokenizer":
        vocab = build_vocab(metadata)
        for warning in vocab.warnings:       # once per load, like llama.cpp's load-time log
            log.warning("%s", warning)
        return cls(vocab)

    # --- vocabulary facts -------------------------------------------------------------------
    @property
    def n_vocab(self) -> int:
        return self.vocab.n_vocab

    def _special(self, name: str) -> int | None:
        return self.vocab.special_ids.get(name)

    bos_id = property(lambda self: self._special("bos"))
    eos_id = property(lambda self: self._special("eos"))
    eot_id = property(lambda self: self._special("eot"))
    eom_id = property(lambda self: self._special("eom"))
    unk_id = property(lambda self: self._special("unk"))
    pad_id = property(lambda self: self._special("pad"))
    fim_pre_id = property(lambda self: self._special("fim_pre"))
    fim_suf_id = property(lambda self: self._special("fim_suf"))
    fim_mid_id = property(lambda self: self._special("fim_mid"))
    fim_pad_id = property(lambda self: self._special("fim_pad"))
    fim_rep_id = property(lambda self: self._special("fim_rep"))
    fim_sep_id = property(lambda self: self._special("fim_sep"))

    @property
    def eog_ids(self) -> set[int]:
        return set(self.vocab.eog_ids)

    @property
    def add_bos(self) -> bool:
        return self.vocab.add_bos

    @property
    def add_eos(self) -> bool:
        return self.vocab.add_eos

    @property
    def warnings(self) -> tuple[str, ...]:
        return self.vocab.warnings

    def is_eog(self, token_id: int) -> bool:
        return token_id in self.vocab.eog_ids

    def token_attr(self, token_id: int) -> TokenAttr:
        self._check_id(token_id)
        return TokenAttr(self.vocab.attrs[token_id])

    def token_text(self, token_id: int) -> str:
        self._check_id(token_id)
        return self.vocab.texts[token_id]

    # --- encoding ---------------------------------------------------------------------------
    def encode(self, text: str, add_special: bool = True, parse_special: bool = True) -> list[int]:
        if not isinstance(text, str):
            raise TypeError(f"encode() needs str, got {type(text).__name__}")
        v = self.vocab
        fragments = special.partition(text, v.texts, v.attrs, v.special_cache, parse_special)
        out: list[int] = []
        if add_special and v.add_bos:
            out.append(v.special_ids["bos"])
        if self._spm is not None:
            prev_special = True   # SentencePiece prefixes a space to text that starts a fragment run
            for frag in fragments:
                if isinstance(frag, int):
                    out.append(frag)
                    prev_special = True
                else:
                    self._spm.encode_text(frag, out, v.add_space_prefix and prev_special)
                    prev_special = False
        else:
            for frag in fragments:
                if isinstance(frag, int):
                    out.append(frag)
                else:
                    self._bpe.encode_text(frag, out)
        if add_special and v.add_eos:
            out.append(v.special_ids["eos"])
        return out

    # --- decoding ---------------------------------------------------------------------------
    def _check_id(self, token_id: int) -> None:
        if not isinstance(token_id, int) or not 0 <= token_id < self.vocab.n_vocab:
            raise TokenizerError(f"token id {token_id!r} out of range [0, {self.vocab.n_vocab})")

    def token_to_bytes(self, token_id: int, special: bool = False) -> bytes:
        """The bytes a token stands for (llama.cpp's token_to_piece); control and unknown tokens
        are empty unless special=True."""
        self._check_id(token_id)
        attr = self.vocab.attrs[token_id]
        if not special and attr & _HIDDEN:
            return b""
        piece = self._pieces.get(token_id)
        if piece is None:
            piece = self._piece(token_id, attr)
            self._pieces[token_id] = piece
        return piece

    def _piece(self, token_id: int, attr: int) -> bytes:
        text = self.vocab.texts[token_id]
        if attr & _VERBATIM:
            return text.encode("utf-8")
        if attr & TokenAttr.NORMAL:
            if self._spm is not None:
                return text.replace(SPACE, " ").encode("utf-8")
            return _byte_decode(text)
        if attr & TokenAttr.BYTE:
            try:
                return bytes([int(text[3:5], 16)])
            except ValueError:
                raise TokenizerError(f"byte token {token_id} has text {text[:20]!r}, not <0xNN>") from None
        return b""   # unused / undefined tokens print nothing

    def grammar_pieces(self) -> list[bytes]:
        """Every token's bytes as a grammar reads them (llama.cpp's cached token_to_piece, special
        tokens spelled out), computed once: the same list object every call, so grammar matchers
        built over it can be shared."""
        if self._grammar_pieces is None:
            self._grammar_pieces = [self.token_to_bytes(t, special=True) for t in range(self.vocab.n_vocab)]
        return self._grammar_pieces

    def decode_bytes(self, ids, special: bool = False) -> bytes:
        """llama.cpp's detokenize (remove_special=False): SentencePiece drops the leading space of
        the first piece; byte-level BPE vocabularies may clean up spaces before punctuation."""
        parts = []
        strip_space = self.vocab.add_space_prefix
        for token_id in ids:
            piece = self.token_to_bytes(token_id, special)
            if strip_space and piece.startswith(b" "):
                piece = piece[1:]
            strip_space = False
            parts.append(piece)
        data = b"".join(parts)
        if self.vocab.clean_spaces:
            data = _clean_spaces(data)
        return data

    def decode(self, ids, special: bool = False) -> str:
        return self.decode_bytes(ids, special).decode("utf-8", errors="replace")

    def stream_decoder(self, special: bool = False) -> StreamDecoder:
        return StreamDecoder(partial(self.token_to_bytes, special=special))


def _byte_decode(text: str) -> bytes:
    out = bytearray()
    for ch in text:
        b = UNICODE_TO_BYTE.get(ch)
        if b is None:
            # llama.cpp's marker for a character outside the byte map
            out += b"[UNK_BYTE_0x" + ch.encode("utf-8").hex().encode() + text.encode("utf-8") + b"]"
        else:
            out.append(b)
    return bytes(out)


def _clean_spaces(data: bytes) -> bytes:
    """llama.cpp's clean_up_tokenization_spaces, three passes over bytes."""
    # 1: " ?", " !", " .", " ,"  -> drop the space
    out = bytearray(data[:1])
    for i in range(1, len(data)):
        if data[i - 1] == 0x20 and data[i] in b"?!.,":
            out.pop()
        out.append(data[i])
    data = bytes(out)
    # 2: a lone apostrophe between spaces loses both spaces (llama.cpp blanks the second space
    #    in place, so the character after it no longer sees a space before it)
    buf = bytearray(data)
    out = bytearray(buf[:1])
    i = 1
    while i < len(buf):
        x = buf[i]
        if x == 0x27 and i + 1 < len(buf) and buf[i - 1] == 0x20 and buf[i + 1] == 0x20:
            out.pop()
            buf[i + 1] = 0
            out.append(x)
            i += 2
            continue
        out.append(x)
        i += 1
    data = bytes(out)
    # 3: " 's", " 'm", " 're", " 've" -> drop the space
    out = bytearray(data[:1])
    n = len(data)
    for i in range(1, n):
        x = data[i]
        if data[i - 1] == 0x20 and x == 0x27 and i + 1 < n:
            x1 = data[i + 1]
            if x1 in b"sm":
                out.pop()
            elif i + 2 < n and (data[i + 1:i + 3] in (b"re", b"ve")):
                out.pop()
        out.append(x)
    return bytes(out)
