/* F32 -> F16 rows with F16C: vcvtps2ph rounding to nearest even gives pg_float_to_half's bits for
 * every float but NaN (checked once over all 2^32 floats; the tests sample them), so 8 values
 * holding a NaN, whose payload the instruction keeps and the scalar code drops, go through the
 * scalar code. */
#if defined(__x86_64__)
#pragma GCC target("avx2,f16c")
#include <stdint.h>
#include <stddef.h>
#include <immintrin.h>
#include "kernels/x86/x86.h"

/* x (n,) -> out (n,) binary16, 8 per vcvtps2ph */
void pg_f16_row_avx2(pg_half *out, const float *x, int64_t n) {
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        const __m256 v = _mm256_loadu_ps(x + i);
        if (_mm256_movemask_ps(_mm256_cmp_ps(v, v, _CMP_UNORD_Q))) {
            for (int k = 0; k < 8; k++) out[i + k] = pg_float_to_half(x[i + k]);
        } else {
            _mm_storeu_si128((__m128i *)(out + i), _mm256_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT));
        }
    }
    for (; i < n; i++) out[i] = pg_float_to_half(x[i]);
}
#endif
