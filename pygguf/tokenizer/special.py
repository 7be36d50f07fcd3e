"""Special tokens: ids from metadata, llama.cpp's detection by text, and prompt partitioning.

llama.cpp finds EOT/FIM tokens and the end-of-generation set partly by token text; the lists
below are those texts (facts about model vocabularies, kept in one place).
"""
from __future__ import annotations

import enum
from itertools import compress
from typing import Mapping, MutableSequence, Sequence


class TokenAttr(enum.IntFlag):
    """Per-token attributes, llama.cpp's llama_token_attr bit values."""
    UNDEFINED = 0
    UNKNOWN = 1 << 0
    UNUSED = 1 << 1
    NORMAL = 1 << 2
    CONTROL = 1 << 3
    USER_DEFINED = 1 << 4
    BYTE = 1 << 5
    NORMALIZED = 1 << 6
    LSTRIP = 1 << 7
    RSTRIP = 1 << 8
    SINGLE_WORD = 1 << 9


# GGUF tokenizer.ggml.token_type values -> attribute.
TOKEN_TYPE_TO_ATTR = {
    0: TokenAttr.UNDEFINED,
    1: TokenAttr.NORMAL,
    2: TokenAttr.UNKNOWN,
    3: TokenAttr.CONTROL,
    4: TokenAttr.USER_DEFINED,
    5: TokenAttr.UNUSED,
    6: TokenAttr.BYTE,
}

# Special-token metadata keys, in the order llama.cpp reads them (later keys win for FIM).
SPECIAL_ID_KEYS = (
    ("bos", "tokenizer.ggml.bos_token_id"),
    ("eos", "tokenizer.ggml.eos_token_id"),
    ("eot", "tokenizer.ggml.eot_token_id"),
    ("eom", "tokenizer.ggml.eom_token_id"),
    ("unk", "tokenizer.ggml.unknown_token_id"),
    ("sep", "tokenizer.ggml.seperator_token_id"),
    ("pad", "tokenizer.ggml.padding_token_id"),
    ("mask", "tokenizer.ggml.mask_token_id"),
    ("fim_pre", "tokenizer.ggml.fim_pre_token_id"),
    ("fim_suf", "tokenizer.ggml.fim_suf_token_id"),
    ("fim_mid", "tokenizer.ggml.fim_mid_token_id"),
    ("fim_pad", "tokenizer.ggml.fim_pad_token_id"),
    ("fim_rep", "tokenizer.ggml.fim_rep_token_id"),
    ("fim_sep", "tokenizer.ggml.fim_sep_token_id"),
    # deprecated spellings
    ("fim_pre", "tokenizer.ggml.prefix_token_id"),
    ("fim_suf", "tokenizer.ggml.suffix_token_id"),
    ("fim_mid", "tokenizer.ggml.middle_token_id"),
)

# Default special ids per tokenizer model (llama.cpp's), before metadata overrides them.
DEFAULT_SPECIAL_IDS = {
    "llama": {"bos": 1, "eos": 2, "unk": 0},
    "gpt2": {"bos": 11, "eos": 11},
}

EOT_TEXTS = frozenset({
    "<|eot_id|>", "<|im_end|>", "<|end|>", "<end_of_turn>", "<|endoftext|>", "<|end_of_text|>",
    "<EOT>", "_<EOT>", "[EOT]", "<｜end▁of▁sentence｜>", "<end_of_utterance>",
})
EOM_TEXTS = frozenset({"<|eom_id|>"})
FIM_TEXTS = {
    "fim_pre": frozenset({"<|fim_prefix|>", "<fim-prefix>", "<fim_prefix>", "<｜fim▁begin｜>",
                          "<PRE>", "▁<PRE>", "<|code_prefix|>", "<|prefix|>"}),
    "fim_suf": frozenset({"<|fim_suffix|>", "<fim-suffix>", "<fim_suffix>", "<｜fim▁hole｜>",
                          "<SUF>", "▁<SUF>", "<|code_suffix|>", "<|suffix|>"}),
    "fim_mid": frozenset({"<|fim_middle|>", "<fim-middle>", "<fim_middle>", "<｜fim▁end｜>",
                          "<MID>", "▁<MID>", "<|code_middle|>", "<|middle|>"}),
    "fim_pad": frozenset({"<|fim_pad|>", "<fim-pad>", "<fim_pad>", "<PAD>", "[PAD]"}),
    "fim_rep": frozenset({"<|fim_repo|>", "<|repo_name|>", "<fim-repo>", "<REPO>", "<reponame>"}),
    "fim_sep": frozenset({"<|file_sep|>"}),
}
EOG_TEXTS = frozenset({
    "<|eot_id|>", "<|im_end|>", "<|end|>", "<|return|>", "<|call|>", "<|flush|>", "<|calls|>",
    "<end_of_turn>", "<|endoftext|>", "</s>", "<|eom_id|>", "<EOT>", "_<EOT>", "[EOT]", "[EOS]",
    "<|end_of_text|>", "<end_of_utterance>", "<eos>", "<turn|>", "<|tool_response>",
    "<｜end▁of▁sentence｜>", "[e~[",
})
ALWAYS_RENDERED_TEXTS = ("<|channel|>", "<|message|>", "<|start|>", "<|constrain|>")

_CONTROL = int(TokenAttr.CONTROL)


def read_special_ids(metadata: Mapping[str, object], model: str, n_vocab: int,
                     warnings: list[str]) -> dict[str, int]:
    """Model defaults overridden by tokenizer.ggml.*_token_id keys; out-of-range ids dropped."""
    ids: dict[str, int] = dict(DEFAULT_SPECIAL_IDS.get(model, {}))
    for name, key in SPECIAL_ID_KEYS:
        if name in ids and not 0 <= ids[name] < n_vocab:
            warnings.append(f"default special token {key} = {ids[name]} out of vocab range, disabled")
            del ids[name]
        value = metadata.get(key)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int):
            raise_type = type(value).__name__
            warnings.append(f"{key} has type {raise_type}, ignored")
            continue
        if 0 <= value < n_vocab:
            ids[name] = value
        else:
            warnings.append(f"bad special token {key} = {value}, keeping default {ids.get(name)}")
    return ids


def ids_with(attrs: Sequence[int], mask: int) -> list[int]:
    """The ids whose attributes share a bit with mask, in order (a C-level pass: ~50k-250k ids)."""
    return list(compress(range(len(attrs)), map(mask.__and__, attrs)))


def _mark_control(attrs: MutableSequence[int], token_id: int) -> None:
    # llama.cpp forces a control-looking token found by text to be control-typed
    attrs[token_id] |= _CONTROL


def _first_present(candidates: frozenset[str], text_to_id: Mapping[str, int]) -> int | None:
    found = [text_to_id[t] for t in candidates if t in text_to_id]
    return min(found) if found else None


def derive_special_tokens(texts: Sequence[str], text_to_id: Mapping[str, int],
                          attrs: MutableSequence[int], ids: dict[str, int],
                          warnings: list[str]) -> set[int]:
    """Fill EOT/EOM/FIM ids found by text, mark unused tokens; return the end-of-generation set.

    llama.cpp walks a hash map here, so the first match is unspecified when a vocab holds several
    candidates; we take the lowest id (deterministic)."""
    for name, candidates in (("eot", EOT_TEXTS), ("eom", EOM_TEXTS), *FIM_TEXTS.items()):
        if name in ids:
            continue
        token_id = _first_present(candidates, text_to_id)
        if token_id is not None:
            ids[name] = token_id
            _mark_control(attrs, token_id)

    unused = int(TokenAttr.UNUSED)
    for token_id in ids_with(attrs, _CONTROL):
        if "unused" in texts[token_id]:
            attrs[token_id] |= unused

    eog: set[int] = {ids[name] for name in ("fim_pad", "fim_rep", "fim_sep") if name in ids}
    for text in EOG_TEXTS:
        token_id = text_to_id.get(text)
        if token_id is not None:
            eog.add(token_id)
            _mark_control(attrs, token_id)
    for text in ALWAYS_RENDERED_TEXTS:
        if text in text_to_id:
            attrs[text_to_id[text]] = int(TokenAttr.USER_DEFINED)
    for name in ("eos", "eot", "eom"):
        if name in ids and ids[name] not in eog:
            eog.add(ids[name])
            warnings.append(f"special_{name}_id is not in the end-of-generation set; added")

    _apply_eog_workarounds(texts, attrs, eog)
    return eog


def _apply_eog_workarounds(texts: Sequence[str], attrs: MutableSequence[int], eog: set[int]) -> None:
    """llama.cpp's two exceptions: harmony/solar '<|end|>' and gemma4/paddleocr '</s>' are not EOG."""
    by_text = {texts[i]: i for i in eog}
    has_call = "<|call|>" in by_text or "<|calls|>" in by_text
    if "<|end|>" in by_text and has_call and ("<|return|>" in by_text or "<|flush|>" in by_text):
        end_id = by_text["<|end|>"]
        eog.discard(end_id)
        attrs[end_id] = int(TokenAttr.USER_DEFINED)
    if "<|tool_response>" in by_text and "</s>" in by_text:
        s_id = by_text["</s>"]
        eog.discard(s_id)
        attrs[s_id] = int(TokenAttr.NORMAL)


def special_token_cache(texts: Sequence[str], attrs: Sequence[int]) -> list[int]:
    """Ids matched in prompt text before tokenizing: control, user-defined, unknown; longest first."""
    mask = int(TokenAttr.CONTROL | TokenAttr.USER_DEFINED | TokenAttr.UNKNOWN)
    ids = ids_with(attrs, mask)
    ids.sort(key=lambda i: -len(texts[i].encode("utf-8")))   # stable: ties keep id order
    return ids


def apply_model_attr_rules(model_name: str, text_to_id: Mapping[str, int],
                           attrs: MutableSequence[int], cache: Sequence[int]) -> None:
    """Per-model strip attributes llama.cpp sets by model name (Phi-3: special tokens eat the
    whitespace after them)."""
    name = model_name.lower()
    if "phi-3" in name or "phi3" in name:
        rstrip = int(TokenAttr.RSTRIP)
        for token_id in cache:
            attrs[token_id] |= rstrip
        if "</s>" in text_to_id:
            attrs[text_to_id["</s>"]] |= rstrip
        for text in ("<unk>", "<s>", "<|endoftext|>"):
            if text in text_to_id:
                attrs[text_to_id[text]] &= ~rstrip


_C_SPACE = " \t\n\v\f\r"   # C isspace() in the "C" locale


def partition(text: str, texts: Sequence[str], attrs: Sequence[int], cache: Sequence[int],
              parse_special: bool) -> list[str | int]:
    """Split a prompt into raw-text pieces (str) and special token ids (int), like llama.cpp's
    tokenizer_st_partition: each special token in turn (longest first) is searched in every
    remaining text piece. Control and unknown tokens only when parse_special; user-defined always."""
    skip_mask = int(TokenAttr.CONTROL | TokenAttr.UNKNOWN)
    lstrip_bit, rstrip_bit = int(TokenAttr.LSTRIP), int(TokenAttr.RSTRIP)
    fragments: list[str | int] = [text] if text else []
    for token_id in cache:
        attr = attrs[token_id]
        if not parse_special and attr & skip_mask:
            continue
        needle = texts[token_id]
        if not any(isinstance(f, str) and needle in f for f in fragments):
            continue
        out: list[str | int] = []
        for frag in fragments:
            if not isinstance(frag, str) or needle not in frag:
                out.append(frag)
                continue
            start = 0
            while True:
                pos = frag.find(needle, start)
                if pos < 0:
                    break
                left = frag[start:pos]
                if attr & lstrip_bit:
                    left = left.rstrip(_C_SPACE)
                if left:
                    out.append(left)
                out.append(token_id)
                start = pos + len(needle)
                if attr & rstrip_bit:
                    while start < len(frag) and frag[start] in _C_SPACE:
                        start += 1
            if start < len(frag):
                out.append(frag[start:])
        fragments = out
    return fragments
