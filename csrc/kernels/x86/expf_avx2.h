/* expf for 8 floats with AVX2 + FMA, giving the values of glibc's expf (2.28 and later, whose
 * x86-64 build runs its FMA variant on every machine that has FMA): the same algorithm in the
 * same double operations, checked against libm on every float in [-104, 0] and on samples of
 * the whole range (tests/kernels/test_kernels_vs_reference.py).
 *
 * The algorithm (ARM's optimized-routines expf, which glibc ships): with N = 32,
 *   k = round(x * N/ln2), r = x * N/ln2 - k (both from one fused multiply-add each),
 *   exp(x) = 2^(k/N) * (1 + C2 r + C1 r^2 + C0 r^3), evaluated in double and rounded once to
 *   float; 2^(k/N) = a table entry for k mod N with k div N added to its exponent field.
 * Include only from a file compiled with #pragma GCC target("avx2,fma"). */
#ifndef PYGGUF_EXPF_AVX2_H
#define PYGGUF_EXPF_AVX2_H

#include <stdint.h>
#include <immintrin.h>

/* bits of the double nearest 2^(i/32), minus i << 47 (i/32 in the exponent field's units), so
 * that adding k << 47 for k = 32q + i gives 2^(k/32) */
static const uint64_t pg_exp2_32nds[32] = {
    0x3ff0000000000000, 0x3fefd9b0d3158574, 0x3fefb5586cf9890f, 0x3fef9301d0125b51,
    0x3fef72b83c7d517b, 0x3fef54873168b9aa, 0x3fef387a6e756238, 0x3fef1e9df51fdee1,
    0x3fef06fe0a31b715, 0x3feef1a7373aa9cb, 0x3feedea64c123422, 0x3feece086061892d,
    0x3feebfdad5362a27, 0x3feeb42b569d4f82, 0x3feeab07dd485429, 0x3feea47eb03a5585,
    0x3feea09e667f3bcd, 0x3fee9f75e8ec5f74, 0x3feea11473eb0187, 0x3feea589994cce13,
    0x3feeace5422aa0db, 0x3feeb737b0cdc5e5, 0x3feec49182a3f090, 0x3feed503b23e255d,
    0x3feee89f995ad3ad, 0x3feeff76f2fb5e47, 0x3fef199bdd85529c, 0x3fef3720dcef9069,
    0x3fef5818dcfba487, 0x3fef7c97337b9b5f, 0x3fefa4afa2a490da, 0x3fefd0765b6e4540,
};

/* 4 floats (as doubles) -> exp, without the range checks of pg_expf8 */
static inline __m128 pg_expf4_core(__m256d x) {
    const __m256d inv_ln2_n = _mm256_set1_pd(0x1.71547652b82fep+0 * 32);
    const __m256d shift = _mm256_set1_pd(0x1.8p+52);           /* adding it rounds to an integer */
    __m256d kd = _mm256_fmadd_pd(inv_ln2_n, x, shift);
    const __m256i ki = _mm256_castpd_si256(kd);                 /* k in the low bits */
    kd = _mm256_sub_pd(kd, shift);
    const __m256d r = _mm256_fmsub_pd(inv_ln2_n, x, kd);
    const __m256i t = _mm256_i64gather_epi64((const long long *)pg_exp2_32nds,
                                             _mm256_and_si256(ki, _mm256_set1_epi64x(31)), 8);
    const __m256d s = _mm256_castsi256_pd(_mm256_add_epi64(t, _mm256_slli_epi64(ki, 47)));
    const __m256d c0 = _mm256_set1_pd(0x1.c6af84b912394p-5 / 32 / 32 / 32);
    const __m256d c1 = _mm256_set1_pd(0x1.ebfce50fac4f3p-3 / 32 / 32);
    const __m256d c2 = _mm256_set1_pd(0x1.62e42ff0c52d6p-1 / 32);
    const __m256d z = _mm256_fmadd_pd(c0, r, c1);
    const __m256d r2 = _mm256_mul_pd(r, r);
    __m256d y = _mm256_fmadd_pd(c2, r, _mm256_set1_pd(1.0));
    y = _mm256_fmadd_pd(z, r2, y);
    return _mm256_cvtpd_ps(_mm256_mul_pd(y, s));
}

/* exp of 8 floats; as glibc: 0 below log(2^-150), inf above log(2^128), NaN stays NaN (x + x) */
static inline __m256 pg_expf8(__m256 x) {
    const __m256 lo = _mm256_castps128_ps256(pg_expf4_core(_mm256_cvtps_pd(_mm256_castps256_ps128(x))));
    __m256 y = _mm256_insertf128_ps(lo, pg_expf4_core(_mm256_cvtps_pd(_mm256_extractf128_ps(x, 1))), 1);
    const __m256 under = _mm256_cmp_ps(x, _mm256_set1_ps(-0x1.9fe368p6f), _CMP_LT_OQ);
    const __m256 over = _mm256_cmp_ps(x, _mm256_set1_ps(0x1.62e42ep6f), _CMP_GT_OQ);
    const __m256 nan = _mm256_cmp_ps(x, x, _CMP_UNORD_Q);
    y = _mm256_andnot_ps(under, y);
    y = _mm256_blendv_ps(y, _mm256_set1_ps(__builtin_inff()), over);
    return _mm256_blendv_ps(y, _mm256_add_ps(x, x), nan);
}

#endif
