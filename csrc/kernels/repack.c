/* The repacked layouts (kernels/repack.h): the portable repackers. */
#include <stdint.h>
#include <stddef.h>
#include <string.h>
#include "api/status.h"
#include "quants/blocks.h"
#include "kernels/repack.h"

#define R8_ROWS 8

size_t pg_r8_block_bytes(int type, int *halves, size_t *qbytes) {
    switch (type) {
    case PG_Q4_0: *halves = 1; *qbytes = 16; return sizeof(block_q4_0);
    case PG_Q4_1: *halves = 2; *qbytes = 16; return sizeof(block_q4_1);
    case PG_Q8_0: *halves = 1; *qbytes = 32; return sizeof(block_q8_0);
    default: return 0;
    }
}

int pg_repack_is_sliced(int type) { return type == PG_Q4_K || type == PG_Q5_K; }

size_t pg_repack_r8_bytes(int type, int64_t n, int nrows) {
    if (pg_repack_is_sliced(type)) {
        const size_t bb = type == PG_Q4_K ? sizeof(block_q4_K) : sizeof(block_q5_K);
        return n <= 0 || n % QK_K || nrows < 0 ? 0 : (size_t)nrows * (size_t)(n / QK_K) * bb;
    }
    int halves;
    size_t qbytes, bb = pg_r8_block_bytes(type, &halves, &qbytes);
    if (!bb || n <= 0 || n % 32 || nrows < 0) return 0;
    const size_t groups = ((size_t)nrows + R8_ROWS - 1) / R8_ROWS;
    return groups * (size_t)(n / 32) * R8_ROWS * bb;
}

/* one 8-row block of the layout: the rows' scale halves (all d, then all m), then the dwords */
static void repack_block(const uint8_t *const rows[R8_ROWS], int halves, size_t qbytes, uint8_t *out) {
    for (int h = 0; h < halves; h++)
        for (int r = 0; r < R8_ROWS; r++) memcpy(out + 16 * h + 2 * r, rows[r] + 2 * h, 2);
    uint8_t *q = out + 16 * halves;
    const size_t qs_at = 2 * (size_t)halves;   /* qs follows the scales in these blocks */
    for (size_t j = 0; j < qbytes / 4; j++)
        for (int r = 0; r < R8_ROWS; r++) memcpy(q + 32 * j + 4 * r, rows[r] + qs_at + 4 * j, 4);
}

/* A Q4_K/Q5_K super-block's 256 quants (nibbles of qs, Q5_K's fifth bits in qh: NULL for Q4_K)
 * -> the same in slice order, in place. GGUF: value i = 32j + k (sub-block j) in qs[32(j/2) + k],
 * low nibble for even j; its fifth bit is bit j of qh[k]. Sliced qs byte 32u + 4j + t holds
 * values 32j + 8u + t (low) and 32j + 8u + 4 + t (high). Four bytes at a time, as 32-bit words
 * whose nibble masks keep every byte apart (one value at a time, a 0.5 GB model took 1.9 s; a
 * byte at a time, a 4 GB one took 8 s of a 21 s load). */
static void slice_quants(uint8_t qs[QK_K / 2], uint8_t *qh) {
    uint8_t q[QK_K / 2], h[QK_K / 8];
    memcpy(q, qs, sizeof q);
    for (int pair = 0; pair < 4; pair++)   /* sub-blocks 2 pair (low nibbles) and 2 pair + 1 (high) */
        for (int u = 0; u < 4; u++) {
            uint32_t a, b;
            memcpy(&a, q + 32 * pair + 8 * u, 4);       /* values 8u + t, t = 0..3 */
            memcpy(&b, q + 32 * pair + 8 * u + 4, 4);   /* values 8u + 4 + t */
            const uint32_t even = (a & 0x0F0F0F0Fu) | (b & 0x0F0F0F0Fu) << 4;
            const uint32_t odd = (a >> 4 & 0x0F0F0F0Fu) | (b & 0xF0F0F0F0u);
            memcpy(qs + 32 * u + 4 * (2 * pair), &even, 4);
            memcpy(qs + 32 * u + 4 * (2 * pair + 1), &odd, 4);
        }
    if (!qh) return;
    memcpy(h, qh, sizeof h);
    for (int p = 0; p < 32; p++) {   /* byte p = 4j + t, bit v: the fifth bit of value 32j + 4v + t */
        uint8_t bits = 0;
        for (int v = 0; v < 8; v++) bits |= (uint8_t)((h[4 * v + p % 4] >> (p / 4) & 1) << v);
        qh[p] = bits;
    }
}

/* rows of Q4_K/Q5_K super-blocks -> the sliced layout (out may be w, rows back to back) */
static void repack_sliced(int type, int64_t n, const uint8_t *w, size_t w_stride, int nrows, uint8_t *out) {
    const size_t bb = type == PG_Q4_K ? sizeof(block_q4_K) : sizeof(block_q5_K);
    const size_t qs_at = type == PG_Q4_K ? offsetof(block_q4_K, qs) : offsetof(block_q5_K, qs);
    const size_t row_bytes = (size_t)(n / QK_K) * bb;
    for (int r = 0; r < nrows; r++) {
        uint8_t *o = out + (size_t)r * row_bytes;
        memmove(o, w + (size_t)r * w_stride, row_bytes);
        for (int64_t s = 0; s < n / QK_K; s++) {
            uint8_t *b = o + (size_t)s * bb;
            slice_quants(b + qs_at, type == PG_Q5_K ? b + offsetof(block_q5_K, qh) : NULL);
        }
    }
}

int pg_repack_r8(int type, int64_t n, const void *w, size_t w_stride, int nrows, void *out, size_t out_bytes) {
    if (pg_repack_is_sliced(type)) {
        const size_t need = pg_repack_r8_bytes(type, n, nrows);
        if (!need && nrows > 0) return PG_EBADSIZE;
        if (!w || !out || out_bytes < need || w_stride < need / (nrows ? (size_t)nrows : 1)) return PG_EBADARG;
        if (out == w && nrows > 1 && w_stride != need / (size_t)nrows) return PG_EBADARG;
        repack_sliced(type, n, w, w_stride, nrows, out);
        return PG_OK;
    }
    int halves;
    size_t qbytes, bb = pg_r8_block_bytes(type, &halves, &qbytes);
    if (!bb) return PG_ENOKERNEL;
    const size_t need = pg_repack_r8_bytes(type, n, nrows);
    if (!need && nrows > 0) return PG_EBADSIZE;
    if (!w || !out || out_bytes < need || w_stride < (size_t)(n / 32) * bb) return PG_EBADARG;
    const int64_t nb = n / 32;
    uint8_t *o = out;
    for (int r0 = 0; r0 < nrows; r0 += R8_ROWS)
        for (int64_t ib = 0; ib < nb; ib++) {
            const uint8_t *rows[R8_ROWS];
            for (int r = 0; r < R8_ROWS; r++) {
                const int row = r0 + r < nrows ? r0 + r : r0;
                rows[r] = (const uint8_t *)w + (size_t)row * w_stride + (size_t)ib * bb;
            }
            repack_block(rows, halves, qbytes, o);
            o += R8_ROWS * bb;
        }
    return PG_OK;
}
