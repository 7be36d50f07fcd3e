"""The q8_0 and q4_0 KV caches (llama.cpp's -ctk/-ctv) in the whole model: the forward close to
the F16 cache's and still bit-identical across threads and batch sizes, the cache holding
quantized rows (Hadamard-rotated, as llama.cpp's), the context shift (keys dequantized,
un-rotated, RoPE'd, rotated and requantized) and the prefix copy, and the refusals."""
import numpy as np
import pytest

import reference_forward as ref
from model_factory import encode, random_weights, tiny_config
from model_runner import Runner, read_kv
from pygguf._native import ffi, lib
from pygguf.errors import ModelError
from pygguf.gguf.types import by_name
from pygguf.model import Model
from pygguf.model.batch import Batch

TOKENS = [5, 17, 250, 3, 99, 42, 7, 7, 180, 0, 299, 12, 64, 128, 31, 200, 77, 1, 9, 150]
CACHES = [("q8_0", "q8_0"), ("q4_0", "q4_0"), ("q8_0", "f16"), ("f16", "q8_0"), ("q8_0", "q4_0")]

# max |logits - F16-cache logits| in units of the logits' standard deviation. The cache rounds K
# and V to 8 (q8_0: step amax/127 per 32 values, about 0.3% of a block's largest value) or 4 bits
# (q4_0: step amax/8, about 6%), and the scores also round q to Q8_0 (llama.cpp does the same);
# these errors are unbiased and average over head_dim and the positions, so the logits move by a
# fraction of those steps. Measured on this random model (20 tokens, 2 layers, weights of unit
# variance, so q4_0's steps are large): q8_0 K 0.030, q8_0 V 0.018, both 0.034; q4_0 both 0.46,
# q8_0 K with q4_0 V 0.30. The bounds leave 1.5-2x room; what the rounding should give exactly is
# test_forward_is_the_float64_forward_over_the_rounded_cache's.
TOLERANCE = {"q8_0": 0.06, "q4_0": 0.8, "f16": 0.0}


def tolerance(type_k, type_v):
    return max(TOLERANCE[type_k], TOLERANCE[type_v])


@pytest.fixture(scope="module")
def tiny():
    config = tiny_config()                                   # head_dim 64: two blocks per row
    tensors, exact = encode(random_weights(config, seed=11), by_name("F32"), config)
    return config, tensors, exact


def build(tiny, type_k="f16", type_v="f16", **kwargs):
    config, tensors, _ = tiny
    kwargs.setdefault("n_ctx", 64)
    return Model.from_tensors(config, tensors, type_k=type_k, type_v=type_v, **kwargs)


def logits_of(model, tokens=TOKENS):
    with model:
        return Runner(model).eval_all(tokens)


@pytest.fixture(scope="module")
def f16_logits(tiny):
    return logits_of(build(tiny))


@pytest.mark.parametrize("type_k,type_v", CACHES)
def test_forward_is_close_to_the_f16_cache_and_deterministic(tiny, f16_logits, type_k, type_v):
    runs = {}
    for threads, n_batch in ((1, 512), (2, 512), (2, 3), (1, 1)):
        runs[threads, n_batch] = logits_of(build(tiny, type_k, type_v, n_threads=threads, n_batch=n_batch))
    first = runs[1, 512]
    for key, logits in runs.items():
        assert np.array_equal(logits, first), key
    err = np.abs(first - f16_logits).max() / f16_logits.std()
    assert err <= tolerance(type_k, type_v), err
    assert type_k == type_v == "f16" or err > 0          # the cache really is another type


def round_q8_0(a):
    """x -> d * round(x * 127 / amax) per 32 values, ties to even (the run-time Q8_0 rounding)"""
    b = a.reshape(-1, 32)
    amax = np.abs(b).max(axis=1, keepdims=True)
    d = (amax / 127).astype(np.float16).astype(np.float64)
    q = np.round(b * np.where(amax > 0, 127 / np.where(amax > 0, amax, 1), 0))
    return (q * d).reshape(a.shape)


def round_q4_0(a):
    """x -> d * (q - 8), d = (signed max) / -8, q = min(15, trunc(x / d + 8.5)) per 32 values"""
    b = a.reshape(-1, 32)
    smax = np.take_along_axis(b, np.abs(b).argmax(axis=1)[:, None], axis=1)
    d = (smax / -8).astype(np.float16).astype(np.float64)
    q = np.minimum(15, np.trunc(b * np.where(d != 0, 1 / np.where(d != 0, smax / -8, 1), 0) + 8.5))
    return ((q - 8) * d).reshape(a.shape)


ROUNDING = {"q8_0": round_q8_0, "q4_0": round_q4_0}


def hadamard(n):
    """the orthonormal Walsh-Hadamard matrix of order n (Sylvester's: H_2n = [[H, H], [H, -H]])"""
    h = np.ones((1, 1))
    while h.shape[0] < n:
        h = np.block([[h, h], [h, -h]])
    return h / np.sqrt(n)


def rotate(a, block):
    """a [..., hd] with each run of `block` values multiplied by H_block (its own inverse)"""
    runs = a.reshape(*a.shape[:-1], -1, block)
    return (runs @ hadamard(block)).reshape(a.shape)


def rounded_in_rotation(rounding, block):
    """x -> H round(H x): what a rotated cache stores, seen from the unrotated space where the
    float64 forward works (q.k and p V are unchanged by an orthonormal H, so the forward needs no
    rotation of its own)"""
    return lambda a: rotate(rounding(rotate(a, block)), block)


def rotation_blocks(model):
    k, v = ffi.new("int32_t *"), ffi.new("int32_t *")
    assert lib.pg_model_rotation(model._model, k, v) == lib.PG_OK
    return k[0], v[0]


@pytest.mark.parametrize("rotation", [True, False], ids=["rotated", "unrotated"])
@pytest.mark.parametrize("type_k,type_v", CACHES)
def test_forward_is_the_float64_forward_over_the_rounded_cache(tiny, type_k, type_v, rotation):
    """what the C forward computes with a quantized cache is the float64 forward whose stored
    keys, values (and, for a quantized K, queries: llama.cpp's Q8_0 dot) are rounded the same way,
    in the Hadamard rotation (head_dim 64: blocks of 64 for K and V) when it is on.
    Measured, rotated or not: 1e-6 std when K and V are both quantized, 3-6e-3 std when one side
    is F16, whose rounding the reference leaves out (the F16 cache is 1.2e-3 std from the unrounded
    float64 forward); a value on a rounding boundary may round one step apart in float32 and
    float64, and the rotation in float32 (~1e-7 relative) only changes which values fall on one.
    1e-2 std is 3 to 45 times below how far the rounding itself moves the logits (TOLERANCE's
    measurements), so a rotation left out or applied twice fails."""
    config, _, exact = tiny
    place = (lambda f: rounded_in_rotation(f, 64)) if rotation else (lambda f: f)
    rounding = {}
    if type_k != "f16":
        rounding.update(q=place(round_q8_0), k=place(ROUNDING[type_k]))
    if type_v != "f16":
        rounding["v"] = place(ROUNDING[type_v])
    want = ref.forward(exact, config, np.array(TOKENS), ref.empty_cache(config), 0, rounding)
    with build(tiny, type_k, type_v, attn_rotation=rotation) as m:
        assert rotation_blocks(m) == ((64 if rotation and type_k != "f16" else 0),
                                      (64 if rotation and type_v != "f16" else 0))
        got = Runner(m).eval_all(TOKENS)
    assert np.abs(got - want).max() / want.std() <= 1e-2


def test_rotation_and_its_absence_are_not_the_same_forward(tiny):
    """the two forwards above differ by more than their tolerance, so each test sees its own"""
    rotated, plain = (logits_of(build(tiny, "q4_0", "q4_0", attn_rotation=r)) for r in (True, False))
    assert np.abs(rotated - plain).max() / plain.std() > 0.05


def test_f16_cache_is_not_rotated(tiny, f16_logits, monkeypatch):
    monkeypatch.delenv("LLAMA_ATTN_ROT_DISABLE", raising=False)
    with build(tiny, attn_rotation=True) as m:
        assert rotation_blocks(m) == (0, 0)
        assert np.array_equal(Runner(m).eval_all(TOKENS), f16_logits)


def step_and_bound(blocks, qtype):
    """each block's step d (rows of 32 stored values) and how far, in steps, a stored value may
    lie from the value it stands for: half a step, plus the rounding of d to F16 (2^-11 of 127 or
    8 steps); q4_0 a whole step, since d = (signed max) / -8 leaves +8 steps out of reach (the
    nibble stops at 15)"""
    if qtype == "q8_0":
        return np.abs(blocks).max(axis=1, keepdims=True) / 127, 0.5 + 127 * 2**-11
    return np.abs(blocks).max(axis=1, keepdims=True) / 8, 1.0 + 8 * 2**-11


@pytest.mark.parametrize("qtype", ["q8_0", "q4_0"])
def test_cache_holds_quantized_rows_near_the_rotated_f16_ones(tiny, qtype):
    """every cached 32-value block is whole multiples of one step, within the bound of the F16 row
    rotated by H_64 (layer 0's: its keys and values come from the embeddings alone, the same in
    both models). F16's own rounding, at most 2^-11 |x_i| per value, reaches each rotated value
    as a sum of 64 such errors over 8, at most 2^-8 of the row's largest |x_i|."""
    with build(tiny) as f16, build(tiny, qtype, qtype) as quant:
        Runner(f16).eval(TOKENS[:9])
        Runner(quant).eval(TOKENS[:9])
        for want, got in zip(read_kv(f16, 0, 0, 9), read_kv(quant, 0, 0, 9)):
            blocks, exact = got.reshape(-1, 32), rotate(want.astype(np.float64), 64).reshape(-1, 32)
            step, bound = step_and_bound(blocks, qtype)
            slack = np.repeat(np.abs(want).reshape(-1, 64).max(axis=1), 2)[:, None] * 2**-8
            assert np.all(np.abs(blocks - exact) <= step * bound + slack)
            counts = blocks / np.where(step > 0, step, 1)
            assert np.allclose(counts, np.round(counts), atol=1e-3)
            assert len(np.unique(counts.round())) > (100 if qtype == "q8_0" else 10)


@pytest.mark.parametrize("qtype", ["q8_0", "q4_0"])
def test_context_shift_requantizes_the_rotated_keys(tiny, qtype):
    """after the shift, kept rows and V are untouched bytes moved down; each moved key is, in the
    Hadamard rotation, the RoPE rotation of the old one (float64, tests/reference_forward) within
    the quantization bound"""
    config = tiny[0]
    keep, discard, n = 3, 4, 14
    with build(tiny, qtype, qtype) as m:
        Runner(m).eval(TOKENS[:n])
        before = [read_kv(m, layer, 0, n) for layer in range(config.n_layer)]
        m.kv_shift(0, n, keep, discard)
        after = [read_kv(m, layer, 0, n - discard) for layer in range(config.n_layer)]
    cache = [(rotate(k.astype(np.float64), 64), v.astype(np.float64)) for k, v in before]   # unrotated keys
    want = ref.shift_cache(cache, config, keep, discard)
    for (k_old, v_old), (k_new, v_new), (k_want, _) in zip(before, after, want):
        assert np.array_equal(k_new[:, :keep], k_old[:, :keep])
        assert np.array_equal(v_new[:, keep:], v_old[:, keep + discard:])
        assert np.array_equal(v_new[:, :keep], v_old[:, :keep])
        blocks, exact = k_new[:, keep:].reshape(-1, 32), rotate(k_want[:, keep:], 64).reshape(-1, 32)
        step, bound = step_and_bound(blocks, qtype)
        assert np.all(np.abs(blocks - exact) <= step * bound + 1e-6)
        assert not np.array_equal(k_new[:, keep:], k_old[:, keep + discard:])   # they were rotated


@pytest.mark.parametrize("qtype", ["q8_0", "q4_0"])
def test_generation_after_a_shift_stays_close_to_the_f16_cache(tiny, qtype):
    runs = {}
    for cache in ("f16", qtype):
        with build(tiny, cache, cache) as m:
            r = Runner(m)
            r.eval(TOKENS[:14])
            m.kv_shift(0, 14, 3, 4)
            r.truncate(10)
            runs[cache] = r.eval_all(TOKENS[14:])
    err = np.abs(runs[qtype] - runs["f16"]).max() / runs["f16"].std()
    assert err <= tolerance(qtype, qtype), err


def test_copied_prefix_serves_like_one_computed_in_place(tiny):
    shared, tail = TOKENS[:6], TOKENS[6:10]
    want = logits_of(build(tiny, "q8_0", "q4_0"), shared + tail)[6:]
    with build(tiny, "q8_0", "q4_0", n_seq=3) as m:
        m.decode(Batch.of(shared, 0, 2, "none"))
        m.kv_copy(2, 0, len(shared))
        got = m.decode(Batch.of(tail, len(shared), 0, "all")).copy()
        assert np.array_equal(got, want)
        for a, b in zip(read_kv(m, 1, 0, 6, seq=0), read_kv(m, 1, 0, 6, seq=2)):
            assert np.array_equal(a, b)


def test_hadamard_rotation_is_orthonormal_and_its_own_inverse():
    """the C rotation (model/hadamard.c) applied to the identity is H (exactly for 4 and 64, whose
    1/sqrt(n) is exact; within an ulp for 128); rotating twice gives back x within float32's
    roundings of 2 log2(n) adds and two scalings; blocks of fewer than 4 values are refused"""
    for block in (4, 64, 128):
        rows = np.eye(block, dtype=np.float32)
        assert lib.pg_hadamard_rotate_checked(ffi.cast("float *", rows.ctypes.data), rows.size, block) == lib.PG_OK
        np.testing.assert_allclose(rows, hadamard(block), rtol=2**-23 if block == 128 else 0, atol=0)
        assert np.array_equal(rows, rows.T)
        x = np.random.default_rng(block).standard_normal(3 * block).astype(np.float32)
        y = x.copy()
        for _ in range(2):
            assert lib.pg_hadamard_rotate_checked(ffi.cast("float *", y.ctypes.data), y.size, block) == lib.PG_OK
        np.testing.assert_allclose(y, x, rtol=0, atol=1e-5 * np.abs(x).max())
    x = np.zeros(96, dtype=np.float32)
    for n, block in ((96, 96), (96, 64), (64, 0), (64, 2)):
        assert lib.pg_hadamard_rotate_checked(ffi.cast("float *", x.ctypes.data), n, block) == lib.PG_EBADARG


@pytest.mark.parametrize("n_embd,type_k,type_v,blocks", [
    (256, "q8_0", "f16", (64, 0)), (256, "f16", "q4_0", (0, 64)),       # head_dim 64
    (512, "q4_0", "q8_0", (128, 64)),                                   # 128: K in 128s, V in 64s
    (384, "q8_0", "q8_0", (0, 0)),                                      # 96: not a multiple of 64
])
def test_rotation_blocks_follow_llama_cpp(n_embd, type_k, type_v, blocks):
    config = tiny_config(n_embd=n_embd, n_head=4, n_head_kv=2)
    tensors, _ = encode(random_weights(config, seed=3), by_name("F32"), config)
    with Model.from_tensors(config, tensors, n_ctx=16, type_k=type_k, type_v=type_v) as m:
        assert rotation_blocks(m) == blocks
        assert Runner(m).eval(TOKENS[:3]).shape == (config.n_vocab,)   # chunks of whole blocks run


@pytest.mark.parametrize("value,disabled", [("1", True), (" 2x", True), ("-1", True), ("0", False),
                                            ("yes", False), ("", False), (None, False)])
def test_llama_attn_rot_disable_read_as_llama_cpp_reads_it(tiny, monkeypatch, value, disabled):
    if value is None:
        monkeypatch.delenv("LLAMA_ATTN_ROT_DISABLE", raising=False)
    else:
        monkeypatch.setenv("LLAMA_ATTN_ROT_DISABLE", value)
    with build(tiny, "q8_0", "q4_0") as m:
        assert m.attn_rotation is not disabled
        assert rotation_blocks(m) == ((0, 0) if disabled else (64, 64))


def test_cache_types_by_name_or_ggml_id(tiny):
    with build(tiny, "Q8_0", 2) as m:
        assert (m.type_k, m.type_v) == ("q8_0", "q4_0")
    with build(tiny, None, 1) as m:
        assert (m.type_k, m.type_v) == ("f16", "f16")
    with pytest.raises(ModelError, match=r"type_v='q5_0' is not a KV cache type: use f16, q8_0, q4_0"):
        build(tiny, "f16", "q5_0")
    with pytest.raises(ModelError, match="type_k=0 is not a KV cache type"):
        build(tiny, 0, "f16")


def test_quantized_cache_needs_heads_of_whole_blocks():
    config = tiny_config(n_embd=192, n_head=4, n_head_kv=2)  # head_dim 48
    tensors, _ = encode(random_weights(config, seed=2), by_name("F32"), config)
    with pytest.raises(ModelError, match="type_v=q4_0: a q4_0 cache stores rows of 32-value blocks, and this "
                                         "model's head size 48 is not a multiple of 32; use f16"):
        Model.from_tensors(config, tensors, n_ctx=16, type_v="q4_0")
    with Model.from_tensors(config, tensors, n_ctx=16) as m:      # F16 takes any head size
        assert Runner(m).eval(TOKENS[:3]).shape == (config.n_vocab,)
