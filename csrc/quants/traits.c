/* The type table. Every format file (quants/<t>.c) defines the three functions named in
 * traits.h. */
#include "quants/traits.h"

#define DECLARE_FORMAT(t)                                                   \
    void pg_quantize_ref_##t(const float *x, void *y, int64_t n);            \
    void pg_dequantize_##t(const void *x, float *y, int64_t n);              \
    void pg_vec_dot_ref_##t(int64_t n, float *s, const void *w, const void *a);

DECLARE_FORMAT(f32) DECLARE_FORMAT(f16) DECLARE_FORMAT(bf16)
DECLARE_FORMAT(q4_0) DECLARE_FORMAT(q4_1) DECLARE_FORMAT(q5_0) DECLARE_FORMAT(q5_1)
DECLARE_FORMAT(q8_0) DECLARE_FORMAT(q8_1)
DECLARE_FORMAT(q2_K) DECLARE_FORMAT(q3_K) DECLARE_FORMAT(q4_K) DECLARE_FORMAT(q5_K)
DECLARE_FORMAT(q6_K) DECLARE_FORMAT(q8_K)

/* block: the C type of one block, whose size and alignment the row takes */
#define ROW(id, t, blck, block, act)                                                               \
    [id] = { #t, blck, sizeof(block), _Alignof(block), act, pg_quantize_ref_##t, pg_dequantize_##t, \
             pg_vec_dot_ref_##t }

static const pg_type_traits TYPES[PG_TYPE_COUNT] = {
    ROW(PG_F32,  f32,  1,     float,      PG_F32),
    ROW(PG_F16,  f16,  1,     pg_half,    PG_F16),
    ROW(PG_BF16, bf16, 1,     pg_bf16,    PG_BF16),
    ROW(PG_Q4_0, q4_0, QK4_0, block_q4_0, PG_Q8_0),
    ROW(PG_Q4_1, q4_1, QK4_1, block_q4_1, PG_Q8_1),
    ROW(PG_Q5_0, q5_0, QK5_0, block_q5_0, PG_Q8_0),
    ROW(PG_Q5_1, q5_1, QK5_1, block_q5_1, PG_Q8_1),
    ROW(PG_Q8_0, q8_0, QK8_0, block_q8_0, PG_Q8_0),
    ROW(PG_Q8_1, q8_1, QK8_1, block_q8_1, PG_Q8_1),
    ROW(PG_Q2_K, q2_K, QK_K,  block_q2_K, PG_Q8_K),
    ROW(PG_Q3_K, q3_K, QK_K,  block_q3_K, PG_Q8_K),
    ROW(PG_Q4_K, q4_K, QK_K,  block_q4_K, PG_Q8_K),
    ROW(PG_Q5_K, q5_K, QK_K,  block_q5_K, PG_Q8_K),
    ROW(PG_Q6_K, q6_K, QK_K,  block_q6_K, PG_Q8_K),
    ROW(PG_Q8_K, q8_K, QK_K,  block_q8_K, PG_Q8_K),
};

const pg_type_traits *pg_traits(int type) {
    if (type < 0 || type >= PG_TYPE_COUNT || TYPES[type].name == NULL) return NULL;
    return &TYPES[type];
}
