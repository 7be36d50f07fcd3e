/* Test entry points of the kernels (cdef'd by cffi, like every csrc/testing header): each ISA's
 * kernels called on their own, beside the references, and the dispatch table's choices. Not part
 * of the product API (csrc/api/): pygguf never calls them; tests/kernels/harness.py and bench/
 * do. They are compiled into the one extension, because a second one would need its own copy of
 * every kernel it tests. Each checks its arguments and returns PG_OK or a PG_E* code. */
#ifndef PYGGUF_TESTING_KERNELS_H
#define PYGGUF_TESTING_KERNELS_H

/* *s = the reference dot of one weight row w with one activation row a (quants/<t>.c) */
int pg_vec_dot(int type, int64_t n, float *s, const void *w, const void *a);

/* n floats -> blocks of an activation format with the quantizer an ISA's row gives the forward
 * pass; PG_ENOKERNEL when this machine cannot run the ISA */
int pg_quantize_activation_isa(int isa, int type, const float *x, void *y, int64_t n);

/* One ISA's gemm of the GGUF rows, single-threaded: y[t*ldy + r] = dot(W row r, A row t), A
 * already in the type's activation format (pg_type_info) */
int pg_gemm(int isa, int type, int64_t n, const void *w, size_t w_stride, int nrows,
            const void *a, size_t a_stride, int ntok, float *y, size_t ldy);

/* The repacked 8-row layout (kernels/repack.h, where it is described): its size, the repacker,
 * and an ISA's gemm_r8 kernel over it (PG_ENOKERNEL where the row has none) */
size_t pg_repack_r8_bytes(int type, int64_t n, int nrows);
int pg_repack_r8(int type, int64_t n, const void *w, size_t w_stride, int nrows, void *out, size_t out_bytes);
int pg_gemm_r8(int isa, int type, int64_t n, const void *packed, size_t packed_bytes, int nrows,
               const void *a, size_t a_stride, int ntok, float *y, size_t ldy);

/* The AMX tile kernel of the repacked layout for any type and ntok >= 1 (the model gives it Q8_0
 * batches only): real tiles (emulate 0; PG_EBADISA without pg_amx_available) or the same driver
 * with the tile product computed in C (emulate 1, any AVX2 CPU). Equal bit for bit to pg_gemm_r8. */
int pg_gemm_r8_amx(int emulate, int type, int64_t n, const void *packed, size_t packed_bytes, int nrows,
                   const void *a, size_t a_stride, int ntok, float *y, size_t ldy);

/* The dispatch table's choice, without running anything: the name of the kernel `isa`'s row
 * gives for op on `type` (gemm, gemm_r8, quantize_act) or on heads of head_dim (attention), for a
 * batch of ntok tokens with AMX allowed or not (gemm_r8: the AMX tiles or the repacked kernel);
 * NULL where there is none. */
enum { PG_OP_GEMM, PG_OP_GEMM_R8, PG_OP_QUANTIZE_ACT, PG_OP_RMSNORM, PG_OP_SWIGLU, PG_OP_GEGLU, PG_OP_F16_ROW,
       PG_OP_ATTENTION };
const char *pg_kernel_name(int isa, int op, int type, int ntok, int amx, int head_dim);

#endif
