/* Q4_K: 8 sub-blocks of 32, x = d * sc * q - dmin * m, q in 0..15, 6-bit sc and m.
 * Reference quantizer (llama.cpp's quantize_row_q4_K_ref without an imatrix), dequantizer
 * (gguf-py's numpy order) and the reference dot against Q8_K. */
#include <math.h>
#include "quants/kquant_unpack.h"
#include "quants/kquant_make.h"
#include "quants/kquant_pack.h"

static void quantize_block_q4_K(const float *x, block_q4_K *y) {
    uint8_t L[QK_K];
    pg_k4_fit_and_pack(x, 15, -1.f, 0.1f, 20, L, y->scales, &y->d, &y->dmin);
    uint8_t *q = y->qs;
    for (int j = 0; j < QK_K; j += 64, q += 32)
        for (int l = 0; l < 32; l++) q[l] = (uint8_t)(L[j + l] | (L[j + l + 32] << 4));
}

void pg_quantize_ref_q4_K(const float *x, void *vy, int64_t n) {
    block_q4_K *y = vy;
    for (int64_t i = 0; i < n / QK_K; i++) quantize_block_q4_K(x + i * QK_K, &y[i]);
}

void pg_dequantize_q4_K(const void *vx, float *y, int64_t n) {
    const block_q4_K *x = vx;
    pg_ksb u;
    for (int64_t i = 0; i < n / QK_K; i++, y += QK_K) {
        pg_unpack_q4_K(&x[i], &u);
        pg_k4_dequantize_unpacked(&u, y);
    }
}

PG_KQUANT_VEC_DOT_REF(q4_K, PG_Q4_K_TWO_TERMS)
