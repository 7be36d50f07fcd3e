"""The KV cache's size and the automatic context (pygguf/model/kv_cache.py): bytes per type, the
one rule that caps a context to the memory available, and the refusal of an explicit one that
cannot fit, before anything is allocated."""
import pytest

from model_factory import encode, random_weights, tiny_config
from pygguf.errors import ModelError
from pygguf.gguf.types import by_name
from pygguf.model import Model, kv_cache
from pygguf.model.kv_cache import CacheShape, check_context, fit_context

GiB = 1 << 30
CODELLAMA_13B = dict(n_layer=40, n_head_kv=40, head_dim=128)      # trained on 16384 tokens


def test_bytes_per_cache_type():
    f16 = CacheShape(**CODELLAMA_13B)
    assert f16.bytes(16384) == 12.5 * GiB                            # 40 layers x 5120 x 2 x 2 bytes
    assert CacheShape(**CODELLAMA_13B, type_k="q8_0", type_v="q8_0").bytes(16384) == 12.5 * GiB * 34 / 64
    assert CacheShape(**CODELLAMA_13B, type_k="q4_0", type_v="q4_0").bytes(16384) == 12.5 * GiB * 18 / 64
    assert CacheShape(**CODELLAMA_13B, type_k="q8_0").bytes(16384, n_seq=2) == 12.5 * GiB * (34 + 64) / 64


def test_the_training_context_when_it_fits():
    per_pos = CacheShape(**CODELLAMA_13B).bytes_per_position()
    assert fit_context(16384, per_pos, 7 * GiB, 32 * GiB) == (16384, None)
    assert fit_context(16384, per_pos, 7 * GiB, None) == (16384, None)      # no /proc/meminfo


def test_a_context_too_big_is_capped_to_a_multiple_of_256_and_said_so():
    per_pos = CacheShape(**CODELLAMA_13B).bytes_per_position()           # 800 KiB
    n_ctx, note = fit_context(16384, per_pos, 7 * GiB, 16 * GiB + 512 * (1 << 20))
    room = 16 * GiB + 512 * (1 << 20) - int((16 * GiB + 512 * (1 << 20)) * 0.1) - 7 * GiB
    assert n_ctx == room // per_pos // 256 * 256 == 10240
    assert n_ctx * per_pos + 7 * GiB <= (16 * GiB + 512 * (1 << 20)) * 0.9
    assert note == "context 16384 would need 12.5 GiB of KV cache, 7.9 GiB available: using -c 10240"
    q8 = CacheShape(**CODELLAMA_13B, type_k="q8_0", type_v="q8_0").bytes_per_position()
    assert fit_context(16384, q8, 7 * GiB, 16 * GiB + 512 * (1 << 20)) == (16384, None)   # q8_0 fits


def test_the_margin_is_a_tenth_and_at_least_512_mib():
    per_pos = 1 << 20
    assert fit_context(4096, per_pos, 0, 4096 * per_pos)[0] == 3584      # 10% of 4 GiB is 409.6 MiB < 512
    assert fit_context(40960, per_pos, 0, 40960 * per_pos)[0] == 36864   # 4 GiB = 10%


def test_at_least_256_positions_even_without_room():
    assert fit_context(16384, 1 << 20, 8 * GiB, 4 * GiB)[0] == 256
    assert fit_context(100, 1 << 20, 8 * GiB, 4 * GiB)[0] == 100             # never above the training context


def test_an_explicit_context_that_cannot_fit_is_refused_naming_c():
    per_pos = CacheShape(**CODELLAMA_13B).bytes_per_position()
    check_context(16384, 1, per_pos, 7 * GiB, 20 * GiB)             # 12.5 + 7 + 0.5: just fits
    check_context(16384, 1, per_pos, 7 * GiB, None)
    with pytest.raises(ModelError, match=r"^n_ctx=16384 needs 12\.5 GiB of KV cache \(f16\), 7\.0 GiB of weights "
                                         r"and 0\.5 GiB for the rest of the run but only 16\.0 GiB of memory is "
                                         r"available: use a smaller context \(0 picks one that fits\) or a "
                                         r"quantized KV cache \(q8_0 halves it\)$") as info:
        check_context(16384, 1, per_pos, 7 * GiB, 16 * GiB)
    assert info.value.naming("-c").startswith("-c 16384 needs 12.5 GiB of KV cache (f16)")     # the CLI's flag
    with pytest.raises(ModelError, match=r"^n_ctx=8192 x 2 sequences needs 12\.5 GiB"):
        check_context(8192, 2, per_pos, 7 * GiB, 16 * GiB)


def test_model_refuses_before_allocating(monkeypatch):
    config = tiny_config()
    tensors, _ = encode(random_weights(config, seed=1), by_name("F32"), config)
    monkeypatch.setattr(kv_cache, "available_memory", lambda: 576 << 20)     # the run's 512 MiB and 64
    with pytest.raises(ModelError, match=r"^n_ctx=1000000 needs 1\.0 GiB of KV cache \(f16\)"):
        Model.from_tensors(config, tensors, n_ctx=1_000_000)           # 1 KiB per position
    with Model.from_tensors(config, tensors, n_ctx=64, type_k="q4_0") as m:
        assert m.n_ctx == 64


def test_cache_type_names_and_ids():
    assert [kv_cache.cache_type(v) for v in ("f16", "Q8_0", "q4_0", 1, 8, 2, None)] == \
        ["f16", "q8_0", "q4_0", "f16", "q8_0", "q4_0", "f16"]
    with pytest.raises(ModelError, match="type_k='bf16' is not a KV cache type"):
        kv_cache.cache_type("bf16")


# ---- the memory there is: /proc/meminfo and the cgroup's limit --------------------------------------

def fake_system(root, meminfo_kib: int, cgroup: str, files: dict[str, str]):
    (root / "proc/self").mkdir(parents=True)
    (root / "proc/meminfo").write_text(f"MemTotal: 99999999 kB\nMemAvailable: {meminfo_kib} kB\n")
    (root / "proc/self/cgroup").write_text(cgroup)
    for name, text in files.items():
        path = root / "sys/fs/cgroup" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


def test_available_memory_is_lowered_to_a_cgroup_v2_limit(tmp_path):
    """A container's limit, which /proc/meminfo does not show: a context sized to the host was
    accepted and its cache killed the process when it filled."""
    fake_system(tmp_path, 16 * 1024 * 1024, "0::/box/job\n", {
        "box/memory.max": str(6 * GiB), "box/memory.current": str(3 * GiB), "box/memory.stat": "anon 1\n",
        "box/job/memory.max": "max", "box/job/memory.current": str(2 * GiB),
        "box/job/memory.stat": f"anon 5\ninactive_file {GiB}\n"})
    assert kv_cache.available_memory(tmp_path) == 3 * GiB            # the parent's room, the least
    (tmp_path / "sys/fs/cgroup/box/job/memory.max").write_text(str(2 * GiB + GiB // 2))
    assert kv_cache.available_memory(tmp_path) == GiB + GiB // 2      # inactive page cache counts as free


def test_available_memory_reads_a_cgroup_v1_limit(tmp_path):
    fake_system(tmp_path, 16 * 1024 * 1024, "4:memory:/docker/abc\n2:cpu:/docker/abc\n", {
        "memory/memory.limit_in_bytes": str(4 * GiB), "memory/memory.usage_in_bytes": str(GiB),
        "memory/memory.stat": "total_inactive_file 0\n"})
    assert kv_cache.available_memory(tmp_path) == 3 * GiB            # the container's own view (mount root)


def test_available_memory_without_limits_is_meminfo(tmp_path):
    fake_system(tmp_path, 1024, "0::/\n", {"memory.max": "max", "memory.current": "5"})
    assert kv_cache.available_memory(tmp_path) == 1024 * 1024
    fake_system(tmp_path / "v1", 1024, "4:memory:/\n", {"memory/memory.limit_in_bytes": str(1 << 63 - 1),
                                                          "memory/memory.usage_in_bytes": "5"})
    assert kv_cache.available_memory(tmp_path / "v1") == 1024 * 1024
    assert kv_cache.available_memory(tmp_path / "nothing") is None
