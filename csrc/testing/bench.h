/* Benchmark entry point (bench/kernels.py; cdef'd by cffi, see testing/kernels.h for why it
 * shares the product's extension). */
#ifndef PYGGUF_TESTING_BENCH_H
#define PYGGUF_TESTING_BENCH_H

/* Streaming read of `bytes` bytes of buf, split over the pool's threads (each reads a
 * contiguous share once). Returns a checksum of what was read so the loads cannot be elided. */
uint64_t pg_bench_read(pg_pool *pool, const void *buf, size_t bytes);

#endif
