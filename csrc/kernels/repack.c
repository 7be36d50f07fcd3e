/* The repacked 8-row layout (kernels/repack.h): the portable repacker. */
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

size_t pg_repack_r8_bytes(int type, int64_t n, int nrows) {
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

int pg_repack_r8(int type, int64_t n, const void *w, size_t w_stride, int nrows, void *out, size_t out_bytes) {
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
