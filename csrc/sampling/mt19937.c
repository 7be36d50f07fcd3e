/* std::mt19937 and the two libstdc++ distributions llama.cpp's samplers read from it, so a fixed
 * seed replays its draws. One generator state is shared by the Python samplers (through
 * pygguf.samplers.rng.Mt19937) and the C chain, so either path continues the other's stream. */
#include <stdint.h>
#include <stddef.h>
#include "api/status.h"
#include "api/sampling.h"

enum { MT_N = 624, MT_M = 397 };

/* init_genrand: what std::mt19937(seed) does */
void pg_mt19937_seed(pg_mt19937 *rng, uint32_t seed) {
    rng->state[0] = seed;
    for (int i = 1; i < MT_N; i++) {
        const uint32_t prev = rng->state[i - 1];
        rng->state[i] = 1812433253u * (prev ^ (prev >> 30)) + (uint32_t)i;
    }
    rng->index = MT_N;
}

/* regenerate all 624 words at once (the standard's "twist") */
static void twist(pg_mt19937 *rng) {
    uint32_t *s = rng->state;
    for (int i = 0; i < MT_N; i++) {
        const uint32_t y = (s[i] & 0x80000000u) | (s[(i + 1) % MT_N] & 0x7fffffffu);
        s[i] = s[(i + MT_M) % MT_N] ^ (y >> 1) ^ ((y & 1u) ? 0x9908b0dfu : 0u);
    }
    rng->index = 0;
}

uint32_t pg_mt19937_next(pg_mt19937 *rng) {
    if (rng->index < 0 || rng->index >= MT_N) twist(rng);
    uint32_t y = rng->state[rng->index++];
    y ^= y >> 11;
    y ^= (y << 7) & 0x9d2c5680u;
    y ^= (y << 15) & 0xefc60000u;
    y ^= y >> 18;
    return y;
}

int pg_mt19937_fill(pg_mt19937 *rng, uint32_t *out, int64_t n) {
    if (n < 0) return PG_EBADARG;
    for (int64_t i = 0; i < n; i++) out[i] = pg_mt19937_next(rng);
    return PG_OK;
}

/* uniform_real_distribution<double>(0, 1): generate_canonical reads two words, low first */
double pg_mt19937_uniform(pg_mt19937 *rng) {
    const double lo = (double)pg_mt19937_next(rng);
    const double hi = (double)pg_mt19937_next(rng);
    const double r = (lo + hi * 4294967296.0) / 18446744073709551616.0;
    return r < 1.0 ? r : 0x1.fffffffffffffp-1;   /* the largest double below 1, as libstdc++ */
}

/* uniform_real_distribution<float>(0, 1): one word */
float pg_mt19937_uniform_float(pg_mt19937 *rng) {
    const float r = (float)pg_mt19937_next(rng) / 4294967296.0f;
    return r < 1.0f ? r : 0x1.fffffep-1f;
}
