/* Block layouts of every GGUF tensor type pygguf reads, byte for byte as in the GGUF files.
 *
 * Each struct is followed by a size assertion and the formula that turns its bits back into
 * floats. Weight formats come first, then the activation formats the integer dot products
 * consume (Q8_0, Q8_1, Q8_K). The reference quantizer, dequantizer and dot product of each
 * format live together in quants/<format>.c; the SIMD variants in kernels/x86 and kernels/arm.
 */
#ifndef PYGGUF_BLOCKS_H
#define PYGGUF_BLOCKS_H

#include <stdint.h>
#include <stddef.h>

typedef uint16_t pg_half;   /* IEEE 754 binary16, stored as bits */
typedef uint16_t pg_bf16;   /* bfloat16, stored as bits */

/* ggml type ids, as written in GGUF tensor infos. */
enum pg_type {
    PG_F32 = 0, PG_F16 = 1, PG_Q4_0 = 2, PG_Q4_1 = 3,
    PG_Q5_0 = 6, PG_Q5_1 = 7, PG_Q8_0 = 8, PG_Q8_1 = 9,
    PG_Q2_K = 10, PG_Q3_K = 11, PG_Q4_K = 12, PG_Q5_K = 13, PG_Q6_K = 14, PG_Q8_K = 15,
    PG_BF16 = 30,
    PG_TYPE_COUNT = 31
};

/* ---- 32-value blocks ("legacy" quants) --------------------------------------------------- */
#define QK4_0 32
#define QK4_1 32
#define QK5_0 32
#define QK5_1 32
#define QK8_0 32
#define QK8_1 32

/* x = d * (q - 8), q in 0..15; low nibbles hold values 0..15, high nibbles 16..31. 4.5 bpw */
typedef struct { pg_half d; uint8_t qs[QK4_0 / 2]; } block_q4_0;
_Static_assert(sizeof(block_q4_0) == 2 + QK4_0 / 2, "block_q4_0 size");

/* x = d * q + m, q in 0..15. 5 bpw */
typedef struct { pg_half d; pg_half m; uint8_t qs[QK4_1 / 2]; } block_q4_1;
_Static_assert(sizeof(block_q4_1) == 2 * 2 + QK4_1 / 2, "block_q4_1 size");

/* x = d * (q - 16), q = nibble | (bit j of qh) << 4. 5.5 bpw */
typedef struct { pg_half d; uint8_t qh[4]; uint8_t qs[QK5_0 / 2]; } block_q5_0;
_Static_assert(sizeof(block_q5_0) == 2 + 4 + QK5_0 / 2, "block_q5_0 size");

/* x = d * q + m, q = nibble | (bit j of qh) << 4. 6 bpw */
typedef struct { pg_half d; pg_half m; uint8_t qh[4]; uint8_t qs[QK5_1 / 2]; } block_q5_1;
_Static_assert(sizeof(block_q5_1) == 2 * 2 + 4 + QK5_1 / 2, "block_q5_1 size");

/* x = d * q, q in -127..127. 8.5 bpw; also the activation format for Q4_0, Q5_0, Q8_0 */
typedef struct { pg_half d; int8_t qs[QK8_0]; } block_q8_0;
_Static_assert(sizeof(block_q8_0) == 2 + QK8_0, "block_q8_0 size");

/* Activation format for Q4_1/Q5_1: x = d * q, plus s = d * sum(q) so the weight's
 * offset m enters the dot product once per block as m * s. */
typedef struct { pg_half d; pg_half s; int8_t qs[QK8_1]; } block_q8_1;
_Static_assert(sizeof(block_q8_1) == 2 * 2 + QK8_1, "block_q8_1 size");

/* ---- 256-value super-blocks (K-quants) --------------------------------------------------- */
#define QK_K 256
#define K_SCALE_SIZE 12

/* 16 sub-blocks of 16: x = d * (scales[i] & 15) * q - dmin * (scales[i] >> 4), q in 0..3. 2.625 bpw */
typedef struct {
    uint8_t scales[QK_K / 16];
    uint8_t qs[QK_K / 4];
    pg_half d;
    pg_half dmin;
} block_q2_K;
_Static_assert(sizeof(block_q2_K) == 2 * 2 + QK_K / 16 + QK_K / 4, "block_q2_K size");

/* 16 sub-blocks of 16: x = d * (scale6 - 32) * (q - 4*(1 - hbit)), q 2 low bits + 1 high bit
 * from hmask; the sixteen 6-bit scales are packed into 12 bytes. 3.4375 bpw */
typedef struct {
    uint8_t hmask[QK_K / 8];
    uint8_t qs[QK_K / 4];
    uint8_t scales[12];
    pg_half d;
} block_q3_K;
_Static_assert(sizeof(block_q3_K) == 2 + QK_K / 4 + QK_K / 8 + 12, "block_q3_K size");

/* 8 sub-blocks of 32: x = d * sc * q - dmin * m, q in 0..15, 6-bit sc and m packed in 12 bytes. 4.5 bpw */
typedef struct {
    pg_half d;
    pg_half dmin;
    uint8_t scales[K_SCALE_SIZE];
    uint8_t qs[QK_K / 2];
} block_q4_K;
_Static_assert(sizeof(block_q4_K) == 2 * 2 + K_SCALE_SIZE + QK_K / 2, "block_q4_K size");

/* As Q4_K with a fifth bit per value in qh: q in 0..31. 5.5 bpw */
typedef struct {
    pg_half d;
    pg_half dmin;
    uint8_t scales[K_SCALE_SIZE];
    uint8_t qh[QK_K / 8];
    uint8_t qs[QK_K / 2];
} block_q5_K;
_Static_assert(sizeof(block_q5_K) == 2 * 2 + K_SCALE_SIZE + QK_K / 2 + QK_K / 8, "block_q5_K size");

/* 16 sub-blocks of 16: x = d * scales[i] * (q - 32), q = 4 low bits (ql) | 2 high bits (qh) << 4.
 * 6.5625 bpw */
typedef struct {
    uint8_t ql[QK_K / 2];
    uint8_t qh[QK_K / 4];
    int8_t  scales[QK_K / 16];
    pg_half d;
} block_q6_K;
_Static_assert(sizeof(block_q6_K) == 2 + QK_K / 16 + 3 * QK_K / 4, "block_q6_K size");

/* Activation format for every K-quant: x = d * q with a float d, plus the sums of each
 * 16 quants so sub-block mins and offsets are applied once per sub-block. */
typedef struct {
    float   d;
    int8_t  qs[QK_K];
    int16_t bsums[QK_K / 16];
} block_q8_K;
_Static_assert(sizeof(block_q8_K) == 4 + QK_K + QK_K / 16 * 2, "block_q8_K size");

#endif
