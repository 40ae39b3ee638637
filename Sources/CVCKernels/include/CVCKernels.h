// CVCKernels: the numeric kernels of swift-videocrafter.
//
// Conventions
// - Every symbol has the `vck_` prefix. Nothing from cblas.h or immintrin.h leaks through this header.
// - Activations are float32, row-major, channels-last: a tensor of tokens x channels. "rows" are
//   tokens, "cols" are channels.
// - A SIMD kernel `vck_X` has a portable scalar twin `vck_X_ref` with identical results (bit-exact
//   where the operation is exact, e.g. conversions; within rounding for reductions). The dispatching
//   entry point picks the SIMD path only when vck_cpu_features() reports the instructions.
// - Functions never allocate unboundedly: scratch is sized by the caller or bounded internally.
#ifndef CVCKERNELS_H
#define CVCKERNELS_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

// ---------------------------------------------------------------------------------------------
// CPU features and threads
// ---------------------------------------------------------------------------------------------
enum {
    VCK_CPU_AVX2 = 1u << 0,
    VCK_CPU_FMA = 1u << 1,
    VCK_CPU_F16C = 1u << 2,
    VCK_CPU_AVX512F = 1u << 3,
    VCK_CPU_AVX512BW = 1u << 4,
    VCK_CPU_AVX512VL = 1u << 5,
    VCK_CPU_AVX512VNNI = 1u << 6,
    VCK_CPU_AVX512BF16 = 1u << 7,
    VCK_CPU_SSE42 = 1u << 8,
};
/// Bit set of VCK_CPU_* detected at run time (cached after the first call).
uint32_t vck_cpu_features(void);
/// Restrict the features the dispatchers may use (mask & detected). Tests use this to force the
/// scalar or AVX2 paths; 0xffffffff restores everything.
void vck_cpu_set_mask(uint32_t mask);

/// One setting for our thread pool and OpenBLAS (no oversubscription). n < 1 means "all cores".
void vck_set_threads(int n);
int vck_get_threads(void);
/// Runs fn(ctx, i) for i in [0, ntasks) on the pool (the caller participates). Nested calls run
/// serially on the calling thread.
void vck_parallel_for(int ntasks, void (*fn)(void *ctx, int task), void *ctx);

// ---------------------------------------------------------------------------------------------
// Conversions (round to nearest even, NaN stays NaN)
// ---------------------------------------------------------------------------------------------
void vck_f16_to_f32(const uint16_t *src, float *dst, size_t n);
void vck_f16_to_f32_ref(const uint16_t *src, float *dst, size_t n);
void vck_f32_to_f16(const float *src, uint16_t *dst, size_t n);
void vck_f32_to_f16_ref(const float *src, uint16_t *dst, size_t n);
void vck_bf16_to_f32(const uint16_t *src, float *dst, size_t n);
void vck_bf16_to_f32_ref(const uint16_t *src, float *dst, size_t n);
void vck_f32_to_bf16(const float *src, uint16_t *dst, size_t n);
void vck_f32_to_bf16_ref(const float *src, uint16_t *dst, size_t n);

// ---------------------------------------------------------------------------------------------
// q8_0: blocks of 32 int8 values with one fp16 scale (ggml q8_0 layout, 34 bytes per block).
// A row of K values is stored as ceil(K/32) blocks; a partial last block is zero-padded.
// ---------------------------------------------------------------------------------------------
#define VCK_Q8_BLOCK 32
typedef struct {
    uint16_t d;                  // fp16 scale: amax / 127
    int8_t qs[VCK_Q8_BLOCK];     // q = round(x / d)
} vck_block_q8_0;

size_t vck_q8_0_row_bytes(size_t k);
void vck_quantize_row_q8_0(const float *src, vck_block_q8_0 *dst, size_t k);
void vck_quantize_row_q8_0_ref(const float *src, vck_block_q8_0 *dst, size_t k);
void vck_dequantize_row_q8_0(const vck_block_q8_0 *src, float *dst, size_t k);
void vck_dequantize_row_q8_0_ref(const vck_block_q8_0 *src, float *dst, size_t k);
/// Dot product of two q8_0 rows of k values (both quantized with the same blocking).
float vck_dot_q8_0(const vck_block_q8_0 *a, const vck_block_q8_0 *b, size_t k);
float vck_dot_q8_0_ref(const vck_block_q8_0 *a, const vck_block_q8_0 *b, size_t k);

// ---------------------------------------------------------------------------------------------
// Weights. A weight matrix is N rows (outputs) of K values (inputs), in PyTorch order (a conv
// weight [Cout, Cin, kh, kw] is N = Cout rows of K = Cin*kh*kw).
// ---------------------------------------------------------------------------------------------
enum { VCK_W_F32 = 0, VCK_W_F16 = 1, VCK_W_BF16 = 2, VCK_W_Q8_0 = 3 };
typedef struct {
    const void *data;
    int dtype;      // VCK_W_*
    int64_t n;      // rows (outputs)
    int64_t k;      // values per row (inputs)
} vck_weight;
/// Bytes one row occupies for a dtype.
size_t vck_weight_row_bytes(int dtype, int64_t k);
/// Dequantizes rows [row0, row0+nrows) to float32 (dst is nrows x k).
void vck_weight_rows_f32(const vck_weight *w, int64_t row0, int64_t nrows, float *dst);

/// C[M, N] (leading dimension ldc) = A[M, K] (lda) x W^T + bias (bias may be NULL), with
/// beta = 0 (overwrite) or 1 (accumulate). Threads split the work.
void vck_linear(int64_t m, const float *a, int64_t lda, const vck_weight *w, const float *bias,
                float *c, int64_t ldc, float beta);

/// Plain f32 GEMM: C[M,N] = alpha * op(A) op(B) + beta C, row-major (a thin cblas_sgemm wrapper).
void vck_sgemm(int trans_a, int trans_b, int64_t m, int64_t n, int64_t k, float alpha,
               const float *a, int64_t lda, const float *b, int64_t ldb, float beta, float *c,
               int64_t ldc);
/// Naive triple loop, the reference for vck_sgemm and vck_linear tests.
void vck_sgemm_ref(int trans_a, int trans_b, int64_t m, int64_t n, int64_t k, float alpha,
                   const float *a, int64_t lda, const float *b, int64_t ldb, float beta, float *c,
                   int64_t ldc);

// ---------------------------------------------------------------------------------------------
// Convolutions on channels-last activations.
// ---------------------------------------------------------------------------------------------
/// 2-D convolution. x: [nimg, h, w, cin]; w: N = cout rows of K = cin*kh*kw (PyTorch order);
/// y: [nimg, oh, ow, cout] with oh = (h + 2*pad - kh)/stride + 1 (same for ow). Zero padding.
void vck_conv2d_nhwc(const float *x, int64_t nimg, int64_t h, int64_t w, int64_t cin,
                     const vck_weight *wt, const float *bias, int64_t kh, int64_t kw,
                     int64_t stride, int64_t pad, float *y);
/// Temporal convolution, kernel (kt,1,1), zero padding kt/2 in time. x: [nseq, t, hw, cin]
/// (frames of a sequence are contiguous); w: N = cout rows of K = cin*kt; y: [nseq, t, hw, cout].
void vck_conv_temporal(const float *x, int64_t nseq, int64_t t, int64_t hw, int64_t cin,
                       const vck_weight *wt, const float *bias, int64_t kt, float *y);

/// A GroupNorm (+ activation) applied to the input of a convolution while it is gathered:
/// input channel j of an image in statistics sample s becomes act(x * scale[s*cin + j] +
/// shift[s*cin + j]) (the output of vck_group_norm_stats); zero padding stays zero. Images (2-D)
/// or sequences (temporal) [i*imgs_per_sample, (i+1)*imgs_per_sample) form sample i.
typedef struct {
    const float *scale;
    const float *shift;
    int64_t imgs_per_sample;
    int act;   // VCK_ACT_*
} vck_prenorm;
/// vck_conv2d_nhwc with options: `norm` (may be NULL) normalises the input on the fly and
/// `upsample2x` convolves the nearest-neighbour x2 upsampled input (x stays [nimg, h, w, cin];
/// the output is then [nimg, oh, ow, cout] for the 2h x 2w input).
void vck_conv2d_nhwc_ex(const float *x, int64_t nimg, int64_t h, int64_t w, int64_t cin,
                        const vck_weight *wt, const float *bias, int64_t kh, int64_t kw,
                        int64_t stride, int64_t pad, int upsample2x, const vck_prenorm *norm, float *y);
/// vck_conv_temporal with an on-the-fly GroupNorm of the input (sample = sequence / imgs_per_sample).
void vck_conv_temporal_ex(const float *x, int64_t nseq, int64_t t, int64_t hw, int64_t cin,
                          const vck_weight *wt, const float *bias, int64_t kt, const vck_prenorm *norm, float *y);

// ---------------------------------------------------------------------------------------------
// Normalisation and activations (f32, in place allowed where x == y)
// ---------------------------------------------------------------------------------------------
enum { VCK_ACT_NONE = 0, VCK_ACT_SILU = 1, VCK_ACT_GELU = 2 };
/// GroupNorm over x: [nsamples, rows, c] with `groups` groups of c/groups channels; statistics
/// per (sample, group) over rows x c/groups values (two-pass, double accumulation). Optional
/// activation applied after the affine transform.
void vck_group_norm(const float *x, float *y, int64_t nsamples, int64_t rows, int64_t c,
                    int64_t groups, const float *gamma, const float *beta, float eps, int act);
/// The reference twin of vck_group_norm: one sample and one group at a time, libm activations.
void vck_group_norm_ref(const float *x, float *y, int64_t nsamples, int64_t rows, int64_t c,
                        int64_t groups, const float *gamma, const float *beta, float eps, int act);
/// GroupNorm statistics folded with the affine parameters: for sample s and channel j,
/// normalised = x * scale[s*c + j] + shift[s*c + j] (scale, shift: [nsamples, c]). Parallel over
/// samples and row blocks; the double partial sums are reduced in a fixed order (results do not
/// depend on the thread count). vck_group_norm = stats + apply.
void vck_group_norm_stats(const float *x, int64_t nsamples, int64_t rows, int64_t c, int64_t groups,
                          const float *gamma, const float *beta, float eps, float *scale, float *shift);
/// y = act(x * scale[s] + shift[s]) over x: [nsamples, rows, c] (in place allowed).
void vck_group_norm_apply(const float *x, float *y, int64_t nsamples, int64_t rows, int64_t c,
                          const float *scale, const float *shift, int act);
/// LayerNorm over the last dimension of x: [rows, c].
void vck_layer_norm(const float *x, float *y, int64_t rows, int64_t c, const float *gamma,
                    const float *beta, float eps);
/// Softmax along rows of x: [rows, c] in place.
void vck_softmax_rows(float *x, int64_t rows, int64_t c);
void vck_softmax_rows_ref(float *x, int64_t rows, int64_t c);
void vck_silu(const float *x, float *y, size_t n);
void vck_silu_ref(const float *x, float *y, size_t n);
/// Exact GELU: 0.5 x (1 + erf(x / sqrt 2)).
void vck_gelu(const float *x, float *y, size_t n);
void vck_gelu_ref(const float *x, float *y, size_t n);
/// SIMD SiLU / exact-GELU approximations (relative error about 2e-7; GELU without the 1 + erf
/// cancellation for negative x), the activations used inside the fused kernels.
void vck_silu_fast(const float *x, float *y, size_t n);
void vck_gelu_fast(const float *x, float *y, size_t n);
/// GEGLU: x: [rows, 2f] -> y: [rows, f], y = x[:, :f] * gelu(x[:, f:]).
void vck_geglu(const float *x, float *y, int64_t rows, int64_t f);
void vck_geglu_ref(const float *x, float *y, int64_t rows, int64_t f);

/// y[i] = a[i] + b[i]
void vck_add(const float *a, const float *b, float *y, size_t n);
/// y[r, c] = x[r, c] + v[c]
void vck_add_row_vector(const float *x, const float *v, float *y, int64_t rows, int64_t c);
/// x *= s
void vck_scale(float *x, float s, size_t n);

// ---------------------------------------------------------------------------------------------
// Attention
// ---------------------------------------------------------------------------------------------
/// Multi-head scaled dot-product attention over many independent sequences, computed in chunks
/// of queries (never a full tokens x tokens x heads buffer).
/// For sequence s in [0, nseq) and head h in [0, heads): Q rows are at
///   q + s*q_seq_stride + i*q_row_stride + h*d   (i in [0, sq)), likewise K, V (j in [0, sk)),
/// and O rows at o + s*o_seq_stride + i*o_row_stride + h*d. scale multiplies q.k.
/// causal != 0 masks j > i.
void vck_attention(int64_t nseq, int64_t heads, int64_t sq, int64_t sk, int64_t d,
                   const float *q, int64_t q_seq_stride, int64_t q_row_stride,
                   const float *k, int64_t k_seq_stride, int64_t k_row_stride,
                   const float *v, int64_t v_seq_stride, int64_t v_row_stride,
                   float *o, int64_t o_seq_stride, int64_t o_row_stride, float scale, int causal);
/// The reference: plain loops, full score rows, double accumulation.
void vck_attention_ref(int64_t nseq, int64_t heads, int64_t sq, int64_t sk, int64_t d,
                       const float *q, int64_t q_seq_stride, int64_t q_row_stride,
                       const float *k, int64_t k_seq_stride, int64_t k_row_stride,
                       const float *v, int64_t v_seq_stride, int64_t v_row_stride,
                       float *o, int64_t o_seq_stride, int64_t o_row_stride, float scale,
                       int causal);

// ---------------------------------------------------------------------------------------------
// Layout helpers
// ---------------------------------------------------------------------------------------------
/// Nearest x2 upsampling: x: [nimg, h, w, c] -> y: [nimg, 2h, 2w, c].
void vck_upsample_nearest2x(const float *x, int64_t nimg, int64_t h, int64_t w, int64_t c, float *y);
/// Channel concat: y[r] = [a[r] (ca values), b[r] (cb values)].
void vck_concat_channels(const float *a, int64_t ca, const float *b, int64_t cb, int64_t rows, float *y);
/// Transpose a [rows, cols] matrix to [cols, rows] (NCHW <-> NHWC per image).
void vck_transpose(const float *x, int64_t rows, int64_t cols, float *y);

// ---------------------------------------------------------------------------------------------
// Synthetic data (benchmarks)
// ---------------------------------------------------------------------------------------------
/// x[i] = uniform in [lo, hi) from a counter-based hash of (seed, i): the same values for any
/// thread count (24 random bits per value).
void vck_fill_uniform(float *x, size_t n, uint64_t seed, float lo, float hi);
void vck_fill_uniform_ref(float *x, size_t n, uint64_t seed, float lo, float hi);

// ---------------------------------------------------------------------------------------------
// Checksums
// ---------------------------------------------------------------------------------------------
/// CRC-32C (Castagnoli), as in iSCSI / ext4; init = 0 for a fresh checksum, pass the previous
/// result to continue.
uint32_t vck_crc32c(uint32_t crc, const void *data, size_t n);
uint32_t vck_crc32c_ref(uint32_t crc, const void *data, size_t n);

#ifdef __cplusplus
}
#endif
#endif
