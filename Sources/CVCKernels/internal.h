// Private helpers shared by the kernel files (not part of the public header).
#ifndef VCK_INTERNAL_H
#define VCK_INTERNAL_H
#include "CVCKernels.h"
#include <stdlib.h>
#include <string.h>

static inline int vck_has(uint32_t f) { return (vck_cpu_features() & f) == f; }
#define VCK_AVX512_ALL (VCK_CPU_AVX512F | VCK_CPU_AVX512BW | VCK_CPU_AVX512VL)

/// 64-byte aligned scratch; aborts only on allocation failure of a bounded request.
void *vck_alloc(size_t bytes);
void vck_free(void *p);
/// Tells OpenBLAS how many threads to use for the next call (1 inside our own parallel regions).
void vck_blas_threads(int n);
int vck_in_parallel_region(void);
#endif
