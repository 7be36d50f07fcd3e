/* The model's weight matrices as the gemm reads them. Q4_0, Q4_1 and Q8_0 matrices are repacked
 * once at load into the 8-row layout (kernels/repack.h) when the running ISA's row of the dispatch
 * table has a kernel for it (x86): 8 rows' blocks interleaved, so the kernel loads each weight
 * vector whole instead of gathering and transposing 8 rows per block. Measured on SmolLM2-135M
 * Q4_1: 1.2-2x the GGUF-layout kernels for 1-16 tokens. The mapped GGUF rows stay the embedding
 * table and the fallback for any other ISA. */
#include <stdint.h>
#include <stddef.h>
#include <stdlib.h>
#include "model/model.h"
#include "kernels/repack.h"

#define R8_GROUP 8   /* rows per repacked group */

void pg_weight_repack(pg_weight *w, const pg_isa_kernels *k) {
    w->packed = NULL;
    if (!k->type[w->type].gemm_r8.run || w->rows > INT32_MAX) return;
    const size_t bytes = pg_repack_r8_bytes(w->type, w->n, (int)w->rows);
    void *packed = bytes ? malloc(bytes) : NULL;
    if (!packed) return;   /* the GGUF rows serve, only slower */
    if (pg_repack_r8(w->type, w->n, w->data, w->row_bytes, (int)w->rows, packed, bytes) != PG_OK) {
        free(packed);
        return;
    }
    w->packed = packed;
}

void pg_weight_free_packed(pg_weight *w) {
    free(w->packed);
    w->packed = NULL;
}

/* fn on every matrix the forward multiplies by (the embedding is looked up, not multiplied) */
static void for_each_matrix(pg_model *m, void (*fn)(pg_weight *, const pg_isa_kernels *), const pg_isa_kernels *k) {
    fn(&m->w.output, k);
    for (int l = 0; l < m->p.n_layer; l++) {
        pg_layer *L = &m->w.layers[l];
        pg_weight *matrices[] = {&L->wq, &L->wk, &L->wv, &L->wo, &L->w_gate, &L->w_up, &L->w_down};
        for (size_t i = 0; i < sizeof matrices / sizeof matrices[0]; i++) fn(matrices[i], k);
    }
}

static void free_packed(pg_weight *w, const pg_isa_kernels *k) {
    (void)k;
    pg_weight_free_packed(w);
}

void pg_weights_repack(pg_model *m, const pg_isa_kernels *k) {
    for_each_matrix(m, pg_weight_repack, k);
}

void pg_weights_free_packed(pg_model *m) {
    if (m->w.layers) for_each_matrix(m, free_packed, NULL);
}

void pg_weight_gemm(const pg_weight *w, const pg_isa_kernels *k, int64_t r0, int64_t r1, const void *a,
                    size_t a_stride, int ntok, float *y, size_t ldy) {
    const pg_type_kernels *tk = &k->type[w->type];
    const pg_gemm_r8_fn packed_gemm = w->packed && r0 % R8_GROUP == 0 ? pg_r8_kernel(tk, ntok, pg_amx_available()) : NULL;
    if (packed_gemm) {
        const size_t group_bytes = (size_t)R8_GROUP * w->row_bytes;
        packed_gemm(w->n, (const char *)w->packed + (size_t)(r0 / R8_GROUP) * group_bytes, (int)(r1 - r0),
                    a, a_stride, ntok, y, ldy);
        return;
    }
    tk->gemm.run(w->n, w->data + r0 * w->row_bytes, w->row_bytes, (int)(r1 - r0), a, a_stride, ntok, y, ldy);
}
