"""Immutable vocabulary data read from GGUF `tokenizer.ggml.*` metadata.

Everything llama.cpp derives at load time lives here (token attributes, special ids, the
end-of-generation set, the add_bos/add_eos defaults); the tokenizers only read it.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from itertools import repeat
from typing import Mapping

from pygguf.errors import TokenizerError
from pygguf.tokenizer import pretokenize, special
from pygguf.tokenizer.special import TOKEN_TYPE_TO_ATTR, TokenAttr


@dataclass(frozen=True)
class Vocab:
    model: str                      # "llama" (SentencePiece) or "gpt2" (byte-level BPE)
    pre: str                        # tokenizer.ggml.pre as written ("" when absent)
    texts: tuple[str, ...]
    scores: tuple[float, ...]
    attrs: tuple[int, ...]          # TokenAttr bits per id
    text_to_id: Mapping[str, int]
    merge_pairs: tuple[list[str], list[str]]   # (left halves, right halves) of the merges, in file order
    special_ids: Mapping[str, int]  # bos/eos/eot/eom/unk/sep/pad/mask/fim_*; absent = none
    eog_ids: frozenset[int]
    special_cache: tuple[int, ...]  # control/user-defined/unknown ids, longest text first
    add_bos: bool
    add_eos: bool
    add_space_prefix: bool
    clean_spaces: bool
    ignore_merges: bool
    model_name: str = ""
    warnings: tuple[str, ...] = field(default=())

    @property
    def n_vocab(self) -> int:
        return len(self.texts)

    def attr(self, token_id: int) -> int:
        return self.attrs[token_id]

    @cached_property
    def merge_ranks(self) -> dict[tuple[str, str], int]:
        """(left, right) -> rank, for the Python merges (the C table is built from merge_pairs).
        The first rank of a repeated pair wins (llama.cpp emplaces): built from the back."""
        lefts, rights = self.merge_pairs
        return dict(zip(zip(reversed(lefts), reversed(rights)), range(len(lefts) - 1, -1, -1)))


def _shown(text: str, most: int = 60) -> str:
    """repr of a file's string for a message, cut short (a hostile token can be megabytes)"""
    return repr(text) if len(text) <= most else f"{text[:most]!r}... ({len(text)} characters)"


def _check_utf8(strings: list, key: str) -> None:
    """The reader keeps a string's invalid UTF-8 bytes as lone surrogates; no tokenizer step can
    encode them back, so they are refused here. One pass over the whole array; the search for
    the culprit only on failure."""
    try:
        "".join(strings).encode("utf-8")
    except UnicodeEncodeError:
        bad = next(i for i, t in enumerate(strings) if not _encodes(t))
        raise TokenizerError(f"{key}[{bad}] is not valid UTF-8") from None


def _encodes(text: str) -> bool:
    try:
        text.encode("utf-8")
        return True
    except UnicodeEncodeError:
        return False


def _read_scores(metadata: Mapping[str, object], n: int) -> list[float]:
    scores = _require_list(metadata, "tokenizer.ggml.scores", n)[:n]
    if not set(map(type, scores)) <= {float, int}:     # exactly: a bool or a string is not a score
        raise TokenizerError("tokenizer.ggml.scores must be an array of numbers")
    return list(map(float, scores)) or [0.0] * n


def _require_list(metadata: Mapping[str, object], key: str, n: int | None = None) -> list:
    value = metadata.get(key)
    if value is None:
        return []
    if not isinstance(value, (list, tuple)):
        raise TokenizerError(f"{key} must be an array, got {type(value).__name__}")
    if n is not None and len(value) < n:
        raise TokenizerError(f"{key} has {len(value)} entries, fewer than the {n} tokens")
    return list(value)


def _read_tokens(metadata: Mapping[str, object]) -> tuple[list[str], dict[str, int], list[str]]:
    raw = metadata.get("tokenizer.ggml.tokens")
    if not isinstance(raw, (list, tuple)) or not raw:
        raise TokenizerError("tokenizer.ggml.tokens is missing or empty")
    texts = list(raw)
    if set(map(type, texts)) != {str}:      # one C-level pass; the slow search only on failure
        bad = next(i for i, t in enumerate(texts) if not isinstance(t, str))
        raise TokenizerError(f"tokenizer.ggml.tokens[{bad}] is not a string")
    _check_utf8(texts, "tokenizer.ggml.tokens")
    warnings: list[str] = []
    text_to_id = dict(zip(texts, range(len(texts))))
    if len(text_to_id) != len(texts) or "" in text_to_id:
        text_to_id = _index_slowly(texts, warnings)
    return texts, text_to_id, warnings


def _index_slowly(texts: list[str], warnings: list[str]) -> dict[str, int]:
    """The careful path for vocabularies with empty or duplicate tokens."""
    text_to_id: dict[str, int] = {}
    for i, word in enumerate(texts):
        if not word:
            # llama.cpp gives empty tokens a placeholder text so lookups stay unique
            warnings.append(f"empty token at index {i}")
            word = texts[i] = f"[EMPTY_{i}]"
        if word in text_to_id:
            raise TokenizerError(
                f"duplicate token in vocabulary: {_shown(word)} has ids {text_to_id[word]} and {i}")
        text_to_id[word] = i
    return text_to_id


def _read_merges(metadata: Mapping[str, object]) -> tuple[list[str], list[str]]:
    merges = metadata.get("tokenizer.ggml.merges")
    if merges is None:
        raise TokenizerError("tokenizer.ggml.model is gpt2 but tokenizer.ggml.merges is missing")
    if not isinstance(merges, (list, tuple)) or not set(map(type, merges)) <= {str}:
        raise TokenizerError("tokenizer.ggml.merges must be an array of strings")
    _check_utf8(list(merges), "tokenizer.ggml.merges")
    return _split_merges(merges)


def _split_merge(line: str) -> tuple[str, str]:
    """'a b' -> ('a', 'b'), split at the first space after the first character (a merge half
    may start with ' '); a line with no such space gives ('', '')."""
    head, sep, tail = line[1:].partition(" ")
    return (line[:1] + head, tail) if sep else ("", "")


def _split_merges(merges) -> tuple[list[str], list[str]]:
    """_split_merge over every line. When every line holds exactly one space and no line starts
    with it, one join and one split give the same halves (the byte-level BPE case: its symbols
    spell a space as 'Ġ') without a Python call per line; otherwise each line is split alone.
    Returns (left halves, right halves)."""
    words = " ".join(merges).split(" ")
    lefts, rights = words[0::2], words[1::2]
    # n spaces in all, at least one in every line: exactly one in each (the count alone could
    # pair a two-space line with a spaceless one)
    one_each = len(words) == 2 * len(merges) and all(map(str.__contains__, merges, repeat(" ")))
    if one_each and "" not in lefts:
        return lefts, rights
    pairs = list(map(_split_merge, merges))
    return [p[0] for p in pairs], [p[1] for p in pairs]


def _get_bool(metadata: Mapping[str, object], key: str, default: bool) -> bool:
    value = metadata.get(key)
    return default if value is None else bool(value)


def build_vocab(metadata: Mapping[str, object]) -> Vocab:
    """Read the vocabulary and derive everything llama.cpp derives from it."""

    model = metadata.get("tokenizer.ggml.model")
    if model not in ("llama", "gpt2"):
        shown = _shown(model) if isinstance(model, str) else "missing" if model is None else f"a {type(model).__name__}"
        raise TokenizerError(f"unsupported tokenizer.ggml.model {shown} (supported: 'llama', 'gpt2')")
    pre = metadata.get("tokenizer.ggml.pre") or ""
    if not isinstance(pre, str):
        raise TokenizerError("tokenizer.ggml.pre must be a string")

    texts, text_to_id, warnings = _read_tokens(metadata)
    n = len(texts)
    scores = _read_scores(metadata, n)
    types = _require_list(metadata, "tokenizer.ggml.token_type", n)[:n]
    if types and set(map(type, types)) != {int}:     # exactly int: a bool is not a token type
        raise TokenizerError("tokenizer.ggml.token_type must be an array of integers")
    type_to_attr = {t: int(a) for t, a in TOKEN_TYPE_TO_ATTR.items()}
    attrs = list(map(type_to_attr.get, types, repeat(0, n))) if types else [int(TokenAttr.NORMAL)] * n

    if model == "gpt2":
        merge_pairs = _read_merges(metadata)
        flags = pretokenize.pre_flags(pre, warnings)
        add_space_prefix = False
    else:
        merge_pairs = ([], [])
        flags = {"add_bos": True, "add_eos": False, "clean_spaces": False, "ignore_merges": False}
        add_space_prefix = True
    add_space_prefix = _get_bool(metadata, "tokenizer.ggml.add_space_prefix", add_space_prefix)

    special_ids = special.read_special_ids(metadata, model, n, warnings)
    add_bos = _get_bool(metadata, "tokenizer.ggml.add_bos_token", flags["add_bos"])
    add_eos = _get_bool(metadata, "tokenizer.ggml.add_eos_token", flags["add_eos"])
    if add_bos and "bos" not in special_ids:
        raise TokenizerError("tokenizer.ggml.add_bos_token is true, but no BOS token id is set")
    if add_eos and "eos" not in special_ids:
        raise TokenizerError("tokenizer.ggml.add_eos_token is true, but no EOS token id is set")

    model_name = str(metadata.get("general.name") or "")
    eog_ids = special.derive_special_tokens(texts, text_to_id, attrs, special_ids, warnings)
    cache = special.special_token_cache(texts, attrs)
    special.apply_model_attr_rules(model_name, text_to_id, attrs, cache)

    return Vocab(
        model=model, pre=pre, texts=tuple(texts), scores=tuple(scores), attrs=tuple(attrs),
        text_to_id=text_to_id, merge_pairs=merge_pairs, special_ids=dict(special_ids),
        eog_ids=frozenset(eog_ids), special_cache=tuple(cache),
        add_bos=add_bos, add_eos=add_eos, add_space_prefix=add_space_prefix,
        clean_spaces=flags["clean_spaces"], ignore_merges=flags["ignore_merges"],
        model_name=model_name, warnings=tuple(warnings))
