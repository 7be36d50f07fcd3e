"""A llama model ready to run: weights mapped from a GGUF file, the forward pass and KV cache in C.

One primitive runs it: `decode(batch)` (llama.cpp's llama_decode), one C call per batch of up to
n_batch tokens; the whole forward runs inside the C thread pool. A batch may mix tokens of
several sequences (batched decoding: one weight read serves them all). The same tokens give
bit-identical logits with any thread count, any n_batch and any batch company.

The KV cache holds n_seq sequences of n_ctx positions each, K and V each F16, q8_0 or q4_0 (type_k,
type_v: llama.cpp's -ctk/-ctv; kv_cache.py sizes it); a quantized cache holds k and v rotated by a
Walsh-Hadamard matrix, as llama.cpp's does (attn_rotation, LLAMA_ATTN_ROT_DISABLE). The model does
not track what each sequence holds: its caller (pygguf.generation.Engine) does, and asks for kv_shift / kv_copy.
"""
from __future__ import annotations

import hashlib
import logging
import os
from dataclasses import dataclass

import numpy as np

from pygguf._native import ffi, lib
from pygguf.errors import ModelError
from pygguf.gguf.types import QuantType, by_name
from pygguf.model import binding, kernels, kv_cache, memory_lock, relocate
from pygguf.model.batch import Batch
from pygguf.model.config import MAX_CONTEXT, Config, check_layer_count
from pygguf.model.context_args import check_context_args
from pygguf.model.kv_cache import CacheShape

__all__ = ["Model", "TensorRef"]

log = logging.getLogger("pygguf")

CACHE_TYPE_IDS = {name: by_name(name).ggml_id for name in kv_cache.CACHE_TYPES}   # the C side takes ggml ids
ALIGN = 32                    # tensor alignment inside the buffer from_tensors builds
MAX_SEQUENCES = 256           # the C cache's limit on n_seq


@dataclass(frozen=True)
class TensorRef:
    """Where one tensor's bytes lie in the model's buffer."""
    offset: int
    qtype: QuantType
    shape: tuple
    nbytes: int


def context_for(config: Config, n_ctx: int | None, n_seq: int, cache: CacheShape, weights: int) -> int:
    """The context to allocate: an explicit n_ctx whose cache fits (else ModelError, before any
    allocation), or for None / 0 the training context capped to the memory available
    (kv_cache.fit_context, which says so on stderr)."""
    available = kv_cache.available_memory()
    if n_ctx:
        kv_cache.check_context(int(n_ctx), n_seq, cache.bytes_per_position(), weights, available, cache.types())
        return int(n_ctx)
    n_ctx_train = config.n_ctx_train if config.n_ctx_train > 0 else 4096
    if n_ctx_train > MAX_CONTEXT:
        log.warning(f"the model's context_length {n_ctx_train} is beyond what pygguf allocates: using at most {MAX_CONTEXT}")
        n_ctx_train = MAX_CONTEXT
    chosen, note = kv_cache.fit_context(n_ctx_train, cache.bytes_per_position() * n_seq, weights, available)
    if note:
        log.warning(note)
    return chosen


_C_ERRORS = {
    lib.PG_EBADTYPE: "unsupported tensor type",
    lib.PG_EBADSIZE: "shape or extent does not fit the file",
    lib.PG_ENOKERNEL: "no kernel for its type in this build",
    lib.PG_ENOMEM: "out of memory",
    lib.PG_EBADARG: "bad argument",
}


class Model:
    """A loaded model. Use Model.load(path); Model.from_tensors builds one from arrays (tests)."""

    _model = None
    _identity = None
    _mapping = None
    _locked = None
    _weights = None

    def __init__(self, config: Config, metadata: dict, buffer, tensors: dict[str, TensorRef], *,
                 n_ctx: int | None = None, n_threads: int = 2, n_batch: int = 512, n_seq: int = 1, repack: bool = True,
                 type_k: str | int | None = "f16", type_v: str | int | None = "f16",
                 attn_rotation: bool | None = None, _mapping=None, _data_offset: int | None = None,
                 _file_backed: bool | None = None, _locked=None):
        self.config, self.metadata = config, metadata
        self._buffer, self._mapping = buffer, _mapping        # kept alive while C points into them
        self._data_offset = _data_offset                      # where a GGUF file's tensor data starts
        # a shared mapping of the file: the pages under repacked matrices can be handed back
        self._file_backed = _mapping is not None if _file_backed is None else _file_backed
        self._locked = _locked                                # memory_lock.LockedRange, or None
        self._tokenizer = None
        if n_ctx is not None and n_ctx < 0:
            raise ModelError(f"n_ctx must be positive (or 0: from the model), got {n_ctx}")
        if n_batch <= 0:
            raise ModelError(f"n_batch must be positive, got {n_batch}")
        if not 1 <= n_seq <= MAX_SEQUENCES:
            raise ModelError(f"n_seq must be 1..{MAX_SEQUENCES}, got {n_seq}")
        self.n_seq = int(n_seq)
        self.type_k, self.type_v = kv_cache.cache_type(type_k, "type_k"), kv_cache.cache_type(type_v, "type_v")
        kv_cache.check_head_dim(self.type_k, config.head_dim, "type_k")
        kv_cache.check_head_dim(self.type_v, config.head_dim, "type_v")
        # llama.cpp's Hadamard rotation of a quantized cache; None: on unless LLAMA_ATTN_ROT_DISABLE
        self.attn_rotation = (not kv_cache.rotation_disabled(os.environ) if attn_rotation is None
                              else bool(attn_rotation))
        self.cache = CacheShape(config.n_layer, config.n_head_kv, config.head_dim, self.type_k, self.type_v)
        self.n_ctx = context_for(config, n_ctx, self.n_seq, self.cache, sum(t.nbytes for t in tensors.values()))
        self.repack = bool(repack)      # x86: Q4_0/Q4_1/Q8_0/Q4_K/Q5_K matrices repacked once for faster kernels
        self.n_batch = min(int(n_batch), self.n_ctx * self.n_seq, MAX_CONTEXT)
        tensors = self._aligned(tensors)
        self.tensors = tensors
        table = binding.bind(config, tensors, self.n_ctx)
        descs = ffi.new("pg_tensor_desc[]", len(table))
        for desc, slot in zip(descs, table):
            if slot is None:
                desc.ne0 = 0                                # absent: tied output, no rope factors, no bias...
                continue
            desc.offset, desc.type, desc.ne0, desc.ne1 = slot.offset, slot.qtype.ggml_id, slot.n, slot.rows
        self.tied_output = table[2] is None
        self._swa_layers = ffi.new("uint8_t[]", [int(b) for b in config.swa_layers] or [0])

        self.n_threads = n_threads
        self._rows = np.zeros((1, config.n_vocab), dtype=np.float32)   # decode's logits, grown on demand
        self._rows_ptr = ffi.from_buffer("float[]", self._rows)
        params = self._params()         # before any view of the buffer exists (see _new_c_model)
        self._pool = kernels.ThreadPool(n_threads)
        out, bad = ffi.new("pg_model **"), ffi.new("int64_t *")
        rc = self._new_c_model(params, self._weights, descs, len(table), out, bad)
        if rc != lib.PG_OK:
            self._pool.close()
            what = _C_ERRORS.get(rc, f"error {rc}")
            if bad[0] >= 0 and table[bad[0]] is not None:
                slot = table[bad[0]]
                raise ModelError(f"tensor {slot.name} ({slot.qtype.name}): {what}")
            if rc == lib.PG_ENOMEM:
                raise ModelError(f"out of memory for n_ctx={self.n_ctx}, n_seq={self.n_seq}, n_batch={self.n_batch} "
                                 f"(KV cache {self.cache.bytes(self.n_ctx, self.n_seq) / 2**30:.2f} GiB)")
            raise ModelError(f"model rejected by the C loader: {what} ({config.arch}, n_ctx={self.n_ctx}, "
                             f"n_seq={self.n_seq}, n_batch={self.n_batch})")
        self._model = out[0]

    def _aligned(self, tensors: dict) -> dict:
        """tensors, with self._weights the buffer C reads them from: the model's buffer itself,
        or (a file with general.alignment = 1 putting some at odd offsets) a copy of them all
        where C can read their blocks (relocate.py), whose pages are no file's to hand back"""
        self._weights = self._buffer
        odd = relocate.misaligned(np.frombuffer(self._buffer, dtype=np.uint8).ctypes.data, tensors)
        if not odd:
            return tensors
        self._weights, tensors = relocate.aligned_copy(self._buffer, tensors, ALIGN)
        self._file_backed = False
        log.info("%d of %d tensors (%s first) lie at addresses their blocks cannot be read at "
                 "(general.alignment = %s): copied once into %.1f MiB", len(odd), len(tensors), odd[0],
                 self.metadata.get("general.alignment", "unset"), self._weights.nbytes / 2**20)
        return tensors

    def _new_c_model(self, params, buffer, descs, n_descs: int, out, bad) -> int:
        """pg_model_new over the buffer's bytes. The numpy view that gives C the address is
        dropped whatever happens: a view left in a frame of an exception's traceback keeps the
        mmap exported, and closing the mapping on the error path then raised BufferError over the
        real error."""
        base = np.frombuffer(buffer, dtype=np.uint8)
        try:
            return lib.pg_model_new(params, ffi.cast("void *", base.ctypes.data), base.nbytes, descs, n_descs,
                                    self._pool.handle, out, bad)
        finally:
            del base

    def _params(self):
        c = self.config
        p = ffi.new("pg_model_params *")
        p.n_vocab, p.n_embd, p.n_layer, p.n_head, p.n_head_kv = c.n_vocab, c.n_embd, c.n_layer, c.n_head, c.n_head_kv
        p.head_dim, p.n_ff, p.n_rot, p.n_ctx, p.n_batch = c.head_dim, c.n_ff, c.n_rot, self.n_ctx, self.n_batch
        p.n_seq = self.n_seq
        p.type_k, p.type_v = CACHE_TYPE_IDS[self.type_k], CACHE_TYPE_IDS[self.type_v]
        p.gguf_layout_only = int(not self.repack)
        p.attn_rot_disable = int(not self.attn_rotation)
        p.map_is_file = int(self._file_backed)           # Model.load's read-only mmap of the file
        p.rms_eps, p.rope_base, p.rope_freq_scale = c.rms_eps, c.rope_base, c.rope_freq_scale
        p.rope_yarn = int(c.rope_scaling == "yarn")
        p.yarn_n_ctx_orig, p.yarn_ext_factor, p.yarn_attn_factor = c.yarn_orig_ctx, 1.0, c.yarn_attn_factor
        p.yarn_beta_fast, p.yarn_beta_slow = c.yarn_beta_fast, c.yarn_beta_slow
        p.rope_neox, p.embd_scale, p.attn_scale = int(c.rope_neox), c.embd_scale, c.attn_scale
        p.attn_softcap, p.final_softcap, p.ffn_gelu = c.attn_softcap, c.final_softcap, int(c.ffn_gelu)
        p.n_swa, p.swa_layers = c.n_swa, self._swa_layers
        p.rope_base_swa, p.rope_freq_scale_swa = c.rope_base_swa, c.rope_freq_scale_swa
        p.n_expert, p.n_expert_used, p.n_ff_exp, p.moe_norm_weights = c.n_expert, c.n_expert_used, c.n_ff_exp, 1
        return p

    # ---- construction ----------------------------------------------------------------------

    @classmethod
    def load(cls, path, n_ctx=None, n_threads=2, n_batch=512, rope_freq_base=None, rope_freq_scale=None,
             n_seq=1, repack=True, type_k="f16", type_v="f16", attn_rotation=None, use_mmap=True,
             use_mlock=False) -> "Model":
        """Maps a GGUF file (use_mmap=False: reads it into memory) and builds the model; the
        tokenizer is built on first use. n_ctx None or 0: the training context, capped to fit in
        memory; type_k, type_v: the KV cache types (f16, q8_0, q4_0, or their ggml ids);
        attn_rotation: llama.cpp's Hadamard rotation of a quantized cache (None: on unless
        LLAMA_ATTN_ROT_DISABLE is set, as llama.cpp); use_mlock: lock the bytes in RAM
        (memory_lock.py: a warning, not an error, when the system refuses)."""
        from pygguf.gguf import GGUFError, GGUFReader  # imported here so a model can be built without it
        from pygguf.gguf.file_bytes import file_bytes

        check_context_args(n_ctx=n_ctx, n_batch=n_batch, n_threads=n_threads, rope_freq_base=rope_freq_base,
                           rope_freq_scale=rope_freq_scale)
        path = os.fspath(path)
        try:
            mapping = file_bytes(path, use_mmap)
        except GGUFError as e:
            raise ModelError(str(e)) from e
        try:
            try:
                with GGUFReader(path, data=mapping) as reader:
                    metadata = dict(reader.metadata)
                    data_offset = int(reader.data_offset)
                    tensors = {t.name: TensorRef(int(t.offset), t.qtype, tuple(t.shape), int(t.nbytes))
                               for t in reader.tensors.values()}
            except GGUFError as e:
                raise ModelError(str(e)) from e
            embd = tensors.get("token_embd.weight")
            config = Config.from_metadata(metadata, embd.shape[1] if embd and len(embd.shape) > 1 else None)
            check_layer_count(config, tensors)
            if rope_freq_base:
                config.rope_base = float(rope_freq_base)
            if rope_freq_scale:
                config.rope_freq_scale = float(rope_freq_scale)
            # locked before the C loader repacks, which unlocks what it hands back
            locked = memory_lock.lock(mapping, "model") if use_mlock else None
            return cls(config, metadata, mapping, tensors, n_ctx=n_ctx, n_threads=n_threads, n_batch=n_batch,
                       n_seq=n_seq, repack=repack, type_k=type_k, type_v=type_v, attn_rotation=attn_rotation,
                       _mapping=mapping, _data_offset=data_offset, _file_backed=bool(use_mmap), _locked=locked)
        except BaseException:
            mapping.close()
            raise

    @classmethod
    def from_tensors(cls, config: Config, tensors: dict[str, tuple[np.ndarray, QuantType, tuple]],
                     metadata: dict | None = None, **kwargs) -> "Model":
        """Builds a model from raw tensors {name: (encoded bytes or float32 array, type, ggml shape)},
        packed into one aligned buffer as a GGUF file would hold them."""
        offsets, size = {}, 0
        for name, (raw, qtype, shape) in tensors.items():
            offsets[name] = size
            size += -(-np.asarray(raw).nbytes // ALIGN) * ALIGN
        buffer = np.zeros(max(size, ALIGN), dtype=np.uint8)
        refs = {}
        for name, (raw, qtype, shape) in tensors.items():
            raw = np.ascontiguousarray(raw).view(np.uint8).reshape(-1)
            buffer[offsets[name]:offsets[name] + raw.size] = raw
            refs[name] = TensorRef(offsets[name], qtype, tuple(shape), raw.size)
        return cls(config, dict(metadata or {}), buffer, refs, **kwargs)

    @property
    def identity(self) -> bytes:
        """sha256 of what makes this model this model, computed once: for a GGUF file, every byte
        before its tensor data (header, metadata, tensor table); for a model built from arrays,
        its tensor table and buffer. A saved KV state (pygguf/model/state.py) records it."""
        if self._identity is None:
            h = hashlib.sha256()
            if self._data_offset is not None:
                h.update(memoryview(self._buffer)[:self._data_offset])
            else:
                h.update(repr(sorted((n, t.offset, t.qtype.name, t.shape) for n, t in self.tensors.items())).encode())
                h.update(memoryview(self._buffer).cast("B"))
            self._identity = h.digest()
        return self._identity

    @property
    def tokenizer(self):
        if self._tokenizer is None:
            from pygguf.tokenizer import Tokenizer
            self._tokenizer = Tokenizer.from_metadata(self.metadata)
        return self._tokenizer

    # ---- running -----------------------------------------------------------------------------

    def _check_open(self):
        if self._model is None:
            raise ModelError("model is closed")

    def _refuse_token(self, token: int):
        raise ModelError(f"token id {token} is outside the vocabulary (0..{self.config.n_vocab - 1})")

    def decode(self, batch: Batch) -> np.ndarray:
        """One forward pass over batch (see pygguf.model.batch): fills the KV cache at each
        token's position and returns (n wanted, n_vocab) logits, one row per token whose logits
        were wanted, in batch order: a view reused by the next call."""
        self._check_open()
        n = batch.n
        if not 0 < n <= self.n_batch:
            raise ModelError(f"decode of {n} tokens: a batch holds 1..n_batch={self.n_batch}")
        if n == 1:                              # the generation step: scalar checks, no numpy reductions
            self._check_token(int(batch.tokens[0]), int(batch.pos[0]), int(batch.seq[0]))
            n_out = int(batch.want[0])
        else:
            self._check_batch(batch.tokens[:n], batch.pos[:n], batch.seq[:n])
            n_out = batch.n_wanted
        if self._rows.shape[0] < n_out:
            self._rows = np.empty((max(n_out, 2 * self._rows.shape[0]), self.config.n_vocab), dtype=np.float32)
            self._rows_ptr = ffi.from_buffer("float[]", self._rows)
        rc = lib.pg_model_decode(self._model, n, batch.c_tokens, batch.c_pos, batch.c_seq, batch.c_want,
                                 self._rows_ptr if n_out else ffi.NULL)
        kernels.check(rc, "decode")
        return self._rows[:n_out]

    # ---- the KV cache ------------------------------------------------------------------------

    def _check_token(self, token: int, pos: int, seq: int) -> None:
        if not 0 <= token < self.config.n_vocab:
            self._refuse_token(token)
        if not 0 <= pos < self.n_ctx:
            raise ModelError(f"decode position outside the context (0..{self.n_ctx - 1}): {pos}")
        if not 0 <= seq < self.n_seq:
            raise ModelError(f"decode sequence id outside 0..{self.n_seq - 1}: {seq}")

    def _check_batch(self, tokens: np.ndarray, pos: np.ndarray, seq: np.ndarray) -> None:
        """min/max over each (n,) column: no temporary arrays"""
        if tokens.min() < 0 or tokens.max() >= self.config.n_vocab:
            self._refuse_token(int(tokens.min() if tokens.min() < 0 else tokens.max()))
        if pos.min() < 0 or pos.max() >= self.n_ctx:
            raise ModelError(f"decode position outside the context (0..{self.n_ctx - 1}): {pos.min()}..{pos.max()}")
        if seq.min() < 0 or seq.max() >= self.n_seq:
            raise ModelError(f"decode sequence id outside 0..{self.n_seq - 1}: {seq.min()}..{seq.max()}")

    def kv_shift(self, seq: int, n_past: int, keep: int, discard: int) -> None:
        """Context shift of sequence seq, which holds n_past positions: drops positions
        [keep, keep + discard), moves the later ones down and re-rotates their keys by -discard
        positions (nothing is recomputed)."""
        self._check_open()
        self._check_seq(seq)
        if not 0 <= n_past <= self.n_ctx:
            raise ModelError(f"shift of sequence {seq} needs its length (0..{self.n_ctx}), got {n_past}")
        if keep < 0 or discard <= 0 or keep + discard > n_past:
            raise ModelError(f"cannot shift keep={keep} discard={discard}: the cache holds {n_past} positions")
        kernels.check(lib.pg_model_kv_shift(self._model, seq, n_past, keep, discard), "context shift")

    def kv_copy(self, src: int, dst: int, n: int) -> None:
        """Positions [0, n) of sequence src copied to sequence dst: a prompt prefix they share,
        computed once."""
        self._check_open()
        self._check_seq(src)
        self._check_seq(dst)
        if not 0 <= n <= self.n_ctx:
            raise ModelError(f"cannot copy {n} positions: n_ctx={self.n_ctx}")
        kernels.check(lib.pg_model_kv_copy(self._model, src, dst, n), "copy KV cache")

    def kv_state_bytes(self, n: int) -> int:
        """The bytes kv_read gives for n positions (the C side's own count must agree)."""
        return self.cache.bytes_per_position() * int(n)

    def kv_read(self, seq: int, n: int) -> bytearray:
        """Positions [0, n) of sequence seq as bytes: every (layer, KV head)'s K rows, then their V
        rows, as the cache holds them (for a saved state; a 7B model's 1,500 positions are 750 MiB
        at F16, so they are not copied a second time into a bytes object)."""
        self._check_state_args(seq, n)
        out = bytearray(self.kv_state_bytes(n))
        kernels.check(lib.pg_model_kv_export(self._model, seq, n, ffi.from_buffer(out), len(out)), "read KV cache")
        return out

    def kv_write(self, seq: int, data, n: int) -> None:
        """Bytes from kv_read(seq', n) put back into positions [0, n) of sequence seq; their length
        must be this model's count for n positions, which the C side checks again."""
        self._check_state_args(seq, n)
        view = memoryview(data).cast("B")
        if view.nbytes != self.kv_state_bytes(n):
            raise ModelError(f"KV state of {view.nbytes} bytes for {n} positions: this model's cache needs "
                             f"{self.kv_state_bytes(n)}")
        kernels.check(lib.pg_model_kv_import(self._model, seq, n, ffi.from_buffer(view), view.nbytes), "write KV cache")

    def _check_state_args(self, seq: int, n: int) -> None:
        self._check_open()
        self._check_seq(seq)
        if not 0 <= n <= self.n_ctx:
            raise ModelError(f"KV state of {n} positions: the context holds 0..{self.n_ctx}")
        size = ffi.new("uint64_t *")
        kernels.check(lib.pg_model_kv_export_bytes(self._model, n, size), "size of KV state")
        if size[0] != self.kv_state_bytes(n):         # the Python and C layouts disagree: never copy
            raise ModelError(f"KV state size mismatch: C counts {size[0]} bytes, Python {self.kv_state_bytes(n)}")

    def _check_seq(self, seq: int) -> None:
        if not 0 <= seq < self.n_seq:
            raise ModelError(f"sequence id {seq} outside 0..{self.n_seq - 1}")

    # ---- lifetime ----------------------------------------------------------------------------

    def close(self) -> None:
        if self._model is not None:
            lib.pg_model_free(self._model)
            self._model = None
            self._pool.close()
        if self._locked is not None:
            self._locked.unlock()
            self._locked = None
        self._weights = None
        if self._mapping is not None:
            self._buffer = None
            self._mapping.close()
            self._mapping = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __del__(self):
        self.close()
