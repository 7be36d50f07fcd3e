/* Q5_K: as Q4_K with a fifth bit per value (qh), q in 0..31.
 * Reference quantizer (llama.cpp's quantize_row_q5_K_ref without an imatrix), dequantizer
 * (gguf-py's numpy order) and the reference dot against Q8_K. */
#include <math.h>
#include "quants/kquant_unpack.h"
#include "quants/kquant_make.h"
#include "quants/kquant_pack.h"

static void quantize_block_q5_K(const float *x, block_q5_K *y) {
    uint8_t L[QK_K];
    pg_k4_fit_and_pack(x, 31, -0.5f, 0.1f, 15, L, y->scales, &y->d, &y->dmin);
    memset(y->qh, 0, sizeof y->qh);
    uint8_t *ql = y->qs;
    uint8_t m1 = 1, m2 = 2;
    for (int j0 = 0; j0 < QK_K; j0 += 64, ql += 32, m1 <<= 2, m2 <<= 2)
        for (int j = 0; j < 32; j++) {
            int l1 = L[j0 + j], l2 = L[j0 + j + 32];
            if (l1 > 15) { l1 -= 16; y->qh[j] |= m1; }
            if (l2 > 15) { l2 -= 16; y->qh[j] |= m2; }
            ql[j] = (uint8_t)(l1 | (l2 << 4));
        }
}

void pg_quantize_ref_q5_K(const float *x, void *vy, int64_t n) {
    block_q5_K *y = vy;
    for (int64_t i = 0; i < n / QK_K; i++) quantize_block_q5_K(x + i * QK_K, &y[i]);
}

void pg_dequantize_q5_K(const void *vx, float *y, int64_t n) {
    const block_q5_K *x = vx;
    pg_ksb u;
    for (int64_t i = 0; i < n / QK_K; i++, y += QK_K) {
        pg_unpack_q5_K(&x[i], &u);
        pg_k4_dequantize_unpacked(&u, y);
    }
}

PG_KQUANT_VEC_DOT_REF(q5_K, PG_Q5_K_TWO_TERMS)
