/* The repacked 8-row layout of Q4_0 / Q4_1 / Q8_0 (api/repack.h): a portable repacker and the
 * checked entry point of the x86 kernels that read it (isa/legacy_x86.h). */
#include <stdint.h>
#include <stddef.h>
#include <string.h>
#include "api/kernels.h"
#include "api/repack.h"
#include "kernels/dispatch.h"
#include "quants/blocks.h"

#define R8_ROWS 8


#if defined(__x86_64__)
#define R8_DECLARE(t, isa) void pg_gemm_##t##_r8_##isa(int64_t, const void *, int, const void *, size_t, int, float *, size_t);
R8_DECLARE(q4_0, avx2) R8_DECLARE(q4_1, avx2) R8_DECLARE(q8_0, avx2)
R8_DECLARE(q4_0, avx512) R8_DECLARE(q4_1, avx512) R8_DECLARE(q8_0, avx512)
R8_DECLARE(q4_0, amx) R8_DECLARE(q4_1, amx) R8_DECLARE(q8_0, amx)
R8_DECLARE(q4_0, amx_emulated) R8_DECLARE(q4_1, amx_emulated) R8_DECLARE(q8_0, amx_emulated)
#endif

/* block bytes, scale halves per block (d, or d and m), quant bytes per block; 0 if not repackable */
static size_t r8_block_bytes(int type, int *halves, size_t *qbytes) {
    switch (type) {
    case PG_Q4_0: *halves = 1; *qbytes = 16; return sizeof(block_q4_0);
    case PG_Q4_1: *halves = 2; *qbytes = 16; return sizeof(block_q4_1);
    case PG_Q8_0: *halves = 1; *qbytes = 32; return sizeof(block_q8_0);
    default: return 0;
    }
}

size_t pg_repack_r8_bytes(int type, int64_t n, int nrows) {
    int halves;
    size_t qbytes, bb = r8_block_bytes(type, &halves, &qbytes);
    if (!bb || n <= 0 || n % 32 || nrows < 0) return 0;
    const size_t groups = ((size_t)nrows + R8_ROWS - 1) / R8_ROWS;
    return groups * (size_t)(n / 32) * R8_ROWS * bb;
}

/* one 8-row block: the rows' scale halves (all d, then all m), then dword j of row r at
 * 32*j + 4*r. Q4 dword j = GGUF qs bytes 4j..4j+3: values 4j.. in the low nibbles, 16+4j.. in
 * the high ones; Q8_0 dword j = values 4j..4j+3. */
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
    size_t qbytes, bb = r8_block_bytes(type, &halves, &qbytes);
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

pg_gemm_r8_fn pg_gemm_r8_for(int isa, int type) {
#if defined(__x86_64__)
    if (isa == PG_ISA_AVX512 && pg_isa_supported(PG_ISA_AVX512)) {
        if (type == PG_Q4_0) return pg_gemm_q4_0_r8_avx512;
        if (type == PG_Q4_1) return pg_gemm_q4_1_r8_avx512;
        if (type == PG_Q8_0) return pg_gemm_q8_0_r8_avx512;
    }
    if ((isa == PG_ISA_AVX2 || isa == PG_ISA_AVX512) && pg_isa_supported(PG_ISA_AVX2)) {
        if (type == PG_Q4_0) return pg_gemm_q4_0_r8_avx2;
        if (type == PG_Q4_1) return pg_gemm_q4_1_r8_avx2;
        if (type == PG_Q8_0) return pg_gemm_q8_0_r8_avx2;
    }
#else
    (void)isa; (void)type;
#endif
    return NULL;
}

/* The model gives Q8_0 batches of at least this many tokens to the AMX tiles, and no Q4 batch.
 * Measured single-threaded on a lent Sapphire Rapids class Xeon, GMAC/s of AMX vs the AVX-512
 * r8 kernel, rows per call in brackets (the model calls in chunks), the whole matrix elsewhere:
 *   Q8_0 49152x576 (the LM head), 8 tokens: 104 vs 66 (64 rows), 80 vs 60 (16 rows);
 *        1536x576, 4 tokens: 36 vs 34; 2 tokens: 20 vs 39.
 *   Q4_1 1536x576, 34 tokens: 64 vs 73 (16 rows), 81 vs 75 (64), 90 vs 75 (whole);
 *        192 tokens: 61 vs 77 (16 rows), 99 vs 78 (whole); 8 tokens: 36 vs 45 (16 rows).
 * A Q4 block must be unpacked before its tile loads it, and each call decodes its tokens'
 * activation scales and loads a tile configuration per 16 tokens, which a 16-row chunk does not
 * repay (prefill chunks are 16 rows). pg_gemm_r8_amx still runs every type, for the tests. */
#define AMX_MIN_TOKENS_Q8_0 8

pg_gemm_r8_fn pg_gemm_r8_amx_for(int isa, int type, int ntok) {
#if defined(__x86_64__)
    if (type == PG_Q8_0 && ntok >= AMX_MIN_TOKENS_Q8_0 && isa == PG_ISA_AVX512 && pg_isa_supported(PG_ISA_AVX512) &&
        pg_amx_available())
        return pg_gemm_q8_0_r8_amx;
#else
    (void)isa; (void)type; (void)ntok;
#endif
    return NULL;
}

/* the arguments pg_gemm_r8 and pg_gemm_r8_amx check: PG_OK or the error */
static int r8_args_ok(int type, int64_t n, const void *packed, size_t packed_bytes, int nrows,
                      const void *a, size_t a_stride, int ntok, const float *y, size_t ldy) {
    if (!r8_block_bytes(type, &(int){0}, &(size_t){0})) return PG_ENOKERNEL;
    const size_t need = pg_repack_r8_bytes(type, n, nrows);
    if (!need && nrows > 0) return PG_EBADSIZE;
    if (nrows < 0 || ntok < 0 || (ntok > 1 && ldy < (size_t)nrows) || packed_bytes < need || !packed || !a || !y)
        return PG_EBADARG;
    const size_t act_block = type == PG_Q4_1 ? sizeof(block_q8_1) : sizeof(block_q8_0);
    return a_stride < (size_t)(n / 32) * act_block ? PG_EBADARG : PG_OK;
}

int pg_gemm_r8_amx(int emulate, int type, int64_t n, const void *packed, size_t packed_bytes, int nrows,
                   const void *a, size_t a_stride, int ntok, float *y, size_t ldy) {
#if defined(__x86_64__)
    if (emulate ? !pg_isa_supported(PG_ISA_AVX2) : !pg_amx_available()) return PG_EBADISA;
    const int rc = r8_args_ok(type, n, packed, packed_bytes, nrows, a, a_stride, ntok, y, ldy);
    if (rc != PG_OK) return rc;
    pg_gemm_r8_fn gemm = type == PG_Q4_0 ? (emulate ? pg_gemm_q4_0_r8_amx_emulated : pg_gemm_q4_0_r8_amx)
                       : type == PG_Q4_1 ? (emulate ? pg_gemm_q4_1_r8_amx_emulated : pg_gemm_q4_1_r8_amx)
                                         : (emulate ? pg_gemm_q8_0_r8_amx_emulated : pg_gemm_q8_0_r8_amx);
    gemm(n, packed, nrows, a, a_stride, ntok, y, ldy);
    return PG_OK;
#else
    (void)emulate; (void)type; (void)n; (void)packed; (void)packed_bytes; (void)nrows; (void)a; (void)a_stride;
    (void)ntok; (void)y; (void)ldy;
    return PG_EBADISA;
#endif
}

int pg_gemm_r8(int isa, int type, int64_t n, const void *packed, size_t packed_bytes, int nrows,
               const void *a, size_t a_stride, int ntok, float *y, size_t ldy) {
    if (isa < 0 || isa >= PG_ISA_COUNT || !pg_isa_supported(isa)) return PG_EBADISA;
    const int rc = r8_args_ok(type, n, packed, packed_bytes, nrows, a, a_stride, ntok, y, ldy);
    if (rc != PG_OK) return rc;
    pg_gemm_r8_fn gemm = pg_gemm_r8_for(isa, type);
    if (!gemm) return PG_ENOKERNEL;
    gemm(n, packed, nrows, a, a_stride, ntok, y, ldy);
    return PG_OK;
}
