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
    /// Not an instruction set: a tuning hint, detected on Intel CPUs, where vdpbf16ps runs at
    /// about a quarter of the FMA rate (measured on Sapphire/Emerald Rapids). The bf16 GEMM then
    /// widens bf16 to fp32 and applies the same two fmas per pair (identical results except for
    /// denormals). Masking it off forces vdpbf16ps where AVX512-BF16 exists.
    VCK_CPU_BF16_VIA_FMA = 1u << 9,
};
/// Bit set of VCK_CPU_* the dispatchers may use on the calling thread: detected & global mask &
/// the calling thread's mask. Dispatchers read it on the calling thread and hand the decision to
/// their pool tasks, so a thread mask covers the whole call.
uint32_t vck_cpu_features(void);
/// Bit set of VCK_CPU_* detected at run time (cached after the first call), ignoring the masks.
uint32_t vck_cpu_detected(void);
/// Restrict the features the dispatchers may use, process-wide. 0xffffffff restores everything.
void vck_cpu_set_mask(uint32_t mask);
/// Restrict the features for calls made from the calling thread only (tests use this to force the
/// scalar or AVX2 paths without affecting other threads). 0xffffffff restores everything.
void vck_cpu_set_thread_mask(uint32_t mask);

/// One setting for the whole numeric runtime: our thread pool gets n threads (the caller counts
/// as one) and OpenBLAS stays single-threaded (vck_sgemm splits large products over the pool), so
/// the cores are never oversubscribed. n < 1 means "all online cores". Safe to call repeatedly;
/// workers are created on demand and never shut down. Ignored inside a pool task.
void vck_set_threads(int n);
int vck_get_threads(void);
/// Runs fn(ctx, i) for i in [0, ntasks) on the pool (the caller participates), each task exactly
/// once; returns when all have finished. One region runs at a time (concurrent callers wait);
/// calls made from inside a task run serially on the calling thread.
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
/// VCK_W_PACKED: `data` points to a vck_packed_weight (from vck_pack_weight); n and k as packed.
enum { VCK_W_F32 = 0, VCK_W_F16 = 1, VCK_W_BF16 = 2, VCK_W_Q8_0 = 3, VCK_W_PACKED = 16 };
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
/// beta = 0 (overwrite) or 1 (accumulate). Threads split the work; results do not depend on the
/// thread count.
/// - f32 / f16 weights: fp32 FMA with the exact weight values, k in order (fp32 accurate);
///   OpenBLAS for f32 only on CPUs without FMA.
/// - bf16 weights: activations rounded to bf16 (RNE), products accumulated in fp32
///   (AVX512-BF16 vdpbf16ps semantics).
/// - q8_0 weights: activations quantized on the fly per 32-block (s = amax/127, int8, round to
///   nearest even), exact int32 block dots (AVX512-VNNI), scaled by both scales in fp32.
///   (Precision modes below: balanced uses 15-bit activations, exact fp32.)
/// See gemm_packed.c for the exact arithmetic; vck_linear_ref is its bit-exact scalar twin (except
/// denormals on the fma bf16 paths).
void vck_linear(int64_t m, const float *a, int64_t lda, const vck_weight *w, const float *bias,
                float *c, int64_t ldc, float beta);
/// The scalar reference of vck_linear (f32 weights: a plain fma loop over k).
void vck_linear_ref(int64_t m, const float *a, int64_t lda, const vck_weight *w, const float *bias,
                    float *c, int64_t ldc, float beta);

/// Activation precision of the bf16 and q8_0 GEMM (f16 and f32 are always fp32-accurate).
/// VCK_GEMM_BALANCED (default): q8_0 activations quantized per 32-block to 15 bits in int16
///   (s = amax / 16383, RNE), exact int32 block dots (AVX512-VNNI: two vpdpbusd passes over the
///   high and low 7-bit parts; AVX2 vpmaddwd), scaled
///   by both scales in fp32 exactly as the fast path; bf16 weights as EXACT.
/// VCK_GEMM_EXACT: fp32 activations times the exact weight values (fp32 FMA, only the weights' own
///   quantization error; f16-path speed).
/// VCK_GEMM_FAST: activations rounded to bf16 / quantized to int8 per 32-block, the fast paths
///   described at vck_linear. It misses the quality yardsticks on golden A's sampling run
///   (bf16 39.9 dB < 42 dB, q8 29.9 dB < 34 dB PSNR of the frames; exact and balanced meet them).
/// Measured (q8_0 weights): GEMM rel RMS error vs fp32 with the dequantized weights on random
/// data (K = 320 / 1280) 7.1e-3 fast, 5.5e-5 balanced, 1.5e-7 exact. Tiny VC2 UNet (vc2-tiny-a,
/// t=981) eps rel RMS vs the fp32 golden 0.0501 fast / 0.03482 balanced / 0.03482 exact (the
/// weights' own error; bf16 weights 0.0161 fast / 0.0133 exact = balanced); golden A frames q8
/// (VAE in f32) PSNR 29.9 fast / 37.65 balanced / 37.65 exact dB. Speed on one Zen 4 core
/// (gemm-bench, VC2 shapes): balanced 162-184 GOP/s, about 1.6x f32 and 0.6x fast.
/// See docs/performance.md ("GEMM kernels") for measured speed and accuracy of each mode.
enum { VCK_GEMM_FAST = 0, VCK_GEMM_EXACT = 1, VCK_GEMM_BALANCED = 2 };
/// Process-wide setting, read on the calling thread at each call. Until it is set, the environment
/// variable VCK_GEMM_PRECISION=exact|balanced|fast selects the mode (unset or other: balanced).
/// Unknown values passed to the setters select VCK_GEMM_BALANCED.
void vck_set_gemm_precision(int precision);
/// Overrides the setting for calls from the calling thread only; -1 follows the process setting.
void vck_set_thread_gemm_precision(int precision);
/// The setting in force on the calling thread.
int vck_get_gemm_precision(void);
/// The calling thread's own override (-1: none, the process setting applies).
int vck_get_thread_gemm_precision(void);

/// A weight repacked once for the GEMM kernels (f32, f16, bf16 and q8_0; column panels of 16
/// outputs). Pass it as vck_weight{data: packed, dtype: VCK_W_PACKED, n, k} to vck_linear,
/// vck_conv2d_nhwc or vck_conv_temporal to skip the per-call repacking; results are identical.
typedef struct vck_packed_weight vck_packed_weight;
/// NULL for empty weights, unknown dtypes, or when memory runs out.
vck_packed_weight *vck_pack_weight(const vck_weight *w);
void vck_packed_weight_free(vck_packed_weight *p);
/// Bytes of packed data, and the source dtype (VCK_W_*).
size_t vck_packed_weight_bytes(const vck_packed_weight *p);
int vck_packed_weight_dtype(const vck_packed_weight *p);
/// Rows of a packed weight as f32 (the values the GEMM multiplies with).
void vck_packed_weight_rows_f32(const vck_packed_weight *p, int64_t row0, int64_t nrows, float *dst);
/// The activation quantizer of the q8_0 GEMM for one row of k values: ceil(k/32) blocks of 32
/// int8 (zero padded) in q, their scales in s, and -128 * sum(q) per block in corr.
void vck_quantize_act_q8_ref(const float *x, int64_t k, int8_t *q, float *s, int32_t *corr);
/// The activation quantizer of the balanced q8_0 GEMM: ceil(k/32) blocks of 32 int16 (zero
/// padded) in q, s = amax / 16383 per block, q = rne(clamp(x * (16383 / amax), +-16383)); a NaN
/// value gives q = 0 and makes its block's s NaN.
void vck_quantize_act_q16_ref(const float *x, int64_t k, int16_t *q, float *s);

/// Plain f32 GEMM: C[M,N] = alpha * op(A) op(B) + beta C, row-major. alpha = 1 uses the own
/// fp32 kernels (where FMA exists), anything else cblas_sgemm.
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
/// Stride-1 convolution with "same" zero padding (kh, kw odd; pad kh/2, kw/2) as one GEMM per
/// kernel tap over row bands of a zero-padded input copy (no im2col; scratch about 2 x 2 MiB).
/// x: [nimg, h, w, cin]; taps: kh*kw weights, tap t = ky*kw + kx holding W[:, :, ky, kx] of a
/// PyTorch [cout, cin, kh, kw] weight as N = cout rows of K = cin; y: [nimg, h, w, cout].
/// band_rows: output rows per band (0: as many as fit the scratch bound). Same result as
/// vck_conv2d_nhwc up to the order of the sums.
void vck_conv2d_taps_nhwc(const float *x, int64_t nimg, int64_t h, int64_t w, int64_t cin,
                          const vck_weight *taps, const float *bias, int64_t kh, int64_t kw,
                          int64_t band_rows, float *y);
/// vck_conv2d_taps_nhwc of act(GroupNorm(x)) (`norm`, may be NULL; see vck_prenorm, declared
/// below) of the nearest x2 upsampled x (`upsample2x`; y is then [nimg, 2h, 2w, cout]), neither
/// materialised: the band copy applies them.
struct vck_prenorm_s;
void vck_conv2d_taps_nhwc_ex(const float *x, int64_t nimg, int64_t h, int64_t w, int64_t cin,
                             const vck_weight *taps, const float *bias, int64_t kh, int64_t kw,
                             int64_t band_rows, int upsample2x, const struct vck_prenorm_s *norm, float *y);
/// Reorders a conv weight [cout][cin][taps] (elements of elem_size bytes) to tap-major
/// [taps][cout][cin] (exact for f32 / f16 / bf16).
void vck_repack_conv_taps(const void *src, void *dst, size_t elem_size, int64_t cout, int64_t cin, int64_t taps);

/// A GroupNorm (+ activation) applied to the input of a convolution while it is gathered:
/// input channel j of an image in statistics sample s becomes act(x * scale[s*cin + j] +
/// shift[s*cin + j]) (the output of vck_group_norm_stats); zero padding stays zero. Images (2-D)
/// or sequences (temporal) [i*imgs_per_sample, (i+1)*imgs_per_sample) form sample i.
typedef struct vck_prenorm_s {
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
/// y[i] = a[i] * b[i]
void vck_mul(const float *a, const float *b, float *y, size_t n);
/// Index of the first NaN or infinite value of x[0..n), or -1 when all are finite.
int64_t vck_first_nonfinite(const float *x, size_t n);

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
