/* The model's weight matrices as the gemm reads them. Q4_0, Q4_1, Q8_0, Q4_K and Q5_K matrices
 * are repacked once at load (kernels/repack.h) when the running ISA's row of the dispatch table
 * has a kernel for it (x86). Q4_0/Q4_1/Q8_0 go in 8-row groups, so the kernel loads each weight
 * vector whole instead of gathering and transposing 8 rows per block (measured on SmolLM2-135M
 * Q4_1: 1.2-2x the GGUF-layout kernels for 1-16 tokens); Q4_K/Q5_K sliced, so the scales cost one
 * madd per super-block (4096x4096, one thread: 1.2x).
 *
 * Memory: a repacked matrix is a malloc'ed copy, and the mapped GGUF rows stay valid (the
 * embedding table, the fallback for another ISA). So that a big model does not take its size
 * twice, the file's pages under a matrix are handed back (MADV_DONTNEED) as soon as it is
 * repacked, when the map is a shared read-only file mapping (pg_model_params.map_is_file): they
 * leave the process's resident set and stay in the page cache, which the kernel may reclaim, and
 * come back from the file only if the GGUF rows are read again. The peak is then the model plus
 * the one matrix being repacked: a 7B-shaped Q4_0 file (3.53 GiB) loaded, repacked and run peaks
 * at 3.52 GiB resident where keeping both took 6.96 (bench/repack_rss.py). A map of the
 * process's own memory (Model.from_tensors) cannot be handed back and keeps both. Rewriting the
 * rows in place of the mapping (a private copy-on-write mapping) would save the copy as well but
 * lose the GGUF rows that the embedding of a tied output and a switch of ISA read. */
#include <stdint.h>
#include <stddef.h>
#include <stdatomic.h>
#include <stdlib.h>
#if defined(__unix__) || defined(__APPLE__)
#include <sys/mman.h>
#include <unistd.h>
#endif
#include "model/model.h"
#include "kernels/repack.h"

#define R8_GROUP 8   /* rows per repacked group */

/* One matrix's repacking, shared by the pool's threads: each takes a run of whole 8-row groups
 * (the interleaved layouts' unit; the sliced one is per row), at the same offset in both layouts */
typedef struct {
    const pg_weight *w;
    char *packed;
    atomic_int failed;   /* a share's repacker refused its rows */
} repack_job;

static void repack_share(void *arg, int ith, int nth) {
    repack_job *job = arg;
    const pg_weight *w = job->w;
    int64_t r0, r1;
    pg_split(w->rows, R8_GROUP, ith, nth, &r0, &r1);
    const size_t offset = (size_t)r0 * w->row_bytes;
    const int rc = r1 > r0 ? pg_repack_r8(w->type, w->n, w->data + offset, w->row_bytes, (int)(r1 - r0),
                                          job->packed + offset, pg_repack_r8_bytes(w->type, w->n, (int)(r1 - r0)))
                           : PG_OK;
    if (rc != PG_OK) atomic_store(&job->failed, 1);
}

/* The repacking of a model's matrices runs in its thread pool (pool NULL: on this thread only):
 * copying a 7B file's 4 GB with one thread took longer than llama.cpp's whole load. */
void pg_weight_repack(pg_weight *w, const pg_isa_kernels *k, pg_pool *pool) {
    w->packed = NULL;
    if (!k->type[w->type].gemm_r8.run || w->rows > INT32_MAX) return;
    const size_t bytes = pg_repack_r8_bytes(w->type, w->n, (int)w->rows);
    char *packed = bytes ? malloc(bytes) : NULL;
    if (!packed) return;   /* the GGUF rows serve, only slower */
    repack_job job = {w, packed, 0};
    if (!pool || pg_pool_run(pool, repack_share, &job) != PG_OK) repack_share(&job, 0, 1);   /* busy: alone */
    if (atomic_load(&job.failed)) {
        free(packed);
        return;
    }
    w->packed = packed;
}

/* Hand back the whole pages of the file mapping under W's rows (a hint: nothing is lost, a
 * shared file mapping reads them again from the page cache on the next touch). They are unlocked
 * first: with --mlock the mapping is locked before the load (memory_lock.py), and the kernel
 * refuses to drop locked pages, which would keep both copies resident. */
static void give_back_gguf_rows(const pg_weight *w) {
#if defined(MADV_DONTNEED)
    const uintptr_t page = (uintptr_t)sysconf(_SC_PAGESIZE);
    const uintptr_t start = ((uintptr_t)w->data + page - 1) / page * page;
    const uintptr_t end = ((uintptr_t)w->data + (uintptr_t)(w->rows * w->row_bytes)) / page * page;
    if (end > start) {
        munlock((void *)start, end - start);   /* a no-op on pages that were not locked */
        madvise((void *)start, end - start, MADV_DONTNEED);
    }
#else
    (void)w;
#endif
}

void pg_weight_free_packed(pg_weight *w) {
    free(w->packed);
    w->packed = NULL;
}

/* fn on every matrix the forward multiplies by (the embedding is looked up, not multiplied) */
static void for_each_matrix(pg_model *m, void (*fn)(pg_model *, pg_weight *, const pg_isa_kernels *),
                            const pg_isa_kernels *k) {
    fn(m, &m->w.output, k);
    for (int l = 0; l < m->p.n_layer; l++) {
        pg_layer *L = &m->w.layers[l];
        pg_weight *matrices[] = {&L->wq,     &L->wk,        &L->wv,      &L->wo,       &L->w_gate, &L->w_up,
                                 &L->w_down, &L->router, &L->gate_exps, &L->up_exps, &L->down_exps};
        for (size_t i = 0; i < sizeof matrices / sizeof matrices[0]; i++)
            if (matrices[i]->data) fn(m, matrices[i], k);   /* a dense layer has no experts, and the reverse */
    }
}

static void free_packed(pg_model *m, pg_weight *w, const pg_isa_kernels *k) {
    (void)m, (void)k;
    pg_weight_free_packed(w);
}

/* pg_weight_repack in the model's pool, then (a file mapping) the GGUF rows' pages handed back */
static void repack_in_model(pg_model *m, pg_weight *w, const pg_isa_kernels *k) {
    pg_weight_repack(w, k, m->pool);
    if (w->packed && m->p.map_is_file) give_back_gguf_rows(w);
}

void pg_weights_repack(pg_model *m, const pg_isa_kernels *k) {
    for_each_matrix(m, repack_in_model, k);
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
