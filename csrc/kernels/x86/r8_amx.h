/* AMX-INT8 tiles over the repacked 8-row layout (Sapphire Rapids and later), included after
 * r8_gemm.h by r8_avx512.c (tiles) and r8_avx2.c (emulated). Shape: W (nrows, n) repacked @
 * A (ntok, n)^T, any ntok, 8 rows x up to 16 tokens per tile (the model gives it Q8_0 batches of
 * 8 or more tokens: the dispatch table, kernels/dispatch.c).
 *
 * Strategy: the weights are the B operand, because a repacked block already is B's layout (row
 * kk of B = dword kk of the 8 rows, values 4kk..4kk+3): Q8_0 as stored, Q4 once its nibbles are
 * split (low nibbles = dwords of values 0..15, high = 16..31). The activations are A: one row
 * per token, the block's 32 quants, read in place through the Q8 rows' stride. One tdpb*d per
 * block (K = 32), since every block has its own scales; C holds each (token, row) block dot,
 * the exact integer panel_dots gives, and goes through memory to the same token_step as every
 * other path, so the outputs equal theirs bit for bit. Tiles alternate between two register
 * sets, so one block's tiles need not wait for the last one's to be stored.
 *
 * The including file sets PG_AMX: 1 compiles the tile instructions (pg_gemm_<t>_r8_amx), 0 the
 * same driver with the tile product written out in C (pg_gemm_<t>_r8_amx_emulated), which runs
 * on any x86 CPU so the tests check everything but the five tile instructions everywhere. */

#define AMX_TOKENS 16   /* rows of the A and C tiles: tokens per pass over the weights */

/* The tile configuration, one per token count. Static and fully written at compile time: GCC
 * 12 drops stores to a stack config before ldtilecfg, which llama.cpp's AMX build tripped on
 * (cpu-kernels.md 1.9). tmm0/tmm1: C (M tokens x 8 int32), tmm2/tmm4: A (M x 32 bytes),
 * tmm3/tmm5: B (8 x 32 bytes). */
typedef struct {
    uint8_t palette, start_row, reserved[14];
    uint16_t colsb[16];
    uint8_t rows[16];
} __attribute__((aligned(64))) amx_config;

#define AMX_CONFIG(M) {1, 0, {0}, {32, 32, 32, 32, 32, 32}, {M, M, M, 8, M, 8}}
static const amx_config AMX_CONFIGS[AMX_TOKENS + 1] = {
    AMX_CONFIG(1), AMX_CONFIG(1), AMX_CONFIG(2), AMX_CONFIG(3), AMX_CONFIG(4), AMX_CONFIG(5),
    AMX_CONFIG(6), AMX_CONFIG(7), AMX_CONFIG(8), AMX_CONFIG(9), AMX_CONFIG(10), AMX_CONFIG(11),
    AMX_CONFIG(12), AMX_CONFIG(13), AMX_CONFIG(14), AMX_CONFIG(15), AMX_CONFIG(16)};
#undef AMX_CONFIG

/* B of one Q4 block: dwords of values 0..15 (low nibbles), then of 16..31 (high), 8 rows each */
PG_INLINE const uint8_t *amx_q4_b(const uint8_t *qs, uint8_t *buf) {
    const __m256i low = _mm256_set1_epi8(0x0F);
    for (int j = 0; j < 4; j++) {
        const __m256i v = _mm256_loadu_si256((const __m256i *)(qs + 32 * j));
        _mm256_store_si256((__m256i *)(buf + 32 * j), _mm256_and_si256(v, low));
        _mm256_store_si256((__m256i *)(buf + 128 + 32 * j), _mm256_and_si256(_mm256_srli_epi16(v, 4), low));
    }
    return buf;
}

/* c[m*8 + r] = sum over k < 32 of a[m*a_stride + k] * B(k, r), B(k, r) = b[(k/4)*32 + 4r + k%4]:
 * what TDPBSUD (Q4: unsigned weights) or TDPBSSD (Q8_0) leaves in C */
PG_INLINE void amx_block_in_c(int kind, const uint8_t *a, size_t a_stride, const uint8_t *b, int M, int32_t *c) {
    for (int m = 0; m < M; m++)
        for (int r = 0; r < QROWS; r++) {
            int32_t sum = 0;
            for (int k = 0; k < 32; k++) {
                const uint8_t w = b[(k / 4) * 32 + 4 * r + k % 4];
                sum += (int8_t)a[(size_t)m * a_stride + k] * (kind == KIND_Q8_0 ? (int8_t)w : (int)w);
            }
            c[m * QROWS + r] = sum;
        }
}

#if PG_AMX
/* One block on tiles C, A, B (immediates, hence a macro; it reads amx_block's kind, a, a_stride,
 * b and c). GCC's tileloadd asm names no memory operand: the empty asm makes the stores into b
 * (and a) happen before it. */
#define AMX_BLOCK(C, A, B)                                                       \
    do {                                                                         \
        __asm__ volatile("" : : "r"(a), "r"(b) : "memory");                      \
        _tile_loadd(A, a, (long)a_stride);                                       \
        _tile_loadd(B, b, 32);                                                   \
        _tile_zero(C);                                                           \
        if (kind == KIND_Q8_0) _tile_dpbssd(C, A, B); else _tile_dpbsud(C, A, B); \
        _tile_stored(C, c, 32);                                                  \
    } while (0)
#endif

/* one block's dots into c (M x 8 int32), on the tiles of set `odd` */
PG_INLINE void amx_block(int kind, int odd, const uint8_t *a, size_t a_stride, const uint8_t *b, int M, int32_t *c) {
#if PG_AMX
    (void)M;
    if (odd) AMX_BLOCK(1, 4, 5);
    else AMX_BLOCK(0, 2, 3);
#else
    (void)odd;
    amx_block_in_c(kind, a, a_stride, b, M, c);
#endif
}

/* block ib's float step for the M tokens: acc[m] advanced by token_step with c's dots */
PG_INLINE void amx_block_floats(int kind, const uint8_t *blk, const int32_t *c, int M, const uint8_t *a, size_t a_stride,
                                int64_t ib, const act_scales *pre, int64_t nb, __m256 acc[AMX_TOKENS]) {
    __m256 D, Mv;
    r8_scales(kind, blk, &D, &Mv);
    const size_t abytes = act_block_bytes(kind);
    for (int m = 0; m < M; m++) {
        const __m256i dot = _mm256_load_si256((const __m256i *)(c + m * QROWS));
        acc[m] = token_step(kind, acc[m], dot, D, Mv, a + (size_t)m * a_stride + (size_t)ib * abytes,
                            pre ? pre + (size_t)m * (size_t)nb + (size_t)ib : NULL);
    }
}

/* Where a tile reads what was just stored, it waits for the stores to reach the cache (tile
 * loads take nothing from the store buffer; measured on Q4_1 1536x576, 8 tokens: 42 GMAC/s
 * against 73 for the AVX-512 tiles, and 55 against 46 in a later run with what follows). So Q4
 * blocks are unpacked AMX_AHEAD blocks before their tiles load them, and a block's C is read
 * AMX_LAG blocks after its tile store. */
#define AMX_AHEAD 4
#define AMX_RING 8   /* unpacked Q4 blocks in flight: more than AMX_AHEAD, a power of 2 */
#define AMX_LAG 2
#define AMX_CBUFS 4  /* C buffers in flight: more than AMX_LAG, a power of 2 */

/* one 8-row group x M tokens over all nb blocks -> y */
PG_INLINE void amx_group(int kind, const uint8_t *grp, int R, int64_t nb, const uint8_t *a, size_t a_stride, int M,
                         const act_scales *pre, float *y, size_t ldy) {
    const size_t gblock = QROWS * kind_block_bytes(kind), abytes = act_block_bytes(kind);
    const size_t aqs = kind_has_min(kind) ? 4 : 2, sb = r8_scale_bytes(kind);
    _Alignas(64) int32_t c[AMX_CBUFS][AMX_TOKENS * QROWS];
    _Alignas(64) uint8_t ring[AMX_RING][256];
    __m256 acc[AMX_TOKENS];
    for (int m = 0; m < M; m++) acc[m] = _mm256_setzero_ps();
    if (kind != KIND_Q8_0)
        for (int64_t ib = 0; ib < AMX_AHEAD && ib < nb; ib++) amx_q4_b(grp + ib * gblock + sb, ring[ib]);
    for (int64_t ib = 0; ib < nb + AMX_LAG; ib++) {
        if (ib < nb) {
            const uint8_t *qs = grp + ib * gblock + sb;
            for (size_t k = 0; k < gblock; k += 64)
                _mm_prefetch((const char *)qs + R8_PREFETCH + k, _MM_HINT_T0);
            if (kind != KIND_Q8_0 && ib + AMX_AHEAD < nb)
                amx_q4_b(qs + AMX_AHEAD * gblock, ring[(ib + AMX_AHEAD) % AMX_RING]);
            const uint8_t *b = kind == KIND_Q8_0 ? qs : ring[ib % AMX_RING];
            amx_block(kind, (int)(ib & 1), a + ib * abytes + aqs, a_stride, b, M, c[ib % AMX_CBUFS]);
        }
        if (ib >= AMX_LAG) {
            const int64_t done = ib - AMX_LAG;
            amx_block_floats(kind, grp + done * gblock, c[done % AMX_CBUFS], M, a, a_stride, done, pre, nb, acc);
        }
    }
    for (int m = 0; m < M; m++) store_lanes(acc[m], R, y + (size_t)m * ldy);
}

/* tokens in passes of up to AMX_TOKENS, each over every 8-row group; the activation scales of a
 * pass decoded once when they fit the table */
PG_INLINE void r8_amx_tokens(int kind, int64_t nb, const void *packed, int nrows, const uint8_t *a, size_t a_stride,
                             int ntok, float *y, size_t ldy) {
    const size_t gbytes = (size_t)nb * QROWS * kind_block_bytes(kind);
    act_scales table[ACT_TABLE];
    for (int t0 = 0; t0 < ntok; t0 += AMX_TOKENS) {
        const int M = ntok - t0 < AMX_TOKENS ? ntok - t0 : AMX_TOKENS;
        const uint8_t *at = a + (size_t)t0 * a_stride;
        const act_scales *pre = (int64_t)M * nb <= ACT_TABLE ? table : NULL;
        if (pre) decode_act_scales(kind, at, a_stride, M, nb, table);
#if PG_AMX
        _tile_loadconfig(&AMX_CONFIGS[M]);
#endif
        for (int r0 = 0; r0 < nrows; r0 += QROWS) {
            const int R = nrows - r0 < QROWS ? nrows - r0 : QROWS;
            amx_group(kind, (const uint8_t *)packed + (size_t)(r0 / QROWS) * gbytes, R, nb, at, a_stride, M, pre,
                      y + (size_t)t0 * ldy + r0, ldy);
        }
    }
#if PG_AMX
    _tile_release();   /* no tile state left for the kernel to save at a context switch */
#endif
}

#if PG_AMX
#define PG_R8_AMX_NAME(t) pg_gemm_##t##_r8_amx
#else
#define PG_R8_AMX_NAME(t) pg_gemm_##t##_r8_amx_emulated
#endif
#define PG_DEFINE_GEMM_R8_AMX(t, kind)                                                 \
    void PG_R8_AMX_NAME(t)(PG_GEMM_R8_ARGS) {                                             \
        r8_amx_tokens(kind, n / 32, packed, nrows, a, a_stride, ntok, y, ldy);         \
    }
PG_DEFINE_GEMM_R8_AMX(q4_0, KIND_Q4_0)
PG_DEFINE_GEMM_R8_AMX(q4_1, KIND_Q4_1)
PG_DEFINE_GEMM_R8_AMX(q8_0, KIND_Q8_0)
