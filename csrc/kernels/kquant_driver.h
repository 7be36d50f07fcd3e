/* The loop nest shared by every ISA's K-quant gemm (included by kquants_<isa>.c after it has
 * defined its register tile, kq_tile_<R>x<T>).
 *
 * W (nrows, n) @ A (ntok, n)^T -> y[t*ldy + r]. A panel of up to KQ_PANEL weight rows is
 * unpacked (kquant_unpack.h) KQ_KC super-blocks at a time into an L1-resident buffer, then every
 * token is run over it, so each weight byte is unpacked once per call whatever ntok is. The
 * tiles keep one float accumulator per (row, token) lane and advance it super-block by
 * super-block exactly as pg_ksb_accumulate does, so y never depends on the tiling. */
#ifndef PYGGUF_KQUANT_GEMM_DRIVER_H
#define PYGGUF_KQUANT_GEMM_DRIVER_H

#include "quants/kquant_unpack.h"

#define KQ_PANEL 8   /* weight rows unpacked together */
#define KQ_KC 8      /* super-blocks per unpacked chunk: 8 rows x 8 x 336 B = 21 KiB */

typedef struct {
    const pg_ksb *panel;   /* [KQ_PANEL][KQ_KC] */
    int ns;                /* super-blocks in this chunk */
    const char *a;         /* activation row 0, already advanced to the chunk's first block */
    size_t a_stride;
    float *y;              /* output of (row 0 of the panel, token 0) */
    size_t ldy;
    int two_terms;
} kq_chunk;

/* The panel unpacked after this one: `rows` rows from w (rows 0: none) */
typedef struct {
    const char *w;
    int rows;
} kq_next_panel;

/* Unpack rows [0, rows) (with the ISA file's kq_unpack_<t>, which may be pg_unpack_<t>) x
 * super-blocks [sb0, sb0+ns) of a weight panel into buf[r][s]. Each super-block unpacked asks
 * for the same one of the next panel (into L2: the unpack buffer and the activations keep L1),
 * so the next panel arrives at the pace this one is read: 8 rows of a few super-blocks each
 * are too short for the hardware prefetcher to follow (measured: 49152x768 Q4_K, 2 tokens,
 * 1.1x faster; asking for a whole chunk at once cost 10% on L3-resident matrices). */
#define KQ_DEFINE_PANEL_UNPACK(t)                                                              \
    static void kq_unpack_panel_##t(const char *w, size_t w_stride, int rows, int64_t sb0,    \
                                    int ns, pg_ksb *buf, const kq_next_panel *next) {          \
        for (int r = 0; r < rows; r++) {                                                       \
            const block_##t *b = (const block_##t *)(w + (size_t)r * w_stride) + sb0;          \
            const char *ahead = r < next->rows ? next->w + (size_t)r * w_stride               \
                                                     + (size_t)sb0 * sizeof(block_##t) : NULL;  \
            for (int s = 0; s < ns; s++) {                                                     \
                if (ahead)                                                                     \
                    for (size_t off = 0; off < sizeof(block_##t); off += 64)                   \
                        __builtin_prefetch(ahead + (size_t)s * sizeof(block_##t) + off, 0, 2); \
                kq_unpack_##t(&b[s], &buf[r * KQ_KC + s]);                                     \
            }                                                                                  \
        }                                                                                      \
    }

typedef void (*kq_panel_unpack_fn)(const char *w, size_t w_stride, int rows, int64_t sb0, int ns,
                                   pg_ksb *buf, const kq_next_panel *next);

/* Float lanes of a tile: lane p = r*T + t holds y for (row r, token t). */
static inline void kq_load_lanes(const kq_chunk *c, int r0, int t0, int R, int T, float f[8]) {
    for (int p = 0; p < 8; p++) f[p] = 0.0f;
    for (int r = 0; r < R; r++)
        for (int t = 0; t < T; t++) f[r * T + t] = c->y[(size_t)(t0 + t) * c->ldy + r0 + r];
}
static inline void kq_store_lanes(const kq_chunk *c, int r0, int t0, int R, int T, const float f[8]) {
    for (int r = 0; r < R; r++)
        for (int t = 0; t < T; t++) c->y[(size_t)(t0 + t) * c->ldy + r0 + r] = f[r * T + t];
}

/* The ISA file defines these register tiles (R rows x T tokens, T <= KQ_TILE_TOKENS). */
#define KQ_TILE_TOKENS 4
static void kq_tile_8x1(const kq_chunk *c, int r0, int t0);
static void kq_tile_4x2(const kq_chunk *c, int r0, int t0);
static void kq_tile_2x4(const kq_chunk *c, int r0, int t0);
static void kq_tile_1x1(const kq_chunk *c, int r0, int t0);

static void kq_gemm(int64_t n, const void *w, size_t w_stride, int nrows, const void *a,
                    size_t a_stride, int ntok, float *y, size_t ldy, kq_panel_unpack_fn unpack,
                    int two_terms) {
    const int64_t nsb = n / QK_K;
    _Alignas(64) pg_ksb buf[KQ_PANEL * KQ_KC];
    for (int r0 = 0; r0 < nrows; r0 += KQ_PANEL) {
        const int rows = nrows - r0 < KQ_PANEL ? nrows - r0 : KQ_PANEL;
        const int rows_next = nrows - r0 - KQ_PANEL < KQ_PANEL ? nrows - r0 - KQ_PANEL : KQ_PANEL;
        const kq_next_panel next = rows_next > 0 ? (kq_next_panel){(const char *)w + (size_t)(r0 + KQ_PANEL) * w_stride, rows_next}
                                                 : (kq_next_panel){(const char *)w, 0};
        for (int t = 0; t < ntok; t++)
            for (int r = 0; r < rows; r++) y[(size_t)t * ldy + r0 + r] = 0.0f;
        for (int64_t s0 = 0; s0 < nsb; s0 += KQ_KC) {
            const int ns = nsb - s0 < KQ_KC ? (int)(nsb - s0) : KQ_KC;
            unpack((const char *)w + (size_t)r0 * w_stride, w_stride, rows, s0, ns, buf, &next);
            kq_chunk c = {buf, ns, (const char *)a + (size_t)s0 * sizeof(block_q8_K), a_stride,
                          y + r0, ldy, two_terms};
            int t = 0;
            if (rows == KQ_PANEL) {
                /* 2 rows x 4 tokens: each row's weights and scales prepared once for 4 tokens
                 * (measured on AVX2: 8-16 tokens 1.15-1.25x faster than 4 x 2 tiles) */
                for (; t + 4 <= ntok; t += 4)
                    for (int r = 0; r < KQ_PANEL; r += 2) kq_tile_2x4(&c, r, t);
                for (; t + 2 <= ntok; t += 2) {
                    kq_tile_4x2(&c, 0, t);
                    kq_tile_4x2(&c, 4, t);
                }
                if (t < ntok) kq_tile_8x1(&c, 0, t);
            } else {
                for (; t < ntok; t++)
                    for (int r = 0; r < rows; r++) kq_tile_1x1(&c, r, t);
            }
        }
    }
}

#define KQ_DEFINE_GEMM(t, T_UPPER, isa)                                                        \
    KQ_DEFINE_PANEL_UNPACK(t)                                                                  \
    void pg_gemm_##t##_##isa(int64_t n, const void *w, size_t w_stride, int nrows,             \
                             const void *a, size_t a_stride, int ntok, float *y, size_t ldy) { \
        kq_gemm(n, w, w_stride, nrows, a, a_stride, ntok, y, ldy, kq_unpack_panel_##t,         \
                PG_##T_UPPER##_TWO_TERMS);                                                     \
    }

/* Direct one-token kernels (an ISA file that has <t>_rows_direct(nsb, w, w_stride, a, y, R)
 * for R = 8 and 1): 8 rows per pass straight from the GGUF blocks, the remainder one by one. */
#define KQ_DEFINE_DECODE(t)                                                                     \
    static void kq_decode_##t(int64_t n, const void *w, size_t w_stride, int nrows, const void *a, float *y) { \
        const int64_t nsb = n / QK_K;                                                           \
        int r = 0;                                                                              \
        for (; r + 8 <= nrows; r += 8)                                                          \
            t##_rows_direct(nsb, (const char *)w + (size_t)r * w_stride, w_stride, a, y + r, 8); \
        for (; r < nrows; r++)                                                                  \
            t##_rows_direct(nsb, (const char *)w + (size_t)r * w_stride, w_stride, a, y + r, 1); \
    }

/* One token: the direct kernel; several: the unpacked panels, reused across tokens. */
#define KQ_DEFINE_GEMM_WITH_DECODE(t, T_UPPER, isa)                                              \
    KQ_DEFINE_PANEL_UNPACK(t)                                                                    \
    void pg_gemm_##t##_##isa(int64_t n, const void *w, size_t w_stride, int nrows,               \
                             const void *a, size_t a_stride, int ntok, float *y, size_t ldy) {   \
        if (ntok == 1) {                                                                         \
            kq_decode_##t(n, w, w_stride, nrows, a, y);                                          \
            return;                                                                              \
        }                                                                                        \
        kq_gemm(n, w, w_stride, nrows, a, a_stride, ntok, y, ldy, kq_unpack_panel_##t,           \
                PG_##T_UPPER##_TWO_TERMS);                                                       \
    }

#endif
