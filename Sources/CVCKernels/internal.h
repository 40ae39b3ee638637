// Private helpers shared by the kernel files (not part of the public header).
#ifndef VCK_INTERNAL_H
#define VCK_INTERNAL_H
#include "CVCKernels.h"

// No implicit a*b+c -> fma contraction: a SIMD function (compiled for AVX-512, where FMA exists)
// and its baseline scalar twin must round identically. Kernels that want FMA call it explicitly.
#pragma STDC FP_CONTRACT OFF
#include <stdlib.h>
#include <string.h>

/// Multiversioned auto-vectorised loops (no -m flags on the target): the loader picks the best
/// clone for the CPU. Only for code whose results do not depend on the vector width (elementwise
/// work, or reductions the compiler may not reorder).
#define VCK_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))

static inline int vck_has(uint32_t f) { return (vck_cpu_features() & f) == f; }
#define VCK_AVX512_ALL (VCK_CPU_AVX512F | VCK_CPU_AVX512BW | VCK_CPU_AVX512VL)

/// 64-byte aligned scratch; aborts only on allocation failure of a bounded request.
void *vck_alloc(size_t bytes);
void vck_free(void *p);
/// Tells OpenBLAS how many threads to use for the next call (1 inside our own parallel regions).
void vck_blas_threads(int n);
int vck_in_parallel_region(void);
/// vck_linear for f16 / bf16 / q8_0 / packed weights (gemm_packed.c); force_ref picks the scalar twin.
void vck_linear_lowp(int64_t m, const float *a, int64_t lda, const vck_weight *w, const float *bias, float *c,
                     int64_t ldc, float beta, int force_ref);
/// C[i] = sum over t of A[offsets[t] + i] W_t^T for i in [0, m), C overwritten (no bias), where
/// A has `rows` rows: the activations are quantized / rounded once for all the weights instead of
/// once per product, with the same per-row results as nw vck_linear calls (beta 0 then 1).
/// Returns 0, doing nothing, unless every w[t] is packed with one dtype and shape and the
/// precision mode prepares activations (q8_0 and bf16 outside exact fp32 activations).
int vck_linear_shifted(int64_t m, const float *a, int64_t lda, int64_t rows, const vck_weight *w, int nw,
                       const int64_t *offsets, float *c, int64_t ldc);
/// dst[0..c) = act(src * scale + shift) with sample `sample`'s affine of n (conv.c); avx: the
/// AVX-512 form (the caller checked the CPU).
void vck_prenorm_row(const vck_prenorm *n, int avx, int64_t sample, const float *src, float *dst, int64_t c);
/// A packed copy of `w` for a caller that runs vck_linear with it many times (vck_linear packs an
/// unpacked weight on every call); NULL where vck_linear would not use one (already packed, f32
/// on the OpenBLAS path, K = 0) or memory ran out: then pass `w` itself.
vck_packed_weight *vck_pack_for_reuse(const vck_weight *w);
/// C = op(A) op(B) + beta C with the own f32 kernels (alpha 1); returns 0 (nothing done) where
/// only the scalar path exists.
int vck_sgemm_own(int trans_a, int trans_b, int64_t m, int64_t n, int64_t k, const float *a, int64_t lda,
                  const float *b, int64_t ldb, float beta, float *c, int64_t ldc);
/// y[j * rows + i] = x[i * ldx + j] for a rows x cols block of x with row stride ldx.
void vck_transpose_strided(const float *x, int64_t rows, int64_t cols, int64_t ldx, float *y);
#endif
