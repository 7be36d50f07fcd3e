/* What the machine can do (cdef'd by cffi): pygguf-bench sets its figures beside these. */
#ifndef PYGGUF_API_MACHINE_H
#define PYGGUF_API_MACHINE_H

/* Streaming read of `bytes` bytes of buf, split over the pool's threads (each reads a contiguous
 * share once): a memory-bound matrix x vector cannot beat its rate. Returns a checksum of what
 * was read so the loads cannot be elided (0, nothing read, while another thread uses the pool). */
uint64_t pg_stream_read(pg_pool *pool, const void *buf, size_t bytes);

#endif
