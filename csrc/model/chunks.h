/* How a forward stage's work is cut into chunks that the threads take through
 * pg_pool_next_chunks (model/forward.c, and the benchmark of one matrix stage in testing/). */
#ifndef PYGGUF_MODEL_CHUNKS_H
#define PYGGUF_MODEL_CHUNKS_H

#include <stdint.h>
#include "core/threadpool.h"

/* Multiply-adds per chunk of a matmul stage (~1-3 us): the unit a thread done with its own run
 * takes from another's, so the last one leaves the others idle only briefly. A thread takes its
 * own run in shrinking pieces, a gemm call each, so small chunks cost few calls. Measured on
 * SmolLM2 at -t 2: 16K and 32K alike, 64K and up 1-3% slower at 8 tokens. */
#define PG_CHUNK_MACS (32 * 1024)

/* The most chunks a stage's matrix or attention is cut into: far below PG_POOL_MAX_CHUNKS, so
 * q, k and v together stay below it too */
#define PG_MAX_STAGE_CHUNKS (PG_POOL_MAX_CHUNKS / 4)

/* Rows per chunk of a stage of `rows` rows that each cost `row_macs` per token: a multiple of
 * `align`; a single thread takes every row in one chunk (one gemm call per matrix) */
static inline int64_t pg_chunk_rows(int64_t rows, int64_t row_macs, int ntok, int64_t align, int nth) {
    if (nth == 1) return rows > 0 ? rows : 1;
    int64_t step = PG_CHUNK_MACS / (row_macs * ntok);
    const int64_t fewest = rows / PG_MAX_STAGE_CHUNKS + 1;
    step = step > fewest ? step : fewest;
    return (step + align - 1) / align * align;
}

/* The number of chunks of `step` rows that cover `rows` rows */
static inline int64_t pg_chunk_count(int64_t rows, int64_t step) {
    return step >= rows ? 1 : (rows + step - 1) / step;
}

/* Rows [*r0, *r1) of this thread's next chunks of a matrix of `rows` rows cut in chunks of
 * `step`; 0 once every chunk of the stage is taken */
static inline int pg_next_rows(pg_pool *pool, int ith, int64_t rows, int64_t step, int64_t *r0, int64_t *r1) {
    int64_t c0, c1;
    if (!pg_pool_next_chunks(pool, ith, pg_chunk_count(rows, step), &c0, &c1)) return 0;
    *r0 = c0 * step;
    *r1 = rows / step < c1 ? rows : c1 * step;
    return 1;
}

#endif
