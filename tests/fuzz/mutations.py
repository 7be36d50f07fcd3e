"""Structure-aware mutations of a GGUF file, one family per category. Each mutator takes the seed
file's Layout and a random.Random and returns a Mutant: new header bytes (the data region follows
them, tensor offsets being relative to it), patches to the data, an optional truncation, and one
line saying what was done (so a failing case can be rebuilt from its seed and described).
"""
from __future__ import annotations

import copy
import math
import random
import struct
from dataclasses import dataclass, field

from .layout import (
    ARRAY, SCALAR_FORMATS, STRING, Layout, build, decode_array, encode_array, encode_string,
)

U32, I32, F32, U64, I64, F64, BOOL = 4, 5, 6, 10, 11, 12, 7
BIG = [2**31 - 1, 2**31, 2**32 - 1, 2**32, 2**53 + 1, 2**63 - 1, 2**63, 2**64 - 1]


@dataclass
class Mutant:
    category: str
    description: str
    header: bytes
    data_patches: list = field(default_factory=list)   # (offset in the data region, bytes)
    truncate_at: int | None = None                      # file length after writing, if shorter
    header_patches: list = field(default_factory=list)  # (offset in the header, bytes)


def _fresh(layout: Layout) -> Layout:
    return copy.deepcopy(layout)


def _keys(layout: Layout, rng: random.Random, important_first=True) -> list:
    """Metadata entries, hyper-parameters and tokenizer keys more often than the rest."""
    keys = [e for e in layout.entries]
    hot = [e for e in keys if not e.key.startswith(b"general.") or e.key == b"general.architecture"]
    return hot if important_first and hot and rng.random() < 0.8 else keys


def _arch(layout: Layout) -> str:
    e = layout.entry("general.architecture")
    return e.value[8:].decode() if e else "llama"


def _set(layout: Layout, key: str, vtype: int, value: bytes) -> None:
    e = layout.entry(key)
    if e is None:
        from .layout import Entry
        layout.entries.append(Entry(key.encode(), vtype, value))
    else:
        e.vtype, e.value = vtype, value


def _int_value(vtype: int, value: int) -> bytes:
    fmt = SCALAR_FORMATS[vtype]
    lo, hi = {"<B": (0, 255), "<b": (-128, 127), "<H": (0, 2**16 - 1), "<h": (-2**15, 2**15 - 1),
              "<I": (0, 2**32 - 1), "<i": (-2**31, 2**31 - 1), "<Q": (0, 2**64 - 1),
              "<q": (-2**63, 2**63 - 1)}.get(fmt, (None, None))
    if lo is None:
        return struct.pack(fmt, float(value))
    return struct.pack(fmt, min(max(int(value), lo), hi))


# ---- truncation and flips -----------------------------------------------------------------------

def truncation(layout: Layout, rng: random.Random, data_size: int) -> Mutant:
    header = build(layout)
    total = len(header) + data_size
    r = rng.random()
    if r < 0.5:
        cut = rng.randrange(0, len(header))
    elif r < 0.8:
        cut = rng.randrange(len(header), total)
    else:
        t = rng.choice(layout.tensors)
        cut = len(header) + t.offset + rng.choice([0, 1, 31])
    return Mutant("truncation", f"cut at byte {cut} of {total}", header, truncate_at=min(cut, total - 1))


def bitflips(layout: Layout, rng: random.Random, data_size: int) -> Mutant:
    header = bytearray(build(layout))
    flips, patches = [], []
    for _ in range(rng.randint(1, 8)):
        if rng.random() < 0.9:
            pos = rng.randrange(len(header))
            header[pos] ^= 1 << rng.randrange(8)
            flips.append(f"h{pos}")
        else:
            pos = rng.randrange(data_size)
            patches.append((pos, bytes([rng.randrange(256)])))
            flips.append(f"d{pos}")
    return Mutant("bitflips", "flipped " + ",".join(flips), bytes(header), data_patches=patches)


# ---- counts, lengths and dimensions -------------------------------------------------------------

def _patch_field(layout: Layout, rng, kinds: tuple, values) -> tuple[bytes, str, list]:
    header = build(layout)
    targets = [f for f in layout.fields if f.kind in kinds]
    f = rng.choice(targets)
    (old,) = struct.unpack_from("<Q" if f.size == 8 else "<I", header, f.offset)
    value = rng.choice(values(old))
    value &= (1 << (8 * f.size)) - 1
    patch = value.to_bytes(f.size, "little")
    return header, f"{f.kind} of {f.owner or 'header'}: {old} -> {value}", [(f.offset, patch)]


def huge_counts(layout: Layout, rng: random.Random, data_size: int) -> Mutant:
    header, what, patches = _patch_field(
        layout, rng, ("n_tensors", "n_kv", "key_len", "str_len", "arr_count", "name_len"),
        lambda old: [0, 1, old + 1, max(old - 1, 0), old * 2, data_size, *BIG])
    return Mutant("huge_counts", what, header, header_patches=patches)


def huge_dims(layout: Layout, rng: random.Random, data_size: int) -> Mutant:
    if rng.random() < 0.7:
        header, what, patches = _patch_field(
            layout, rng, ("dim", "n_dims"),
            lambda old: [0, 1, 2, 5, 31, 33, old + 1, old * 2, max(old // 2, 1), old * 32, 2**24, *BIG])
        return Mutant("huge_dims", what, header, header_patches=patches)
    out = _fresh(layout)
    t = rng.choice(out.tensors)
    old = list(t.dims)
    r = rng.random()
    if r < 0.4 and len(t.dims) > 1:
        t.dims = t.dims[::-1]                             # transposed: same bytes, other row length
    elif r < 0.7:
        t.dims = t.dims + [rng.choice([1, 2, 2**20])]     # an extra dimension
    else:
        t.dims = [d * rng.choice([2, 3]) for d in t.dims][:1] + t.dims[1:]
    return Mutant("huge_dims", f"tensor {t.name.decode()} dims {old} -> {t.dims}", build(out))


# ---- metadata types and values -----------------------------------------------------------------

def _retype(entry, rng: random.Random) -> tuple[int, bytes, str]:
    """A new (type, encoding) for an entry's value: its bytes under another type id, or its value
    re-encoded as something else (a number as a string, a string as a number, a scalar as an array)."""
    r = rng.random()
    if r < 0.25:                                         # same bytes, another type id
        vtype = rng.choice([t for t in range(13) if t != entry.vtype] + [13, 2**31, 2**32 - 1])
        return vtype, entry.value, f"type id {entry.vtype} -> {vtype}, same bytes"
    if r < 0.45:
        text = rng.choice([b"12", b"-1", b"nan", b"", b"4294967296", b"\xff\xfe", b"a" * 300])
        return STRING, encode_string(text), f"value -> string {text[:20]!r}"
    if r < 0.65:
        vtype = rng.choice([U32, I32, F32, U64, I64, F64, BOOL, 0, 1, 2, 3])
        value = rng.choice([0, 1, -1, 7, 2**31, 2**32 - 1, 2**63 - 1, math.nan, math.inf, -math.inf])
        if vtype not in (F32, F64) and isinstance(value, float):
            value = 0
        if vtype == BOOL:
            return BOOL, struct.pack("<B", rng.choice([0, 1, 2, 255])), "value -> bool"
        return vtype, _int_value(vtype, value), f"value -> type {vtype} {value}"
    if r < 0.85:
        elem = rng.choice([U32, I32, F32, STRING, BOOL, ARRAY])
        if elem == ARRAY:
            return ARRAY, struct.pack("<IQ", ARRAY, 1) + encode_array(U32, [1, 2]), "value -> array[array[uint32]]"
        items = [b"x", b"\xc3"] if elem == STRING else [0, 1, 2] if elem != F32 else [math.nan, 1.0]
        if elem == BOOL:
            items = [1, 0]
        return ARRAY, encode_array(elem, items), f"value -> array of type {elem}"
    if entry.vtype == ARRAY:                             # an array's element type swapped
        value = bytearray(entry.value)
        elem = rng.choice([0, 1, 4, 6, 7, 8, 9, 10, 12, 13])
        value[0:4] = struct.pack("<I", elem)
        return ARRAY, bytes(value), f"array element type -> {elem}"
    return entry.vtype, entry.value[: max(len(entry.value) - 1, 0)], "value one byte short"


def metadata_types(layout: Layout, rng: random.Random, data_size: int) -> Mutant:
    out = _fresh(layout)
    entry = rng.choice(_keys(out, rng))
    entry.vtype, entry.value, what = _retype(entry, rng)
    return Mutant("metadata_types", f"{entry.key.decode('utf-8', 'replace')}: {what}", build(out))


def metadata_values(layout: Layout, rng: random.Random, data_size: int) -> Mutant:
    out = _fresh(layout)
    arch = _arch(out)
    ints = {"block_count": [0, 1, 29, 31, 2**31, 2**32 - 1], "context_length": [0, 1, 2**31, 2**32 - 1, 2**63],
            "embedding_length": [0, 1, 63, 577, 2**20 + 1, 2**32 - 1], "attention.head_count": [0, 1, 7, 10**6],
            "attention.head_count_kv": [0, 1, 5, 7, 2**32 - 1], "feed_forward_length": [0, 1, 1535, 2**31],
            "vocab_size": [0, 1, 49151, 49153, 2**24 + 1, 2**31], "rope.dimension_count": [0, 1, 63, 66, 2**31],
            "attention.key_length": [0, 2, 63, 128, 2**31], "expert_count": [0, 1, 8, 10**6],
            "expert_used_count": [0, 2, 9], "attention.sliding_window": [0, 1, 2**31]}
    floats = {"rope.freq_base": [0.0, -1.0, math.nan, math.inf, 1e38, 1e-38],
              "attention.layer_norm_rms_epsilon": [0.0, -1.0, math.nan, math.inf, 1e30],
              "rope.scaling.factor": [0.0, -1.0, math.nan, math.inf, 1e-30],
              "final_logit_softcapping": [math.nan, -1.0, math.inf]}
    r = rng.random()
    if r < 0.5:
        name = rng.choice(list(ints))
        value = rng.choice(ints[name])
        vtype = U64 if value >= 2**32 else rng.choice([U32, I32, U64]) if value < 2**31 else rng.choice([U32, U64])
        _set(out, f"{arch}.{name}", vtype, _int_value(vtype, value))
        what = f"{arch}.{name} = {value} (type {vtype})"
    elif r < 0.75:
        name = rng.choice(list(floats))
        value = rng.choice(floats[name])
        _set(out, f"{arch}.{name}", F32, struct.pack("<f", value))
        what = f"{arch}.{name} = {value}"
    elif r < 0.85:
        name = rng.choice(["general.architecture", f"{arch}.rope.scaling.type", "tokenizer.ggml.model",
                           "tokenizer.ggml.pre", "tokenizer.chat_template"])
        text = rng.choice([b"", b"gemma3", b"qwen3moe", b"bert", b"llama\0", b"\xff", b"yarn", b"linear", b"su",
                           b"{% for %}", b"x" * 1000])
        _set(out, name, STRING, encode_string(text))
        what = f"{name} = {text[:20]!r}"
    elif r < 0.95:
        n = rng.choice([1 << 16, 1 << 20, 1 << 22])    # a long key (the was 98 MB; the cost scales)
        key = rng.choice([b"k", b"\xff", f"{arch}.block_count".encode()]) * (n // 4)
        from .layout import Entry
        out.entries.insert(rng.randrange(len(out.entries) + 1), Entry(key, U32, struct.pack("<I", 1)))
        what = f"a metadata key of {len(key)} bytes"
    else:
        dup = copy.deepcopy(rng.choice(out.entries))
        out.entries.insert(rng.randrange(len(out.entries) + 1), dup)
        what = f"duplicate key {dup.key[:40]!r}"
    return Mutant("metadata_values", what, build(out))


# ---- tensors: types, table, offsets, alignment, data ---------------------------------------------

TYPE_IDS = [0, 1, 2, 3, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 30, 4, 16, 24, 28, 39, 40, 2**31, 2**32 - 1]


def tensor_types(layout: Layout, rng: random.Random, data_size: int) -> Mutant:
    out = _fresh(layout)
    r = rng.random()
    if r < 0.6:
        t = rng.choice(out.tensors)
        old, t.ggml_type = t.ggml_type, rng.choice(TYPE_IDS)
        what = f"tensor {t.name.decode()} type {old} -> {t.ggml_type}"
    elif r < 0.75:
        t = out.tensors.pop(rng.randrange(len(out.tensors)))
        what = f"tensor {t.name.decode()} dropped"
    elif r < 0.85:
        t = rng.choice(out.tensors)
        old, t.name = t.name, rng.choice([b"blk.999.attn_q.weight", b"", b"\xff\xfe", b"output.weight",
                                          b"token_embd.weight", b"blk.0.ffn_gate_exps.weight"])
        what = f"tensor {old.decode()} renamed {t.name[:30]!r}"
    else:
        a, b = rng.sample(range(len(out.tensors)), 2)
        ta, tb = out.tensors[a], out.tensors[b]
        ta.dims, tb.dims, ta.ggml_type, tb.ggml_type = tb.dims, ta.dims, tb.ggml_type, ta.ggml_type
        what = f"tensors {ta.name.decode()} and {tb.name.decode()} swap shape and type"
    return Mutant("tensor_types", what, build(out))


def offsets(layout: Layout, rng: random.Random, data_size: int) -> Mutant:
    out = _fresh(layout)
    t = rng.choice(out.tensors)
    other = rng.choice(out.tensors)
    old = t.offset
    t.offset = rng.choice([old + 1, old + 2, old + 16, old + out.alignment, max(old - out.alignment, 0), 0,
                           other.offset, data_size, data_size - 32, data_size + 32, 2**32, 2**63, 2**64 - 1])
    return Mutant("offsets", f"tensor {t.name.decode()} offset {old} -> {t.offset}", build(out))


def alignment(layout: Layout, rng: random.Random, data_size: int) -> Mutant:
    out = _fresh(layout)
    value = rng.choice([0, 1, 2, 3, 4, 8, 16, 33, 64, 4096, 2**31, 2**32 - 1])
    vtype = rng.choice([U32, U32, U64, I32, F32, STRING])
    if vtype == STRING:
        encoded = encode_string(str(value).encode())
    else:
        encoded = _int_value(vtype, value)
    _set(out, "general.alignment", vtype, encoded)
    pad_to = rng.choice([32, value if 0 < value <= 4096 and vtype != STRING else 32, 1])
    header = build(out, alignment=pad_to)
    return Mutant("alignment", f"general.alignment = {value} (type {vtype}), header padded to {pad_to}", header)


def token_tables(layout: Layout, rng: random.Random, data_size: int) -> Mutant:
    out = _fresh(layout)
    r = rng.random()
    tokens = out.entry("tokenizer.ggml.tokens")
    if r < 0.3 and tokens is not None:
        _, items = decode_array(tokens.value)
        i = rng.randrange(len(items))
        bad = rng.choice([b"\xff", b"\xc3", b"\xed\xa0\x80", b"", items[(i + 1) % len(items)], b"\0", b"a" * 70000])
        items[i] = bad
        if rng.random() < 0.2:
            items = items[: rng.randrange(1, len(items))]
        tokens.value = encode_array(STRING, items)
        what = f"token {i} -> {bad[:12]!r} ({len(items)} tokens)"
    elif r < 0.5:
        key = rng.choice(["tokenizer.ggml.scores", "tokenizer.ggml.token_type"])
        entry = out.entry(key)
        n = len(decode_array(tokens.value)[1]) if tokens is not None else 10
        choice = rng.choice(["strings", "floats", "short", "nan", "huge"])
        if choice == "strings":
            value = encode_array(STRING, [b"1.0"] * n)
        elif choice == "floats":
            value = encode_array(F32, [0.5] * n)
        elif choice == "short":
            value = encode_array(I32 if key.endswith("type") else F32, [1] * (n // 2))
        elif choice == "nan":
            value = encode_array(F32, [math.nan] * n)
        else:
            value = encode_array(I32, [rng.choice([-1, 7, 2**31 - 1])] * n)
        _set(out, key, ARRAY, value)
        what = f"{key} -> {choice}" + ("" if entry else " (added)")
    elif r < 0.7:
        merges = out.entry("tokenizer.ggml.merges")
        if merges is None:
            return metadata_types(layout, rng, data_size)
        _, items = decode_array(merges.value)
        i = rng.randrange(len(items))
        items[i] = rng.choice([b"", b"ab", b"a b c", b"\xff \xfe", b" ", b"zzzz qqqq", b"a" * 5000 + b" b"])
        merges.value = encode_array(STRING, items)
        what = f"merge {i} -> {items[i][:12]!r}"
    else:
        key = rng.choice(["tokenizer.ggml.bos_token_id", "tokenizer.ggml.eos_token_id",
                          "tokenizer.ggml.padding_token_id", "tokenizer.ggml.unknown_token_id",
                          "tokenizer.ggml.add_bos_token", "tokenizer.ggml.eot_token_id"])
        value = rng.choice([49152, 2**31 - 1, 2**32 - 1, -1])
        vtype = rng.choice([U32, I32, STRING, F32])
        encoded = encode_string(b"1") if vtype == STRING else _int_value(vtype, value)
        _set(out, key, vtype, encoded)
        what = f"{key} = {value} (type {vtype})"
    return Mutant("token_tables", what, build(out))


# (bytes per block, values per block, offsets of its fp16 scales) by ggml type id
SCALES = {1: (2, 1, [0]), 2: (18, 32, [0]), 3: (20, 32, [0, 2]), 6: (22, 32, [0]), 7: (24, 32, [0, 2]),
          8: (34, 32, [0]), 10: (84, 256, [80, 82]), 11: (110, 256, [108]), 12: (144, 256, [0, 2]),
          13: (176, 256, [0, 2]), 14: (210, 256, [208])}
POISON_F16 = {"nan": b"\x00\x7e", "inf": b"\x00\x7c", "-inf": b"\x00\xfc", "max": b"\xff\x7b"}
POISON_F32 = {"nan": struct.pack("<f", math.nan), "inf": struct.pack("<f", math.inf),
              "-inf": struct.pack("<f", -math.inf), "max": struct.pack("<f", 3.4e38)}


def poisoned_data(layout: Layout, rng: random.Random, data_size: int) -> Mutant:
    header = build(layout)
    hot = [t for t in layout.tensors if t.ggml_type in SCALES or t.ggml_type == 0]
    t = rng.choice(hot)
    kind = rng.choice(list(POISON_F16))
    n = 1
    for d in t.dims:
        n *= d
    patches = []
    for _ in range(rng.choice([1, 1, 4, 64])):
        if t.ggml_type == 0:
            pos = t.offset + 4 * rng.randrange(n)
            patches.append((pos, POISON_F32[kind]))
        else:
            block_bytes, block_values, scales = SCALES[t.ggml_type]
            pos = t.offset + block_bytes * rng.randrange(n // block_values) + rng.choice(scales)
            patches.append((pos, POISON_F16[kind]))
    return Mutant("poisoned_data", f"tensor {t.name.decode()}: {len(patches)} scale(s) -> {kind}", header,
                  data_patches=[p for p in patches if p[0] + len(p[1]) <= data_size])


CATEGORIES = {
    "truncation": truncation, "bitflips": bitflips, "huge_counts": huge_counts, "huge_dims": huge_dims,
    "metadata_types": metadata_types, "metadata_values": metadata_values, "tensor_types": tensor_types,
    "offsets": offsets, "alignment": alignment, "token_tables": token_tables, "poisoned_data": poisoned_data,
}


def mutant(layout: Layout, category: str, seed: int, data_size: int) -> Mutant:
    """Mutant number `seed` of a category (the same seed always gives the same mutant)."""
    rng = random.Random(f"{category}:{seed}")
    return CATEGORIES[category](layout, rng, data_size)
