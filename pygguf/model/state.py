"""A saved state: one sequence's tokens and their KV cache, as bytes or a file (llama.cpp's
session file, for --prompt-cache and Llama.save_state / load_state).

Layout, little-endian:

    header   magic b"PGGUFKV\\0", version, the model's identity (sha256 of its GGUF header, metadata
             and tensor table: Model.identity), n_ctx, type_k, type_v (ggml ids), the Hadamard
             rotation flag, the RoPE base and frequency scale the keys were rotated with, n_layer,
             n_head_kv, head_dim, n_tokens, kv_bytes
    tokens   (n_tokens,) int32
    kv       kv_bytes: Model.kv_read(seq, n_tokens), the cache's rows as it holds them
    checksum sha256 of everything above

Nothing in a file is trusted: its length must be what its header says, the checksum must match,
then every setting must be this model's (a difference is named), the KV size must be the one
this model computes for n_tokens, and every token must be in the vocabulary; only then are
the bytes copied into the cache (whose C side checks the size again). Files are written
atomically: a temporary file in the same directory, fsynced, then renamed over the old one.
"""
from __future__ import annotations

import hashlib
import struct
from dataclasses import dataclass

import numpy as np

from pygguf.atomic_file import replaced
from pygguf.errors import StateError, StateMismatch
from pygguf.gguf.types import by_id, by_name

__all__ = ["encode", "decode", "restore", "write_file", "read_file", "SavedState"]

MAGIC = b"PGGUFKV\0"
VERSION = 1
_HEADER = struct.Struct("<8sI32sIIIIddIIIIQ")
_CHECKSUM = hashlib.sha256().digest_size


@dataclass(frozen=True)
class _Settings:
    """What must be equal between the saving and the loading model, each with its user-facing name."""
    identity: bytes
    n_ctx: int
    type_k: int
    type_v: int
    rotation: int
    rope_base: float
    rope_freq_scale: float
    n_layer: int
    n_head_kv: int
    head_dim: int

    @classmethod
    def of(cls, model) -> _Settings:
        c = model.config
        return cls(model.identity, model.n_ctx, by_name(model.type_k).ggml_id, by_name(model.type_v).ggml_id,
                   int(model.attn_rotation), float(c.rope_base), float(c.rope_freq_scale),
                   c.n_layer, c.n_head_kv, c.head_dim)


@dataclass(frozen=True)
class SavedState:
    """A checked state: its tokens and the KV bytes of positions [0, len(tokens))."""
    tokens: list[int]
    kv: memoryview


def encode_parts(model, seq: int, tokens: list[int]) -> list[bytes]:
    """The state of sequence seq, which holds `tokens` at positions 0.., as the pieces of one file
    (so a large cache is never copied into a second buffer): header, tokens, kv, checksum."""
    s = _Settings.of(model)
    n = len(tokens)
    kv = model.kv_read(seq, n)
    header = _HEADER.pack(MAGIC, VERSION, s.identity, s.n_ctx, s.type_k, s.type_v, s.rotation, s.rope_base,
                          s.rope_freq_scale, s.n_layer, s.n_head_kv, s.head_dim, n, len(kv))
    token_bytes = np.asarray(tokens, dtype="<i4").tobytes()
    h = hashlib.sha256()
    for part in (header, token_bytes, kv):
        h.update(part)
    return [header, token_bytes, kv, h.digest()]


def encode(model, seq: int, tokens: list[int]) -> bytes:
    return b"".join(encode_parts(model, seq, tokens))


def decode(model, data, source: str = "state") -> SavedState:
    """data checked against model (see the module's docstring); StateError (corrupt, truncated) or
    StateMismatch (another model or other settings) names `source` and what is wrong."""
    view = memoryview(data).cast("B")
    if 0 < view.nbytes < len(MAGIC) and MAGIC.startswith(bytes(view)):
        raise StateError(f"{source}: truncated ({view.nbytes} bytes)")
    if view.nbytes < len(MAGIC) or bytes(view[:len(MAGIC)]) != MAGIC:
        raise StateError(f"{source}: not a pygguf state file")
    if view.nbytes < _HEADER.size + _CHECKSUM:
        raise StateError(f"{source}: truncated ({view.nbytes} bytes, the header alone needs {_HEADER.size + _CHECKSUM})")
    (_, version, identity, n_ctx, type_k, type_v, rotation, rope_base, rope_freq_scale,
     n_layer, n_head_kv, head_dim, n_tokens, kv_bytes) = _HEADER.unpack_from(view)
    if version != VERSION:
        raise StateError(f"{source}: state format version {version}, this pygguf reads version {VERSION}")
    expected = _HEADER.size + 4 * n_tokens + kv_bytes + _CHECKSUM
    if view.nbytes != expected:
        what = "truncated" if view.nbytes < expected else "has trailing bytes"
        raise StateError(f"{source}: {what} ({view.nbytes} bytes, its header says {expected})")
    body = view[:-_CHECKSUM]
    if hashlib.sha256(body).digest() != bytes(view[-_CHECKSUM:]):
        raise StateError(f"{source}: corrupt (checksum mismatch)")
    saved = _Settings(identity, n_ctx, type_k, type_v, rotation, rope_base, rope_freq_scale, n_layer, n_head_kv, head_dim)
    _check_settings(saved, _Settings.of(model), source)
    if n_tokens > model.n_ctx:
        raise StateError(f"{source}: {n_tokens} tokens do not fit the context of {model.n_ctx}")
    if kv_bytes != model.kv_state_bytes(n_tokens):
        raise StateError(f"{source}: {kv_bytes} KV bytes for {n_tokens} tokens, this model's cache needs "
                         f"{model.kv_state_bytes(n_tokens)}")
    tokens = np.frombuffer(body, dtype="<i4", count=n_tokens, offset=_HEADER.size)
    if n_tokens and (tokens.min() < 0 or tokens.max() >= model.config.n_vocab):
        raise StateError(f"{source}: a token id outside the vocabulary (0..{model.config.n_vocab - 1})")
    return SavedState([int(t) for t in tokens], body[_HEADER.size + 4 * n_tokens:])


def _type_name(ggml_id: int) -> str:
    try:
        return by_id(ggml_id).name.lower()
    except ValueError:
        return f"type {ggml_id}"


def _check_settings(saved: _Settings, ours: _Settings, source: str) -> None:
    """StateMismatch naming the first setting that differs (the model first: it explains the rest)."""
    if saved.identity != ours.identity:
        raise StateMismatch(f"{source}: saved by another model (model sha256 {saved.identity.hex()[:16]}..., "
                            f"this model's {ours.identity.hex()[:16]}...)")
    differences = [
        ("context size -c", saved.n_ctx, ours.n_ctx, str),
        ("K cache type -ctk", saved.type_k, ours.type_k, _type_name),
        ("V cache type -ctv", saved.type_v, ours.type_v, _type_name),
        ("Hadamard rotation of the cache (LLAMA_ATTN_ROT_DISABLE)", saved.rotation, ours.rotation,
         lambda r: "on" if r else "off"),
        ("RoPE frequency base --rope-freq-base", saved.rope_base, ours.rope_base, "{:g}".format),
        ("RoPE frequency scale --rope-freq-scale", saved.rope_freq_scale, ours.rope_freq_scale, "{:g}".format),
        ("KV shape (n_layer, n_head_kv, head_dim)", (saved.n_layer, saved.n_head_kv, saved.head_dim),
         (ours.n_layer, ours.n_head_kv, ours.head_dim), str),
    ]
    for what, theirs, mine, show in differences:
        if theirs != mine:
            raise StateMismatch(f"{source}: saved with {what} {show(theirs)}, this run has {show(mine)}")


def restore(model, seq: int, data, source: str = "state") -> list[int]:
    """Checks data (decode) and puts its KV bytes into sequence seq; returns its tokens, which
    now fill positions 0.. of that sequence."""
    saved = decode(model, data, source)
    model.kv_write(seq, saved.kv, len(saved.tokens))
    return saved.tokens


# ---- files ------------------------------------------------------------------------------------

def read_file(path) -> bytes:
    with open(path, "rb") as f:
        return f.read()


def write_file(path, parts) -> None:
    """The parts written to path atomically (pygguf.atomic_file): a kill leaves the old file or
    the new one, never half of one; on any failure path is untouched."""
    with replaced(path) as f:
        for part in parts:
            f.write(part)
