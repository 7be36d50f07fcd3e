/* llama.cpp's rotation of attention over a quantized KV cache (its PR 21038): queries, keys and
 * values multiplied by an orthonormal Walsh-Hadamard matrix H (Sylvester order, entries
 * +-1/sqrt(n), symmetric, so H H = I) block by block along each head. Scores are unchanged
 * (q.k = Hq.Hk) and the attention output comes back by one more H, but the rotated rows spread
 * an outlier over the whole block, so the 32-value blocks of q8_0 / q4_0 round with a smaller step. */
#ifndef PYGGUF_MODEL_HADAMARD_H
#define PYGGUF_MODEL_HADAMARD_H

#include <stdint.h>

/* The rotation block sizes of llama.cpp for heads of head_dim, 0 where a cache is not rotated:
 * each of K and V is rotated when its type is quantized and head_dim % 64 == 0; K (and q) in
 * blocks of the largest power of two dividing head_dim, V (and the output) in blocks of 64 */
void pg_hadamard_blocks(int type_k, int type_v, int head_dim, int *block_k, int *block_v);

/* x (n,) -> each of its n / block runs of `block` values (a power of two >= 4) multiplied by H_block,
 * in place: the 1/sqrt(block), then log2(block) passes of butterflies. O(n log block), no
 * allocation; the same float operations in the same order on every ISA, so the same bits. */
void pg_hadamard_rotate(float *x, int64_t n, int block);

#endif
