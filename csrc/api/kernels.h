/* The type table and the reference quantizers (cdef'd by cffi). Every entry point checks its
 * arguments and returns PG_OK or a negative PG_E* code (api/status.h). */
#ifndef PYGGUF_API_KERNELS_H
#define PYGGUF_API_KERNELS_H

/* A type's block geometry and activation format; PG_EBADTYPE for an unknown id */
int pg_type_info(int type, int64_t *blck_size, size_t *type_size, int *act_type);

/* The address alignment a type's blocks need (that of its widest field); 0 for an unknown id.
 * Entry points that read blocks refuse (PG_EBADARG) a pointer that is not a multiple of it. */
size_t pg_type_alignment(int type);

/* n floats <-> blocks with the reference quantizer / dequantizer (n a multiple of the block size;
 * the blocks at pg_type_alignment) */
int pg_quantize(int type, const float *x, void *y, int64_t n);
int pg_dequantize(int type, const void *x, float *y, int64_t n);

#endif
