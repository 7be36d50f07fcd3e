/* NEON kernels vs the reference gemm, run under qemu-aarch64 (see Makefile).
 *
 * First the dispatch table's aarch64 rows: NEON's gemms are the _neon kernels, everything else
 * (and every x86 row, not built here) falls back to the scalar references. Then, for every type
 * whose NEON gemm exists, on random data quantized with the reference quantizers, over several
 * shapes: (1) every output within a float tolerance of the reference gemm; (2) the tiling
 * contract: an output computed alone (1 row x 1 token) equals, bit for bit, the same output
 * inside the full gemm. Then the attention loops over a q8_0 / q4_0 cache against the reference
 * loops, and GEGLU against the reference on every binary16 gate and on edge and random rows,
 * bit for bit. Prints "neon: N passed, M failed"; exits 1 on any failure. */
#include <stdint.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <math.h>
#include "kernels/dispatch.h"
#include "kernels/ref.h"
#include "kernels/arm/arm.h"

static uint64_t rng_state = 0x9E3779B97F4A7C15ull;

static float uniform01(void) {   /* xorshift64*, top 24 bits */
    rng_state ^= rng_state >> 12; rng_state ^= rng_state << 25; rng_state ^= rng_state >> 27;
    return (float)((rng_state * 0x2545F4914F6CDD1Dull) >> 40) / 16777216.0f;
}

static float gaussianish(void) {  /* sum of 4 uniforms, centred: enough spread for quantizers */
    return (uniform01() + uniform01() + uniform01() + uniform01() - 2.0f) * 1.7f;
}

typedef struct { int passed, failed; } tally;

static void check(tally *tl, int ok, const char *type, const char *what, int64_t n, int nrows, int ntok) {
    if (ok) { tl->passed++; return; }
    tl->failed++;
    printf("FAIL %s %s n=%lld nrows=%d ntok=%d\n", type, what, (long long)n, nrows, ntok);
}

/* one shape of one type: returns 0 if the buffers could not be allocated */
static int run_case(tally *tl, int type, int64_t n, int nrows, int ntok) {
    const pg_type_traits *t = pg_traits(type), *act = pg_traits(t->act_type);
    const size_t wrow = pg_row_bytes(t, n), arow = pg_row_bytes(act, n);
    float *xw = malloc(sizeof(float) * (size_t)(n * nrows)), *xa = malloc(sizeof(float) * (size_t)(n * ntok));
    uint8_t *w = malloc(wrow * (size_t)nrows), *a = malloc(arow * (size_t)ntok);
    float *yref = malloc(sizeof(float) * (size_t)(nrows * ntok)), *yneon = malloc(sizeof(float) * (size_t)(nrows * ntok));
    if (!xw || !xa || !w || !a || !yref || !yneon) { free(xw); free(xa); free(w); free(a); free(yref); free(yneon); return 0; }
    for (int64_t i = 0; i < n * nrows; i++) xw[i] = gaussianish();
    for (int64_t i = 0; i < n * ntok; i++) xa[i] = gaussianish();
    for (int r = 0; r < nrows; r++) t->quantize_ref(xw + r * n, w + r * wrow, n);
    for (int k = 0; k < ntok; k++) act->quantize_ref(xa + k * n, a + k * arow, n);

    const pg_gemm_fn ref = pg_kernels(PG_ISA_SCALAR)->type[type].gemm.run, neon = pg_kernels(PG_ISA_NEON)->type[type].gemm.run;
    ref(n, w, wrow, nrows, a, arow, ntok, yref, (size_t)nrows);
    neon(n, w, wrow, nrows, a, arow, ntok, yneon, (size_t)nrows);

    int close = 1, tiled = 1;
    for (int k = 0; k < ntok; k++)
        for (int r = 0; r < nrows; r++) {
            /* integer block dots are exact; only the float accumulation order differs */
            double scale = 0.0;
            for (int64_t i = 0; i < n; i++) scale += fabs((double)xw[r * n + i] * xa[k * n + i]);
            const float got = yneon[k * nrows + r], want = yref[k * nrows + r];
            if (!(fabs((double)got - want) <= 2e-5 * scale + 1e-6)) {
                if (close) printf("  %s r=%d t=%d neon=%.9g ref=%.9g scale=%g\n", t->name, r, k, got, want, scale);
                close = 0;
            }
            float alone;
            neon(n, w + r * wrow, wrow, 1, a + k * arow, arow, 1, &alone, 1);
            if (memcmp(&alone, &got, sizeof(float)) != 0) tiled = 0;
        }
    check(tl, close, t->name, "matches reference", n, nrows, ntok);
    check(tl, tiled, t->name, "tile-invariant", n, nrows, ntok);
    free(xw); free(xa); free(w); free(a); free(yref); free(yneon);
    return 1;
}

static int ends_with(const char *s, const char *end) {
    if (!s) return 0;
    const size_t n = strlen(s), m = strlen(end);
    return n >= m && strcmp(s + n - m, end) == 0;
}

/* The table's choices on aarch64: a _neon gemm for every type with a reference gemm, the scalar
 * kernels for the rest of NEON's row, and the scalar row wherever an x86 ISA is asked for */
static void check_table(tally *tl) {
    const pg_isa_kernels *ref = pg_kernels(PG_ISA_SCALAR), *neon = pg_kernels(PG_ISA_NEON);
    int gemms = 0, ok = 1;
    for (int type = 0; type < PG_TYPE_COUNT; type++) {
        const pg_type_kernels *r = &ref->type[type], *k = &neon->type[type];
        if (r->gemm.run) {
            gemms++;
            if (!k->gemm.name || !ends_with(k->gemm.name, "_neon")) ok = 0;
        }
        if (k->gemm_r8.run || k->gemm_r8_amx.run || k->quantize_act.run != r->quantize_act.run) ok = 0;
        for (int isa = PG_ISA_AVX2; isa <= PG_ISA_AVX512; isa++)
            if (memcmp(&pg_kernels(isa)->type[type], r, sizeof *r) != 0) ok = 0;
    }
    if (neon->rmsnorm.run != ref->rmsnorm.run || neon->swiglu.run != ref->swiglu.run ||
        neon->geglu.run != pg_geglu_neon || ref->geglu.run != pg_geglu_ref ||
        neon->f16_row.run != ref->f16_row.run || pg_attention_for(PG_ISA_NEON, 64) != &pg_attention_kernels_neon ||
        pg_attention_for(PG_ISA_NEON, 48) != ref->attention)
        ok = 0;
    check(tl, ok && gemms == 13, "table", "aarch64 choices", 0, 0, 0);
}

/* n_kv rows of head_dim values of a cache type (the reference quantizer's blocks), 0 if no memory */
static void *cache_rows(int type, int n_kv, int head_dim) {
    const pg_type_traits *t = pg_traits(type);
    const size_t row = pg_row_bytes(t, head_dim);
    float *x = malloc(sizeof(float) * (size_t)head_dim);
    uint8_t *rows = malloc(row * (size_t)n_kv);
    if (!x || !rows) { free(x); free(rows); return NULL; }
    for (int j = 0; j < n_kv; j++) {
        for (int i = 0; i < head_dim; i++) x[i] = gaussianish();
        t->quantize_ref(x, rows + (size_t)j * row, head_dim);
    }
    free(x);
    return rows;
}

/* The NEON scores against a q8_0 / q4_0 K and the NEON V sums equal the reference's bit for bit
 * (a score against K row j and an output column depend only on their own inputs) */
static void run_attention_case(tally *tl, int type, int n_rep, int n_kv, int head_dim) {
    const int kv = pg_kv_index(type);
    const pg_attention_kernels *neon = pg_attention_for(PG_ISA_NEON, head_dim), *ref = &pg_attention_kernels_ref;
    const size_t n_s = (size_t)n_rep * n_kv, n_out = (size_t)n_rep * head_dim;
    float *q = malloc(sizeof(float) * n_out), *p = malloc(sizeof(float) * n_s);
    float *s_ref = malloc(sizeof(float) * n_s), *s_neon = malloc(sizeof(float) * n_s);
    float *o_ref = malloc(sizeof(float) * n_out), *o_neon = malloc(sizeof(float) * n_out);
    float *work = malloc(sizeof(float) * pg_attention_work_floats(n_rep, head_dim));
    void *k = cache_rows(type, n_kv, head_dim), *v = cache_rows(type, n_kv, head_dim);
    if (q && p && s_ref && s_neon && o_ref && o_neon && work && k && v) {
        for (size_t i = 0; i < n_out; i++) q[i] = gaussianish();
        for (size_t i = 0; i < n_s; i++) p[i] = uniform01();
        ref->scores[kv](s_ref, q, n_rep, k, n_kv, head_dim, 0.125f, work);
        neon->scores[kv](s_neon, q, n_rep, k, n_kv, head_dim, 0.125f, work);
        ref->accumulate[kv](o_ref, p, n_rep, v, n_kv, head_dim, work);
        neon->accumulate[kv](o_neon, p, n_rep, v, n_kv, head_dim, work);
        check(tl, memcmp(s_ref, s_neon, sizeof(float) * n_s) == 0, pg_traits(type)->name, "attention scores",
              head_dim, n_rep, n_kv);
        check(tl, memcmp(o_ref, o_neon, sizeof(float) * n_out) == 0, pg_traits(type)->name, "attention V sum",
              head_dim, n_rep, n_kv);
    } else {
        check(tl, 0, pg_traits(type)->name, "attention allocation", head_dim, n_rep, n_kv);
    }
    free(q); free(p); free(s_ref); free(s_neon); free(o_ref); free(o_neon); free(work); free(k); free(v);
}

static void check_attention(tally *tl) {
    static const int TYPES[] = {PG_Q8_0, PG_Q4_0}, HEADS[] = {1, 2, 3, 4, 7}, POSITIONS[] = {1, 3, 4, 5, 19};
    static const int HEAD_DIMS[] = {32, 64, 128};
    for (size_t t = 0; t < 2; t++)
        for (size_t h = 0; h < sizeof HEADS / sizeof *HEADS; h++)
            for (size_t j = 0; j < sizeof POSITIONS / sizeof *POSITIONS; j++)
                for (size_t d = 0; d < sizeof HEAD_DIMS / sizeof *HEAD_DIMS; d++)
                    run_attention_case(tl, TYPES[t], HEADS[h], POSITIONS[j], HEAD_DIMS[d]);
}

/* the same bits, or both NaN (a NaN's payload is not part of the contract) */
static int same_floats(const float *a, const float *b, int64_t n) {
    for (int64_t i = 0; i < n; i++)
        if (memcmp(&a[i], &b[i], sizeof(float)) != 0 && !(isnan(a[i]) && isnan(b[i]))) return 0;
    return 1;
}

/* NEON's GEGLU and the reference's on g, u (n,): 1 when they agree */
static int geglu_agrees(const float *g, const float *u, int64_t n) {
    float *a = malloc(sizeof(float) * (size_t)(n ? n : 1)), *b = malloc(sizeof(float) * (size_t)(n ? n : 1));
    int ok = a && b;
    if (ok) {
        memcpy(a, g, sizeof(float) * (size_t)n);
        memcpy(b, g, sizeof(float) * (size_t)n);
        pg_kernels(PG_ISA_SCALAR)->geglu.run(a, u, n);
        pg_kernels(PG_ISA_NEON)->geglu.run(b, u, n);
        ok = same_floats(a, b, n);
    }
    free(a); free(b);
    return ok;
}

/* GEGLU: every binary16 gate with u = 1 (each table entry, the clamps, NaN), then rows of every
 * length up to 41 (the tail) of random gates and the edges, with ups that hold inf and NaN */
static void check_geglu(tally *tl) {
    enum { HALVES = 1 << 16, ROW = 41 };
    float *g = malloc(sizeof(float) * HALVES), *u = malloc(sizeof(float) * HALVES);
    if (!g || !u) { free(g); free(u); check(tl, 0, "geglu", "allocation", 0, 0, 0); return; }
    for (int h = 0; h < HALVES; h++) { g[h] = pg_half_to_float((pg_half)h); u[h] = 1.0f; }
    check(tl, geglu_agrees(g, u, HALVES), "geglu", "every binary16 gate", HALVES, 0, 0);
    static const float EDGES[] = {-10.0f, 10.0f, -9.999f, 9.999f, -10.000001f, 9.999999f, 1.00048828125f,
                                  0.0f, -0.0f, 1e-30f, 65520.0f, -1e30f, INFINITY, -INFINITY, NAN, -NAN};
    for (int i = 0; i < ROW; i++) {
        g[i] = i % 3 == 0 ? EDGES[(i / 3) % (sizeof EDGES / sizeof *EDGES)] : gaussianish() * 3.0f;
        u[i] = i % 7 == 1 ? INFINITY : i % 7 == 4 ? NAN : gaussianish();
    }
    for (int n = 0; n <= ROW; n++)
        check(tl, geglu_agrees(g, u, n) && geglu_agrees(g + ROW - n, u + ROW - n, n), "geglu", "rows", n, 0, 0);
    free(g); free(u);
}

int main(void) {
    if (!pg_isa_supported(PG_ISA_NEON)) {
        printf("neon: 0 passed, 1 failed (this CPU or emulator lacks dotprod: run qemu-aarch64 -cpu max)\n");
        return 1;
    }
    static const int ROWS[] = {1, 4, 5, 17};
    static const int TOKENS[] = {1, 2, 3, 5};
    static const int BLOCKS[] = {1, 3, 18};
    tally tl = {0, 0};
    check_table(&tl);
    int types = 0;
    for (int type = 0; type < PG_TYPE_COUNT; type++) {
        const pg_type_traits *t = pg_traits(type);
        if (!t || !t->quantize_ref || !t->vec_dot_ref) continue;
        const pg_type_traits *act = pg_traits(t->act_type);
        pg_gemm_fn neon = pg_kernels(PG_ISA_NEON)->type[type].gemm.run, ref = pg_kernels(PG_ISA_SCALAR)->type[type].gemm.run;
        if (!act || !act->quantize_ref || !neon || !ref || neon == ref) continue;   /* no NEON kernel */
        types++;
        for (size_t b = 0; b < sizeof BLOCKS / sizeof *BLOCKS; b++) {
            /* float types (block size 1) also get a length that is not a multiple of 4 */
            int64_t n = BLOCKS[b] * (t->blck_size == 1 ? 32 : t->blck_size) + (t->blck_size == 1 && b == 1 ? 7 : 0);
            for (size_t i = 0; i < sizeof ROWS / sizeof *ROWS; i++)
                for (size_t j = 0; j < sizeof TOKENS / sizeof *TOKENS; j++)
                    if (!run_case(&tl, type, n, ROWS[i], TOKENS[j])) check(&tl, 0, t->name, "allocation", n, ROWS[i], TOKENS[j]);
        }
    }
    if (types == 0) check(&tl, 0, "-", "no NEON kernel found in the dispatch table", 0, 0, 0);
    check_attention(&tl);
    check_geglu(&tl);
    printf("neon: %d passed, %d failed (%d types)\n", tl.passed, tl.failed, types);
    return tl.failed ? 1 : 0;
}
