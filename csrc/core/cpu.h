/* What the CPU runs: instruction-set detection and the ISA the kernels use (api/isa.h). */
#ifndef PYGGUF_CORE_CPU_H
#define PYGGUF_CORE_CPU_H

#include "api/isa.h"
#include "api/status.h"

#endif
