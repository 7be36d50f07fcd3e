/* Storing the first n (1..8) float lanes of a vector, for the end of a row that is not a whole
 * vector long (included by AVX2 translation units after their target pragma). */
#ifndef PYGGUF_LANES_AVX2_H
#define PYGGUF_LANES_AVX2_H

#include <immintrin.h>

static inline void store_lanes(float *dst, __m256 v, int n) {
    if (n >= 8) {
        _mm256_storeu_ps(dst, v);
        return;
    }
    float tmp[8];
    _mm256_storeu_ps(tmp, v);
    for (int j = 0; j < n; j++) dst[j] = tmp[j];
}

#endif
