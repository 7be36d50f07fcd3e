/* Searches for a sub-block's scale and min shared by several K-quant reference quantizers. */
#ifndef PYGGUF_KQUANT_MAKE_H
#define PYGGUF_KQUANT_MAKE_H

#include <stdint.h>

/* Fit x[0..n) ~ scale * L - min with L in 0..nmax under weights, trying nstep+1 stretched grids
 * (rmin + rdelta*is + nmax levels); returns the scale and stores the (positive) min. llama.cpp's
 * make_qkx2_quants, float operation for float operation. */
float pg_make_qkx2_quants(int n, int nmax, const float *x, const float *weights, uint8_t *L,
                          float *the_min, uint8_t *Laux, float rmin, float rdelta, int nstep,
                          int use_mad);

#endif
