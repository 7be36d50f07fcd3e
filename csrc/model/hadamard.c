/* The Walsh-Hadamard rotation of a quantized KV cache (model/hadamard.h). */
#include <math.h>
#include "model/hadamard.h"
#include "kernels/kernels.h"

enum { ROT_MULTIPLE = 64 };   /* llama.cpp rotates heads whose size is a multiple of this */

void pg_hadamard_blocks(int type_k, int type_v, int head_dim, int *block_k, int *block_v) {
    int largest = ROT_MULTIPLE;   /* the largest power of two dividing head_dim, from 64 up */
    while (head_dim % (2 * largest) == 0) largest *= 2;
    const int rotated = head_dim % ROT_MULTIPLE == 0;
    *block_k = rotated && pg_kv_index(type_k) > PG_KV_F16 ? largest : 0;
    *block_v = rotated && pg_kv_index(type_v) > PG_KV_F16 ? ROT_MULTIPLE : 0;
}

/* x (n,) -> sqrt(n) H x, n >= 4 (Sylvester order: pass h pairs value i with i + h inside each
 * run of 2h). The passes h = 1 and 2 are done together on each group of four values (the same
 * operations in the same order); every later pass runs over two runs of h >= 4 contiguous values
 * that cannot overlap, which the compiler vectorizes. */
static void butterflies(float *x, int n) {
    for (int i = 0; i < n; i += 4) {
        const float a = x[i] + x[i + 1], b = x[i] - x[i + 1], c = x[i + 2] + x[i + 3], d = x[i + 2] - x[i + 3];
        x[i] = a + c;
        x[i + 1] = b + d;
        x[i + 2] = a - c;
        x[i + 3] = b - d;
    }
    for (int h = 4; h < n; h *= 2)
        for (int i = 0; i < n; i += 2 * h) {
            float *restrict lo = x + i, *restrict hi = x + i + h;
            for (int j = 0; j < h; j++) {
                const float u = lo[j], v = hi[j];
                lo[j] = u + v;
                hi[j] = u - v;
            }
        }
}

void pg_hadamard_rotate(float *x, int64_t n, int block) {
    /* scaled before the butterflies, as llama.cpp's CPU transform: the same bits as its for 128 */
    const float norm = 1.0f / sqrtf((float)block);   /* exact for 4^k: 64 gives 1/8 */
    for (int64_t b = 0; b + block <= n; b += block) {
        for (int i = 0; i < block; i++) x[b + i] *= norm;
        butterflies(x + b, block);
    }
}
