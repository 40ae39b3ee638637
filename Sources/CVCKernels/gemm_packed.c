// GEMM for f32, f16, bf16 and q8_0 weights: C[M, N] = A[M, K] W^T (+ bias) (+ beta C).
//
// Weights are repacked into column groups of 16 outputs ("panels") so one vector load feeds 16
// output columns; a packed weight can be kept (vck_pack_weight) or is packed per call.
//   q8_0: per group and 32-block: u8[8 steps][16 cols][4] (= q + 128) then f32 d[16]   (576 B)
//   bf16: per group and pair of k: u32[16 cols] (low half = even k, high half = odd k) (64 B)
//   f16:  per group and k: u16[16 cols]                                                 (32 B)
//   f32:  per group and k: f32[16 cols]                                                 (64 B)
// Groups come in pairs (the micro-kernels work on 32 columns); padding columns are zero.
//
// Arithmetic (identical in every path, so the scalar twin vck_linear_ref is bit-exact):
//   f32, f16: activations stay f32; per output, acc = fma(a[k], w[k], acc) for k = 0, 1, ...
//   bf16: activations rounded to bf16 (RNE); per output and pair p, the vdpbf16ps order:
//         acc += a[2p+1] w[2p+1], then acc += a[2p] w[2p], each an fma with denormal inputs read
//         as zero and denormal results flushed to zero. Where vdpbf16ps is slow (Intel, see
//         VCK_CPU_BF16_VIA_FMA) and on AVX2 the same fmas run in fp32 without DAZ/FTZ.
//   q8_0: each 32-block of an activation row is quantized on the fly: s = amax / 127,
//         q = rne(x * (127 / amax)) (a NaN in the block makes s NaN); per output and block b the
//         exact int32 dot isum = sum q_a q_w, then acc = fma((float)isum, d_w * s, acc).
//   Then out = acc (+ bias[n]) and, when beta != 0, out = beta * C + out.
// With VCK_GEMM_BALANCED (the default) q8_0 activations are quantized per 32-block to 15 bits
//   (int16 storage): s = amax / 16383, q = rne(clamp(x * (16383 / amax), +-16383)) (NaN: q = 0,
//   s = NaN); per output and block isum = sum q_a q_w (exact int32: |isum| <= 32 * 16383 * 128),
//   then acc = fma((float)isum, d_w * s, acc) as in the int8 path. The packed int8 panels are kept.
//   AVX2: they are sign-extended in registers: even bytes of each u32 lane (k = 4s, 4s+2) and odd
//   bytes (k = 4s+1, 4s+3) form int16 pairs, so the quantizer stores each group of 4 activations
//   as q0 q2 q1 q3 and the kernel broadcasts (q0,q2) and (q1,q3) into vpmaddwd. AVX512-VNNI
//   (q16s_tile512): q = 128 hi + lo with hi = q >> 7 and lo = q & 127, both int8, and two passes
//   of vpdpbusd (4 products per lane against vpdpwssd's 2, no widening of the weights) that take
//   the activation bytes straight from memory as embedded broadcasts. 15 bits rather than 16 is
//   what lets both bytes be signed operands; the rounding error (about 5e-5 of the output's RMS)
//   stays far below the weights' own. bf16 weights in balanced mode run as in exact mode.
// With vck_set_gemm_precision(VCK_GEMM_EXACT) activations stay fp32 (weight-only error):
//   bf16: acc = fma(a[k], w[k], acc) for k = 0, 1, ... (as f16);
//   q8_0: per block accb = fma(a[k], q_w[k], accb) over its k, then acc = fma(accb, d_w, acc).
// Parallel over tiles of rows x columns; every output is computed by one thread in a fixed order,
// so results do not depend on the thread count.
#include "internal.h"
#include <immintrin.h>
#include <math.h>
#include <stdatomic.h>

struct vck_packed_weight {
    int dtype;        // VCK_W_F32, VCK_W_F16, VCK_W_BF16 or VCK_W_Q8_0 (the source type)
    int64_t n, k;
    int64_t groups;   // column groups of 16 (even)
    int64_t nb;       // q8: 32-blocks per row; bf16: k pairs; f16: k
    size_t gstride;   // bytes per group
    uint8_t *data;
};

#define Q8_GROUP_BLOCK 576 // 512 quant bytes + 16 f32 scales

static size_t group_stride(int dtype, int64_t k, int64_t *nb) {
    switch (dtype) {
    case VCK_W_Q8_0: *nb = (k + 31) / 32; return (size_t)*nb * Q8_GROUP_BLOCK;
    case VCK_W_BF16: *nb = (k + 1) / 2; return (size_t)*nb * 64;
    case VCK_W_F16: *nb = k; return (size_t)*nb * 32;
    case VCK_W_F32: *nb = k; return (size_t)*nb * 64;
    default: *nb = 0; return 0;
    }
}

static inline float h2f1(uint16_t h) { float f; vck_f16_to_f32_ref(&h, &f, 1); return f; }

// Packs column group g (outputs 16g .. 16g+15) of an unpacked weight.
static void pack_group(const vck_weight *w, int64_t g, uint8_t *dst, int64_t nb, size_t gstride) {
    size_t rb = vck_weight_row_bytes(w->dtype, w->k);
    memset(dst, 0, gstride);
    for (int j = 0; j < 16; j++) {
        int64_t n = g * 16 + j;
        const uint8_t *row = n < w->n ? (const uint8_t *)w->data + (size_t)n * rb : NULL;
        if (w->dtype == VCK_W_Q8_0) {
            for (int64_t b = 0; b < nb; b++) {
                uint8_t *blk = dst + b * Q8_GROUP_BLOCK;
                float d = 0.0f;
                for (int i = 0; i < 32; i++) {
                    int8_t q = 0;
                    if (row) q = ((const vck_block_q8_0 *)row)[b].qs[i];
                    blk[(i / 4) * 64 + j * 4 + (i % 4)] = (uint8_t)((uint8_t)q ^ 0x80u);
                }
                if (row) d = h2f1(((const vck_block_q8_0 *)row)[b].d);
                memcpy(blk + 512 + j * 4, &d, 4);
            }
        } else if (w->dtype == VCK_W_BF16) {
            const uint16_t *r16 = (const uint16_t *)row;
            for (int64_t p = 0; p < nb && row; p++) {
                uint16_t lo = r16[2 * p], hi = 2 * p + 1 < w->k ? r16[2 * p + 1] : 0;
                uint32_t v = ((uint32_t)hi << 16) | lo;
                memcpy(dst + p * 64 + j * 4, &v, 4);
            }
        } else if (w->dtype == VCK_W_F32) {
            const float *rf = (const float *)row;
            for (int64_t k = 0; k < nb && row; k++) memcpy(dst + k * 64 + j * 4, &rf[k], 4);
        } else { // f16
            const uint16_t *r16 = (const uint16_t *)row;
            for (int64_t k = 0; k < nb && row; k++) memcpy(dst + k * 32 + j * 2, &r16[k], 2);
        }
    }
}

typedef struct { const vck_weight *w; vck_packed_weight *p; } pack_ctx;
static void pack_task(void *vctx, int g) {
    pack_ctx *c = vctx;
    pack_group(c->w, g, c->p->data + (size_t)g * c->p->gstride, c->p->nb, c->p->gstride);
}

// Fills p (data already allocated) from w.
static void pack_into(const vck_weight *w, vck_packed_weight *p) {
    pack_ctx c = {w, p};
    vck_parallel_for((int)p->groups, pack_task, &c);
}

static int packable(int dtype) { return dtype == VCK_W_F32 || dtype == VCK_W_F16 || dtype == VCK_W_BF16 || dtype == VCK_W_Q8_0; }

static int init_packed(const vck_weight *w, vck_packed_weight *p) {
    if (!w || !packable(w->dtype) || w->n <= 0 || w->k <= 0) return 0;
    p->dtype = w->dtype;
    p->n = w->n;
    p->k = w->k;
    p->groups = (w->n + 31) / 32 * 2;
    p->gstride = group_stride(w->dtype, w->k, &p->nb);
    return 1;
}

vck_packed_weight *vck_pack_weight(const vck_weight *w) {
    vck_packed_weight tmp;
    if (!init_packed(w, &tmp)) return NULL;
    vck_packed_weight *p = malloc(sizeof *p);
    if (!p) return NULL;
    *p = tmp;
    if (posix_memalign((void **)&p->data, 64, (size_t)p->groups * p->gstride) != 0) { free(p); return NULL; }
    pack_into(w, p);
    return p;
}

void vck_packed_weight_free(vck_packed_weight *p) {
    if (!p) return;
    free(p->data);
    free(p);
}

size_t vck_packed_weight_bytes(const vck_packed_weight *p) { return p ? (size_t)p->groups * p->gstride : 0; }
int vck_packed_weight_dtype(const vck_packed_weight *p) { return p ? p->dtype : -1; }

// Row r of a packed weight back to f32 (the values the GEMM uses).
static void unpack_row(const vck_packed_weight *p, int64_t n, float *dst) {
    const uint8_t *g = p->data + (size_t)(n / 16) * p->gstride;
    int j = (int)(n % 16);
    for (int64_t k = 0; k < p->k; k++) {
        if (p->dtype == VCK_W_Q8_0) {
            const uint8_t *blk = g + (k / 32) * Q8_GROUP_BLOCK;
            int i = (int)(k % 32);
            float d;
            memcpy(&d, blk + 512 + j * 4, 4);
            dst[k] = d * (float)(int8_t)(blk[(i / 4) * 64 + j * 4 + i % 4] ^ 0x80u);
        } else if (p->dtype == VCK_W_BF16) {
            uint32_t v;
            memcpy(&v, g + (k / 2) * 64 + j * 4, 4);
            uint32_t bits = (k % 2 ? v >> 16 : v & 0xffffu) << 16;
            memcpy(&dst[k], &bits, 4);
        } else if (p->dtype == VCK_W_F32) {
            memcpy(&dst[k], g + k * 64 + j * 4, 4);
        } else {
            uint16_t h;
            memcpy(&h, g + k * 32 + j * 2, 2);
            dst[k] = h2f1(h);
        }
    }
}

void vck_packed_weight_rows_f32(const vck_packed_weight *p, int64_t row0, int64_t nrows, float *dst) {
    for (int64_t r = 0; r < nrows; r++) unpack_row(p, row0 + r, dst + r * p->k);
}

// ---------------------------------------------------------------------------------------------
// Activation preparation
// ---------------------------------------------------------------------------------------------

// q8: one row of k values -> nb blocks of 32 int8 (zero padded), scales and -128 * sum(q).
void vck_quantize_act_q8_ref(const float *x, int64_t k, int8_t *q, float *s, int32_t *corr) {
    int64_t nb = (k + 31) / 32;
    for (int64_t b = 0; b < nb; b++) {
        int64_t n = k - b * 32 < 32 ? k - b * 32 : 32;
        const float *xb = x + b * 32;
        float amax = 0.0f;
        int nan = 0;
        for (int64_t i = 0; i < n; i++) {
            float v = xb[i];
            if (v != v) { nan = 1; continue; }
            float a = fabsf(v);
            if (a > amax) amax = a;
        }
        float id = amax > 0.0f ? 127.0f / amax : 0.0f;
        s[b] = nan ? NAN : amax / 127.0f;
        int32_t sum = 0;
        for (int64_t i = 0; i < 32; i++) {
            float t = i < n ? xb[i] * id : 0.0f;
            int v = t != t ? 0 : (int)nearbyintf(t);
            if (v > 127) v = 127;
            if (v < -127) v = -127;
            q[b * 32 + i] = (int8_t)v;
            sum += v;
        }
        corr[b] = -128 * sum;
    }
}

__attribute__((target("avx512f,avx512bw,avx512vl")))
static void quantize_act_q8_avx512(const float *x, int64_t k, int8_t *q, float *s, int32_t *corr) {
    int64_t full = k / 32;
    const __m512i lim = _mm512_set1_epi32(127), nlim = _mm512_set1_epi32(-127);
    for (int64_t b = 0; b < full; b++) {
        __m512 v0 = _mm512_loadu_ps(x + b * 32), v1 = _mm512_loadu_ps(x + b * 32 + 16);
        __mmask16 o0 = _mm512_cmp_ps_mask(v0, v0, _CMP_ORD_Q), o1 = _mm512_cmp_ps_mask(v1, v1, _CMP_ORD_Q);
        __m512 m = _mm512_max_ps(_mm512_maskz_mov_ps(o0, _mm512_abs_ps(v0)), _mm512_maskz_mov_ps(o1, _mm512_abs_ps(v1)));
        float amax = _mm512_reduce_max_ps(m);
        float id = amax > 0.0f ? 127.0f / amax : 0.0f;
        s[b] = (o0 & o1) != 0xffff ? NAN : amax / 127.0f;
        __m512 idv = _mm512_set1_ps(id);
        __m512 t0 = _mm512_mul_ps(v0, idv), t1 = _mm512_mul_ps(v1, idv);
        __m512i q0 = _mm512_cvt_roundps_epi32(t0, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
        __m512i q1 = _mm512_cvt_roundps_epi32(t1, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
        q0 = _mm512_maskz_mov_epi32(_mm512_cmp_ps_mask(t0, t0, _CMP_ORD_Q), q0);
        q1 = _mm512_maskz_mov_epi32(_mm512_cmp_ps_mask(t1, t1, _CMP_ORD_Q), q1);
        q0 = _mm512_max_epi32(_mm512_min_epi32(q0, lim), nlim);
        q1 = _mm512_max_epi32(_mm512_min_epi32(q1, lim), nlim);
        _mm_storeu_si128((__m128i *)(q + b * 32), _mm512_cvtepi32_epi8(q0));
        _mm_storeu_si128((__m128i *)(q + b * 32 + 16), _mm512_cvtepi32_epi8(q1));
        corr[b] = -128 * _mm512_reduce_add_epi32(_mm512_add_epi32(q0, q1));
    }
    if (full * 32 < k) vck_quantize_act_q8_ref(x + full * 32, k - full * 32, q + full * 32, s + full, corr + full);
}

// q16 (balanced mode): one row of k values -> nb blocks of 32 int16 (zero padded) and scales.
// s = amax / Q16_MAX, q = rne(clamp(x * (Q16_MAX / amax), +-Q16_MAX)), NaN -> 0 (and s = NaN).
#define Q16_MAX 16383.0f
// perm != 0 stores each group of 4 as q0 q2 q1 q3 (the pair order of the AVX2 vpmaddwd kernel).
static void quantize_act_q16(const float *x, int64_t k, int16_t *q, float *s, int perm) {
    int64_t nb = (k + 31) / 32;
    for (int64_t b = 0; b < nb; b++) {
        int64_t n = k - b * 32 < 32 ? k - b * 32 : 32;
        const float *xb = x + b * 32;
        float amax = 0.0f;
        int nan = 0;
        for (int64_t i = 0; i < n; i++) {
            float v = xb[i];
            if (v != v) { nan = 1; continue; }
            float a = fabsf(v);
            if (a > amax) amax = a;
        }
        float id = amax > 0.0f ? Q16_MAX / amax : 0.0f;
        s[b] = nan ? NAN : amax / Q16_MAX;
        for (int64_t i = 0; i < 32; i++) {
            float t = i < n ? xb[i] * id : 0.0f;
            int v;
            if (t != t) v = 0;
            else if (t >= Q16_MAX) v = (int)Q16_MAX;
            else if (t <= -Q16_MAX) v = -(int)Q16_MAX;
            else v = (int)nearbyintf(t);
            int64_t j = perm ? (i & ~3) | ((i & 1) << 1) | ((i >> 1) & 1) : i;
            q[b * 32 + j] = (int16_t)v;
        }
    }
}

void vck_quantize_act_q16_ref(const float *x, int64_t k, int16_t *q, float *s) { quantize_act_q16(x, k, q, s, 0); }

// The balanced quantizer for the two-pass VNNI kernel: the same values q (natural order) split
// into q = 128 * hi + lo with hi = q >> 7 and lo = q & 127 (both int8), and corr = -sum(q) per
// block (with the weights' +128 offset the passes sum (q_w + 128) hi and (q_w + 128) lo, and
// 128 * (128 sum(hi) + sum(lo)) = 128 sum(q)).
static void quantize_act_q16_split(const float *x, int64_t k, int8_t *hi, int8_t *lo, float *s, int32_t *corr) {
    int64_t nb = (k + 31) / 32;
    for (int64_t b = 0; b < nb; b++) {
        int16_t q[32];
        quantize_act_q16(x + b * 32, k - b * 32 < 32 ? k - b * 32 : 32, q, s + b, 0);
        int32_t sum = 0;
        for (int i = 0; i < 32; i++) {
            hi[b * 32 + i] = (int8_t)(q[i] >> 7);
            lo[b * 32 + i] = (int8_t)(q[i] & 0x7f);
            sum += q[i];
        }
        corr[b] = -sum;
    }
}

__attribute__((target("avx512f,avx512bw,avx512vl")))
static void quantize_act_q16_split_avx512(const float *x, int64_t k, int8_t *hi, int8_t *lo, float *s, int32_t *corr) {
    int64_t full = k / 32;
    const __m512 lim = _mm512_set1_ps(Q16_MAX), nlim = _mm512_set1_ps(-Q16_MAX);
    const __m512i low7 = _mm512_set1_epi32(0x7f);
    for (int64_t b = 0; b < full; b++) {
        __m512 v0 = _mm512_loadu_ps(x + b * 32), v1 = _mm512_loadu_ps(x + b * 32 + 16);
        __mmask16 o0 = _mm512_cmp_ps_mask(v0, v0, _CMP_ORD_Q), o1 = _mm512_cmp_ps_mask(v1, v1, _CMP_ORD_Q);
        __m512 m = _mm512_max_ps(_mm512_maskz_mov_ps(o0, _mm512_abs_ps(v0)), _mm512_maskz_mov_ps(o1, _mm512_abs_ps(v1)));
        float amax = _mm512_reduce_max_ps(m);
        float id = amax > 0.0f ? Q16_MAX / amax : 0.0f;
        s[b] = (o0 & o1) != 0xffff ? NAN : amax / Q16_MAX;
        __m512 idv = _mm512_set1_ps(id);
        __m512 t0 = _mm512_mul_ps(v0, idv), t1 = _mm512_mul_ps(v1, idv);
        __mmask16 n0 = _mm512_cmp_ps_mask(t0, t0, _CMP_ORD_Q), n1 = _mm512_cmp_ps_mask(t1, t1, _CMP_ORD_Q);
        t0 = _mm512_min_ps(_mm512_max_ps(t0, nlim), lim);
        t1 = _mm512_min_ps(_mm512_max_ps(t1, nlim), lim);
        __m512i q0 = _mm512_maskz_mov_epi32(n0, _mm512_cvt_roundps_epi32(t0, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
        __m512i q1 = _mm512_maskz_mov_epi32(n1, _mm512_cvt_roundps_epi32(t1, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
        _mm_storeu_si128((__m128i *)(hi + b * 32), _mm512_cvtepi32_epi8(_mm512_srai_epi32(q0, 7)));
        _mm_storeu_si128((__m128i *)(hi + b * 32 + 16), _mm512_cvtepi32_epi8(_mm512_srai_epi32(q1, 7)));
        _mm_storeu_si128((__m128i *)(lo + b * 32), _mm512_cvtepi32_epi8(_mm512_and_si512(q0, low7)));
        _mm_storeu_si128((__m128i *)(lo + b * 32 + 16), _mm512_cvtepi32_epi8(_mm512_and_si512(q1, low7)));
        corr[b] = -_mm512_reduce_add_epi32(_mm512_add_epi32(q0, q1));
    }
    if (full * 32 < k) quantize_act_q16_split(x + full * 32, k - full * 32, hi + full * 32, lo + full * 32, s + full, corr + full);
}

// ---------------------------------------------------------------------------------------------
// Activation precision
// ---------------------------------------------------------------------------------------------
static _Atomic int g_precision = -1; // -1: not yet read from VCK_GEMM_PRECISION
static _Thread_local int t_precision = -1;

static int valid_precision(int p) { return p == VCK_GEMM_EXACT || p == VCK_GEMM_FAST ? p : VCK_GEMM_BALANCED; }
void vck_set_gemm_precision(int precision) { atomic_store(&g_precision, valid_precision(precision)); }
void vck_set_thread_gemm_precision(int precision) { t_precision = precision < 0 ? -1 : valid_precision(precision); }
int vck_get_thread_gemm_precision(void) { return t_precision; }
int vck_get_gemm_precision(void) {
    if (t_precision >= 0) return t_precision;
    int p = atomic_load(&g_precision);
    if (p < 0) {
        const char *env = getenv("VCK_GEMM_PRECISION");
        int want = !env ? VCK_GEMM_BALANCED : strcmp(env, "fast") == 0 ? VCK_GEMM_FAST
                 : strcmp(env, "exact") == 0 ? VCK_GEMM_EXACT : VCK_GEMM_BALANCED;
        int expected = -1;
        atomic_compare_exchange_strong(&g_precision, &expected, want);
        p = atomic_load(&g_precision);
    }
    return p;
}

// ---------------------------------------------------------------------------------------------
// The GEMM driver: shared by every dtype and instruction set
// ---------------------------------------------------------------------------------------------
enum { K_REF, K_AVX2, K_AVX512 };

typedef struct {
    int dtype, kind;
    int64_t m, n, k, nb;
    // activations (rows [0, m) of the current super-block)
    const float *a; int64_t lda;                       // f16: f32 rows
    const uint32_t *abf;                               // bf16 (vdpbf16ps): nb u32 pairs per row
    const float *abf32;                                // bf16 (fma): 2*nb bf16-rounded floats per row
    int bf16_fma;
    int exact;                                         // fp32 activations for bf16 / q8_0
    int i16;                                           // q8_0 balanced: int16 activations
    const int16_t *aq16;                               // q8 balanced: nb*32 per row (q0 q2 q1 q3 order)
    int split;                                         // q8 balanced, AVX512-VNNI: q16 as hi (aq) / lo bytes
    const int8_t *aql;                                 // q8 balanced split: low parts, nb*32 per row
    const int8_t *aq; const float *as; const int32_t *acorr; // q8: nb*32 / nb / nb per row
    // weights
    const uint8_t *w; size_t gstride;
    // output
    float *c; int64_t ldc; const float *bias; float beta;
    // tiling
    int64_t mb, ngroups_task, tiles_m, tiles_n;
} mm_ctx;

// out = acc (+ bias) (+ beta * c_old), stored for the valid columns.
static inline void store_ref(const mm_ctx *p, int64_t row, int64_t col, float acc) {
    float out = acc;
    if (p->bias) out = out + p->bias[col];
    float *c = p->c + row * p->ldc + col;
    if (p->beta != 0.0f) out = p->beta * *c + out;
    *c = out;
}

static inline float ftz(float x) { return fabsf(x) < 0x1p-126f ? copysignf(0.0f, x) : x; }
static inline float bf16_daz(uint32_t h) {
    uint32_t u = (h & 0x7f80u) == 0 ? (h & 0x8000u) << 16 : h << 16;
    float f;
    memcpy(&f, &u, 4);
    return f;
}

// Scalar tile: rows [m0, m0+rows), groups [g0, g0+2).
static void tile_ref(const mm_ctx *p, int64_t m0, int rows, int64_t g0) {
    for (int r = 0; r < rows; r++) {
        int64_t m = m0 + r;
        for (int j = 0; j < 32; j++) {
            int64_t col = g0 * 16 + j;
            if (col >= p->n) break;
            const uint8_t *g = p->w + (size_t)(g0 + j / 16) * p->gstride;
            int lane = j % 16;
            float acc = 0.0f;
            if (p->dtype == VCK_W_F32) {
                const float *a = p->a + m * p->lda;
                for (int64_t k = 0; k < p->k; k++) {
                    float wf;
                    memcpy(&wf, g + k * 64 + lane * 4, 4);
                    acc = fmaf(a[k], wf, acc);
                }
            } else if (p->dtype == VCK_W_F16) {
                const float *a = p->a + m * p->lda;
                for (int64_t k = 0; k < p->k; k++) {
                    uint16_t h;
                    memcpy(&h, g + k * 32 + lane * 2, 2);
                    acc = fmaf(a[k], h2f1(h), acc);
                }
            } else if (p->dtype == VCK_W_BF16 && p->exact) {
                const float *a = p->a + m * p->lda;
                for (int64_t k = 0; k < p->k; k++) {
                    uint32_t wv;
                    memcpy(&wv, g + (k / 2) * 64 + lane * 4, 4);
                    uint32_t bits = (k % 2 ? wv & 0xffff0000u : wv << 16);
                    float wf;
                    memcpy(&wf, &bits, 4);
                    acc = fmaf(a[k], wf, acc);
                }
            } else if (p->dtype == VCK_W_Q8_0 && p->exact) {
                const float *a = p->a + m * p->lda;
                for (int64_t b = 0; b < p->nb; b++) {
                    const uint8_t *blk = g + b * Q8_GROUP_BLOCK;
                    float accb = 0.0f;
                    for (int64_t i = 0; i < 32 && b * 32 + i < p->k; i++)
                        accb = fmaf(a[b * 32 + i], (float)(int8_t)(blk[(i / 4) * 64 + lane * 4 + i % 4] ^ 0x80u), accb);
                    float d;
                    memcpy(&d, blk + 512 + lane * 4, 4);
                    acc = fmaf(accb, d, acc);
                }
            } else if (p->dtype == VCK_W_Q8_0 && p->i16) {
                const int16_t *a = p->aq16 + m * p->nb * 32;
                for (int64_t b = 0; b < p->nb; b++) {
                    const uint8_t *blk = g + b * Q8_GROUP_BLOCK;
                    int32_t isum = 0;
                    for (int i = 0; i < 32; i++) {
                        int qw = (int8_t)(blk[(i / 4) * 64 + lane * 4 + i % 4] ^ 0x80u);
                        isum += qw * a[b * 32 + ((i & ~3) | ((i & 1) << 1) | ((i >> 1) & 1))];
                    }
                    float d;
                    memcpy(&d, blk + 512 + lane * 4, 4);
                    acc = fmaf((float)isum, d * p->as[m * p->nb + b], acc);
                }
            } else if (p->dtype == VCK_W_BF16) {
                const uint32_t *a = p->abf + m * p->nb;
                for (int64_t q = 0; q < p->nb; q++) {
                    uint32_t wv;
                    memcpy(&wv, g + q * 64 + lane * 4, 4);
                    acc = ftz(fmaf(bf16_daz(a[q] >> 16), bf16_daz(wv >> 16), acc));
                    acc = ftz(fmaf(bf16_daz(a[q] & 0xffffu), bf16_daz(wv & 0xffffu), acc));
                }
            } else {
                const int8_t *a = p->aq + m * p->nb * 32;
                for (int64_t b = 0; b < p->nb; b++) {
                    const uint8_t *blk = g + b * Q8_GROUP_BLOCK;
                    int32_t isum = p->acorr[m * p->nb + b];
                    for (int i = 0; i < 32; i++) isum += (int32_t)blk[(i / 4) * 64 + lane * 4 + i % 4] * a[b * 32 + i];
                    float d;
                    memcpy(&d, blk + 512 + lane * 4, 4);
                    acc = fmaf((float)isum, d * p->as[m * p->nb + b], acc);
                }
            }
            store_ref(p, m, col, acc);
        }
    }
}

// --- AVX-512 ---------------------------------------------------------------------------------
#define T512 __attribute__((target("avx512f,avx512bw,avx512vl,avx512vnni,avx512bf16,fma,f16c"), always_inline)) static inline

T512 void store512(const mm_ctx *p, int64_t row, int64_t col0, __m512 acc) {
    if (col0 >= p->n) return;
    int64_t left = p->n - col0;
    __mmask16 mask = left >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << left) - 1);
    __m512 out = acc;
    if (p->bias) out = _mm512_add_ps(out, _mm512_maskz_loadu_ps(mask, p->bias + col0));
    float *c = p->c + row * p->ldc + col0;
    if (p->beta != 0.0f) out = _mm512_add_ps(_mm512_mul_ps(_mm512_set1_ps(p->beta), _mm512_maskz_loadu_ps(mask, c)), out);
    _mm512_mask_storeu_ps(c, mask, out);
}

T512 void q8_tile512(const mm_ctx *p, int64_t m0, int64_t g0, const int R) {
    __m512 facc[6][2];
    __m512i iacc[6][2];
    for (int r = 0; r < R; r++) facc[r][0] = facc[r][1] = _mm512_setzero_ps();
    const uint8_t *w0 = p->w + (size_t)g0 * p->gstride, *w1 = w0 + p->gstride;
    const int8_t *arow[6];
    for (int r = 0; r < R; r++) arow[r] = p->aq + (m0 + r) * p->nb * 32;
    for (int64_t b = 0; b < p->nb; b++) {
        for (int r = 0; r < R; r++) iacc[r][0] = iacc[r][1] = _mm512_set1_epi32(p->acorr[(m0 + r) * p->nb + b]);
        const uint8_t *b0 = w0 + b * Q8_GROUP_BLOCK, *b1 = w1 + b * Q8_GROUP_BLOCK;
        for (int s = 0; s < 8; s++) {
            __m512i x0 = _mm512_load_si512((const void *)(b0 + s * 64)), x1 = _mm512_load_si512((const void *)(b1 + s * 64));
            for (int r = 0; r < R; r++) {
                int32_t a4;
                memcpy(&a4, arow[r] + b * 32 + s * 4, 4);
                __m512i av = _mm512_set1_epi32(a4);
                iacc[r][0] = _mm512_dpbusd_epi32(iacc[r][0], x0, av);
                iacc[r][1] = _mm512_dpbusd_epi32(iacc[r][1], x1, av);
            }
        }
        __m512 d0 = _mm512_load_ps((const float *)(b0 + 512)), d1 = _mm512_load_ps((const float *)(b1 + 512));
        for (int r = 0; r < R; r++) {
            __m512 sr = _mm512_set1_ps(p->as[(m0 + r) * p->nb + b]);
            facc[r][0] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(iacc[r][0]), _mm512_mul_ps(d0, sr), facc[r][0]);
            facc[r][1] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(iacc[r][1]), _mm512_mul_ps(d1, sr), facc[r][1]);
        }
    }
    for (int r = 0; r < R; r++) {
        store512(p, m0 + r, g0 * 16, facc[r][0]);
        store512(p, m0 + r, g0 * 16 + 16, facc[r][1]);
    }
}

// q8 balanced with AVX512-VNNI: the 15-bit activations as two byte passes of vpdpbusd. Per block:
//   high pass: acc = corr + sum (q_w + 128) hi      (packed u8 weights x int8 high parts)
//   acc <<= 7
//   low pass:  acc += sum (q_w + 128) lo
// = 128 (sum q_w hi + 128 sum hi - sum q) + sum q_w lo + 128 sum lo = sum q_w q, the balanced
// mode's exact int32 block dot, so the output is bit-identical to the scalar twin. The activation
// dword is the instruction's embedded {1to16} broadcast operand (a load, no shuffle), forced with
// inline asm because compilers keep a broadcast register when it feeds two instructions.
// Bounds: |acc| < 2^28 throughout.
#define VCK_DPBUSD_BCST(acc, w, ptr) \
    __asm__("vpdpbusd %1%{1to16%}, %2, %0" : "+v"(acc) : "m"(*(const int32_t *)(const void *)(ptr)), "v"(w))
T512 void q16s_tile512(const mm_ctx *p, int64_t m0, int64_t g0, const int R) {
    __m512 facc[6][2];
    __m512i iacc[6][2];
    for (int r = 0; r < R; r++) facc[r][0] = facc[r][1] = _mm512_setzero_ps();
    const uint8_t *w0 = p->w + (size_t)g0 * p->gstride, *w1 = w0 + p->gstride;
    const int8_t *ahi[6], *alo[6];
    for (int r = 0; r < R; r++) {
        ahi[r] = p->aq + (m0 + r) * p->nb * 32;
        alo[r] = p->aql + (m0 + r) * p->nb * 32;
    }
    for (int64_t b = 0; b < p->nb; b++) {
        for (int r = 0; r < R; r++) iacc[r][0] = iacc[r][1] = _mm512_set1_epi32(p->acorr[(m0 + r) * p->nb + b]);
        const uint8_t *b0 = w0 + b * Q8_GROUP_BLOCK, *b1 = w1 + b * Q8_GROUP_BLOCK;
        for (int s = 0; s < 8; s++) {
            __m512i x0 = _mm512_load_si512((const void *)(b0 + s * 64)), x1 = _mm512_load_si512((const void *)(b1 + s * 64));
            for (int r = 0; r < R; r++) {
                VCK_DPBUSD_BCST(iacc[r][0], x0, ahi[r] + b * 32 + s * 4);
                VCK_DPBUSD_BCST(iacc[r][1], x1, ahi[r] + b * 32 + s * 4);
            }
        }
        for (int r = 0; r < R; r++) {
            iacc[r][0] = _mm512_slli_epi32(iacc[r][0], 7);
            iacc[r][1] = _mm512_slli_epi32(iacc[r][1], 7);
        }
        for (int s = 0; s < 8; s++) {
            __m512i x0 = _mm512_load_si512((const void *)(b0 + s * 64)), x1 = _mm512_load_si512((const void *)(b1 + s * 64));
            for (int r = 0; r < R; r++) {
                VCK_DPBUSD_BCST(iacc[r][0], x0, alo[r] + b * 32 + s * 4);
                VCK_DPBUSD_BCST(iacc[r][1], x1, alo[r] + b * 32 + s * 4);
            }
        }
        __m512 d0 = _mm512_load_ps((const float *)(b0 + 512)), d1 = _mm512_load_ps((const float *)(b1 + 512));
        for (int r = 0; r < R; r++) {
            __m512 sr = _mm512_set1_ps(p->as[(m0 + r) * p->nb + b]);
            facc[r][0] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(iacc[r][0]), _mm512_mul_ps(d0, sr), facc[r][0]);
            facc[r][1] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(iacc[r][1]), _mm512_mul_ps(d1, sr), facc[r][1]);
        }
    }
    for (int r = 0; r < R; r++) {
        store512(p, m0 + r, g0 * 16, facc[r][0]);
        store512(p, m0 + r, g0 * 16 + 16, facc[r][1]);
    }
}

T512 void bf16_tile512(const mm_ctx *p, int64_t m0, int64_t g0, const int R) {
    __m512 acc[8][2];
    for (int r = 0; r < R; r++) acc[r][0] = acc[r][1] = _mm512_setzero_ps();
    const uint8_t *w0 = p->w + (size_t)g0 * p->gstride, *w1 = w0 + p->gstride;
    const uint32_t *arow[8];
    for (int r = 0; r < R; r++) arow[r] = p->abf + (m0 + r) * p->nb;
    for (int64_t q = 0; q < p->nb; q++) {
        __m512bh x0 = (__m512bh)_mm512_load_si512((const void *)(w0 + q * 64));
        __m512bh x1 = (__m512bh)_mm512_load_si512((const void *)(w1 + q * 64));
        for (int r = 0; r < R; r++) {
            __m512bh av = (__m512bh)_mm512_set1_epi32((int)arow[r][q]);
            acc[r][0] = _mm512_dpbf16_ps(acc[r][0], x0, av);
            acc[r][1] = _mm512_dpbf16_ps(acc[r][1], x1, av);
        }
    }
    for (int r = 0; r < R; r++) {
        store512(p, m0 + r, g0 * 16, acc[r][0]);
        store512(p, m0 + r, g0 * 16 + 16, acc[r][1]);
    }
}

// bf16 with AVX-512F FMA: weights widened to fp32 (exact), activations already bf16-rounded
// fp32; per pair the vdpbf16ps order (odd k, then even k).
T512 void bf16fma_tile512(const mm_ctx *p, int64_t m0, int64_t g0, const int R) {
    __m512 acc[8][2];
    for (int r = 0; r < R; r++) acc[r][0] = acc[r][1] = _mm512_setzero_ps();
    const uint8_t *w0 = p->w + (size_t)g0 * p->gstride, *w1 = w0 + p->gstride;
    const float *arow[8];
    for (int r = 0; r < R; r++) arow[r] = p->abf32 + (m0 + r) * p->nb * 2;
    const __m512i hi = _mm512_set1_epi32((int)0xffff0000u);
    for (int64_t q = 0; q < p->nb; q++) {
        __m512i v0 = _mm512_load_si512((const void *)(w0 + q * 64)), v1 = _mm512_load_si512((const void *)(w1 + q * 64));
        __m512 l0 = _mm512_castsi512_ps(_mm512_slli_epi32(v0, 16)), h0 = _mm512_castsi512_ps(_mm512_and_si512(v0, hi));
        __m512 l1 = _mm512_castsi512_ps(_mm512_slli_epi32(v1, 16)), h1 = _mm512_castsi512_ps(_mm512_and_si512(v1, hi));
        for (int r = 0; r < R; r++) {
            __m512 ah = _mm512_set1_ps(arow[r][2 * q + 1]), al = _mm512_set1_ps(arow[r][2 * q]);
            acc[r][0] = _mm512_fmadd_ps(al, l0, _mm512_fmadd_ps(ah, h0, acc[r][0]));
            acc[r][1] = _mm512_fmadd_ps(al, l1, _mm512_fmadd_ps(ah, h1, acc[r][1]));
        }
    }
    for (int r = 0; r < R; r++) {
        store512(p, m0 + r, g0 * 16, acc[r][0]);
        store512(p, m0 + r, g0 * 16 + 16, acc[r][1]);
    }
}

// Exact-activation kernels (fp32 activations, weights widened to fp32).
T512 void bf16x_tile512(const mm_ctx *p, int64_t m0, int64_t g0, const int R) {
    __m512 acc[8][2];
    for (int r = 0; r < R; r++) acc[r][0] = acc[r][1] = _mm512_setzero_ps();
    const uint8_t *w0 = p->w + (size_t)g0 * p->gstride, *w1 = w0 + p->gstride;
    const float *arow[8];
    for (int r = 0; r < R; r++) arow[r] = p->a + (m0 + r) * p->lda;
    const __m512i hi = _mm512_set1_epi32((int)0xffff0000u);
    for (int64_t q = 0; q < p->nb; q++) {
        __m512i v0 = _mm512_load_si512((const void *)(w0 + q * 64)), v1 = _mm512_load_si512((const void *)(w1 + q * 64));
        __m512 l0 = _mm512_castsi512_ps(_mm512_slli_epi32(v0, 16)), l1 = _mm512_castsi512_ps(_mm512_slli_epi32(v1, 16));
        for (int r = 0; r < R; r++) {
            __m512 al = _mm512_set1_ps(arow[r][2 * q]);
            acc[r][0] = _mm512_fmadd_ps(al, l0, acc[r][0]);
            acc[r][1] = _mm512_fmadd_ps(al, l1, acc[r][1]);
        }
        if (2 * q + 1 < p->k) {
            __m512 h0 = _mm512_castsi512_ps(_mm512_and_si512(v0, hi)), h1 = _mm512_castsi512_ps(_mm512_and_si512(v1, hi));
            for (int r = 0; r < R; r++) {
                __m512 ah = _mm512_set1_ps(arow[r][2 * q + 1]);
                acc[r][0] = _mm512_fmadd_ps(ah, h0, acc[r][0]);
                acc[r][1] = _mm512_fmadd_ps(ah, h1, acc[r][1]);
            }
        }
    }
    for (int r = 0; r < R; r++) {
        store512(p, m0 + r, g0 * 16, acc[r][0]);
        store512(p, m0 + r, g0 * 16 + 16, acc[r][1]);
    }
}

// Byte t of every u32 lane of (packed ^ 0x80808080) as a signed value in fp32.
T512 __m512 q8_lane512(__m512i xs, const int t) {
    return _mm512_cvtepi32_ps(_mm512_srai_epi32(_mm512_slli_epi32(xs, 24 - 8 * t), 24));
}

T512 void q8x_tile512(const mm_ctx *p, int64_t m0, int64_t g0, const int R) {
    __m512 acc[6][2], ab[6][2];
    for (int r = 0; r < R; r++) acc[r][0] = acc[r][1] = _mm512_setzero_ps();
    const uint8_t *w0 = p->w + (size_t)g0 * p->gstride, *w1 = w0 + p->gstride;
    const float *arow[6];
    for (int r = 0; r < R; r++) arow[r] = p->a + (m0 + r) * p->lda;
    const __m512i flip = _mm512_set1_epi32((int)0x80808080u);
    for (int64_t b = 0; b < p->nb; b++) {
        const uint8_t *b0 = w0 + b * Q8_GROUP_BLOCK, *b1 = w1 + b * Q8_GROUP_BLOCK;
        int64_t kmax = p->k - b * 32 < 32 ? p->k - b * 32 : 32;
        for (int r = 0; r < R; r++) ab[r][0] = ab[r][1] = _mm512_setzero_ps();
        for (int s = 0; s < 8 && 4 * s < kmax; s++) {
            __m512i x0 = _mm512_xor_si512(_mm512_load_si512((const void *)(b0 + s * 64)), flip);
            __m512i x1 = _mm512_xor_si512(_mm512_load_si512((const void *)(b1 + s * 64)), flip);
#define Q8X_STEP(t)                                                                                \
            if (4 * s + (t) < kmax) {                                                              \
                __m512 f0 = q8_lane512(x0, t), f1 = q8_lane512(x1, t);                             \
                for (int r = 0; r < R; r++) {                                                      \
                    __m512 av = _mm512_set1_ps(arow[r][b * 32 + 4 * s + (t)]);                     \
                    ab[r][0] = _mm512_fmadd_ps(av, f0, ab[r][0]);                                  \
                    ab[r][1] = _mm512_fmadd_ps(av, f1, ab[r][1]);                                  \
                }                                                                                  \
            }
            Q8X_STEP(0) Q8X_STEP(1) Q8X_STEP(2) Q8X_STEP(3)
#undef Q8X_STEP
        }
        __m512 d0 = _mm512_load_ps((const float *)(b0 + 512)), d1 = _mm512_load_ps((const float *)(b1 + 512));
        for (int r = 0; r < R; r++) {
            acc[r][0] = _mm512_fmadd_ps(ab[r][0], d0, acc[r][0]);
            acc[r][1] = _mm512_fmadd_ps(ab[r][1], d1, acc[r][1]);
        }
    }
    for (int r = 0; r < R; r++) {
        store512(p, m0 + r, g0 * 16, acc[r][0]);
        store512(p, m0 + r, g0 * 16 + 16, acc[r][1]);
    }
}

T512 void f32_tile512(const mm_ctx *p, int64_t m0, int64_t g0, const int R) {
    __m512 acc[8][2];
    for (int r = 0; r < R; r++) acc[r][0] = acc[r][1] = _mm512_setzero_ps();
    const uint8_t *w0 = p->w + (size_t)g0 * p->gstride, *w1 = w0 + p->gstride;
    const float *arow[8];
    for (int r = 0; r < R; r++) arow[r] = p->a + (m0 + r) * p->lda;
    for (int64_t k = 0; k < p->k; k++) {
        __m512 x0 = _mm512_load_ps((const float *)(w0 + k * 64)), x1 = _mm512_load_ps((const float *)(w1 + k * 64));
        for (int r = 0; r < R; r++) {
            __m512 av = _mm512_set1_ps(arow[r][k]);
            acc[r][0] = _mm512_fmadd_ps(av, x0, acc[r][0]);
            acc[r][1] = _mm512_fmadd_ps(av, x1, acc[r][1]);
        }
    }
    for (int r = 0; r < R; r++) {
        store512(p, m0 + r, g0 * 16, acc[r][0]);
        store512(p, m0 + r, g0 * 16 + 16, acc[r][1]);
    }
}

T512 void f16_tile512(const mm_ctx *p, int64_t m0, int64_t g0, const int R) {
    __m512 acc[8][2];
    for (int r = 0; r < R; r++) acc[r][0] = acc[r][1] = _mm512_setzero_ps();
    const uint8_t *w0 = p->w + (size_t)g0 * p->gstride, *w1 = w0 + p->gstride;
    const float *arow[8];
    for (int r = 0; r < R; r++) arow[r] = p->a + (m0 + r) * p->lda;
    for (int64_t k = 0; k < p->k; k++) {
        __m512 x0 = _mm512_cvtph_ps(_mm256_load_si256((const __m256i *)(w0 + k * 32)));
        __m512 x1 = _mm512_cvtph_ps(_mm256_load_si256((const __m256i *)(w1 + k * 32)));
        for (int r = 0; r < R; r++) {
            __m512 av = _mm512_set1_ps(arow[r][k]);
            acc[r][0] = _mm512_fmadd_ps(av, x0, acc[r][0]);
            acc[r][1] = _mm512_fmadd_ps(av, x1, acc[r][1]);
        }
    }
    for (int r = 0; r < R; r++) {
        store512(p, m0 + r, g0 * 16, acc[r][0]);
        store512(p, m0 + r, g0 * 16 + 16, acc[r][1]);
    }
}

#define DISPATCH_ROWS(fn, p, m0, rows, g0, RMAX)                                                   \
    switch (rows) {                                                                                \
    case 1: fn(p, m0, g0, 1); break;                                                               \
    case 2: fn(p, m0, g0, 2); break;                                                               \
    case 3: fn(p, m0, g0, 3); break;                                                               \
    case 4: fn(p, m0, g0, 4); break;                                                               \
    case 5: if (RMAX >= 5) fn(p, m0, g0, 5 <= RMAX ? 5 : 1); break;                                \
    case 6: if (RMAX >= 6) fn(p, m0, g0, 6 <= RMAX ? 6 : 1); break;                                \
    case 7: if (RMAX >= 7) fn(p, m0, g0, 7 <= RMAX ? 7 : 1); break;                                \
    default: if (RMAX >= 8) fn(p, m0, g0, 8 <= RMAX ? 8 : 1); break;                               \
    }

__attribute__((target("avx512f,avx512bw,avx512vl,avx512vnni,avx512bf16,fma,f16c")))
static void tile512(const mm_ctx *p, int64_t m0, int rows, int64_t g0) {
    if (p->dtype == VCK_W_Q8_0 && p->i16) { DISPATCH_ROWS(q16s_tile512, p, m0, rows, g0, 6) }
    else if (p->dtype == VCK_W_Q8_0 && p->exact) { DISPATCH_ROWS(q8x_tile512, p, m0, rows, g0, 6) }
    else if (p->dtype == VCK_W_BF16 && p->exact) { DISPATCH_ROWS(bf16x_tile512, p, m0, rows, g0, 8) }
    else if (p->dtype == VCK_W_Q8_0) { DISPATCH_ROWS(q8_tile512, p, m0, rows, g0, 6) }
    else if (p->dtype == VCK_W_BF16 && p->bf16_fma) { DISPATCH_ROWS(bf16fma_tile512, p, m0, rows, g0, 8) }
    else if (p->dtype == VCK_W_BF16) { DISPATCH_ROWS(bf16_tile512, p, m0, rows, g0, 8) }
    else if (p->dtype == VCK_W_F32) { DISPATCH_ROWS(f32_tile512, p, m0, rows, g0, 8) }
    else { DISPATCH_ROWS(f16_tile512, p, m0, rows, g0, 8) }
}

// --- AVX2 ------------------------------------------------------------------------------------
#define T256 __attribute__((target("avx2,fma,f16c"), always_inline)) static inline

T256 void store256(const mm_ctx *p, int64_t row, int64_t col0, __m256 acc) {
    if (col0 >= p->n) return;
    float tmp[8];
    _mm256_storeu_ps(tmp, acc);
    int64_t cnt = p->n - col0 < 8 ? p->n - col0 : 8;
    for (int64_t j = 0; j < cnt; j++) store_ref(p, row, col0 + j, tmp[j]);
}

// q8 on AVX2 (no VNNI): |w| x sign(a, w) with maddubs (|w| <= 128, |a| <= 127: no saturation).
T256 void q8_tile256(const mm_ctx *p, int64_t m0, int64_t g, const int R) {
    __m256 facc[2][2];
    for (int r = 0; r < R; r++) facc[r][0] = facc[r][1] = _mm256_setzero_ps();
    const uint8_t *w0 = p->w + (size_t)g * p->gstride;
    const __m256i flip = _mm256_set1_epi8((char)0x80), ones = _mm256_set1_epi16(1);
    for (int64_t b = 0; b < p->nb; b++) {
        const uint8_t *blk = w0 + b * Q8_GROUP_BLOCK;
        __m256i iacc[2][2];
        for (int r = 0; r < R; r++) iacc[r][0] = iacc[r][1] = _mm256_setzero_si256();
        for (int s = 0; s < 8; s++) {
            for (int h = 0; h < 2; h++) {
                __m256i ws = _mm256_xor_si256(_mm256_load_si256((const __m256i *)(blk + s * 64 + h * 32)), flip);
                __m256i wa = _mm256_abs_epi8(ws);
                for (int r = 0; r < R; r++) {
                    int32_t a4;
                    memcpy(&a4, p->aq + (m0 + r) * p->nb * 32 + b * 32 + s * 4, 4);
                    __m256i sa = _mm256_sign_epi8(_mm256_set1_epi32(a4), ws);
                    iacc[r][h] = _mm256_add_epi32(iacc[r][h], _mm256_madd_epi16(_mm256_maddubs_epi16(wa, sa), ones));
                }
            }
        }
        for (int r = 0; r < R; r++) {
            __m256 sr = _mm256_set1_ps(p->as[(m0 + r) * p->nb + b]);
            for (int h = 0; h < 2; h++) {
                __m256 d = _mm256_load_ps((const float *)(blk + 512 + h * 32));
                facc[r][h] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(iacc[r][h]), _mm256_mul_ps(d, sr), facc[r][h]);
            }
        }
    }
    for (int r = 0; r < R; r++) {
        store256(p, m0 + r, g * 16, facc[r][0]);
        store256(p, m0 + r, g * 16 + 8, facc[r][1]);
    }
}

// bf16 on AVX2: widen to f32 and apply the two fmas in the vdpbf16ps order (no DAZ/FTZ).
T256 void bf16_tile256(const mm_ctx *p, int64_t m0, int64_t g, const int R) {
    __m256 acc[4][2];
    for (int r = 0; r < R; r++) acc[r][0] = acc[r][1] = _mm256_setzero_ps();
    const uint8_t *w0 = p->w + (size_t)g * p->gstride;
    const __m256i hi = _mm256_set1_epi32((int)0xffff0000u);
    for (int64_t q = 0; q < p->nb; q++) {
        __m256 wl[2], wh[2];
        for (int h = 0; h < 2; h++) {
            __m256i v = _mm256_load_si256((const __m256i *)(w0 + q * 64 + h * 32));
            wl[h] = _mm256_castsi256_ps(_mm256_slli_epi32(v, 16));
            wh[h] = _mm256_castsi256_ps(_mm256_and_si256(v, hi));
        }
        for (int r = 0; r < R; r++) {
            uint32_t a2 = p->abf[(m0 + r) * p->nb + q], al = a2 << 16, ah = a2 & 0xffff0000u;
            float fl, fh;
            memcpy(&fl, &al, 4);
            memcpy(&fh, &ah, 4);
            __m256 vl = _mm256_set1_ps(fl), vh = _mm256_set1_ps(fh);
            for (int h = 0; h < 2; h++) acc[r][h] = _mm256_fmadd_ps(vl, wl[h], _mm256_fmadd_ps(vh, wh[h], acc[r][h]));
        }
    }
    for (int r = 0; r < R; r++) {
        store256(p, m0 + r, g * 16, acc[r][0]);
        store256(p, m0 + r, g * 16 + 8, acc[r][1]);
    }
}

// q8 balanced on AVX2: the same int16 pairs with vpmaddwd (|pair sum| < 2^24: exact), int32 adds.
T256 void q16_tile256(const mm_ctx *p, int64_t m0, int64_t g, const int R) {
    __m256 facc[2][2];
    for (int r = 0; r < R; r++) facc[r][0] = facc[r][1] = _mm256_setzero_ps();
    const uint8_t *w0 = p->w + (size_t)g * p->gstride;
    const __m256i flip = _mm256_set1_epi32((int)0x80808080u);
    for (int64_t b = 0; b < p->nb; b++) {
        const uint8_t *blk = w0 + b * Q8_GROUP_BLOCK;
        __m256i iacc[2][2];
        for (int r = 0; r < R; r++) iacc[r][0] = iacc[r][1] = _mm256_setzero_si256();
        for (int s = 0; s < 8; s++) {
            for (int h = 0; h < 2; h++) {
                __m256i x = _mm256_xor_si256(_mm256_load_si256((const __m256i *)(blk + s * 64 + h * 32)), flip);
                __m256i e = _mm256_srai_epi16(_mm256_slli_epi16(x, 8), 8), o = _mm256_srai_epi16(x, 8);
                for (int r = 0; r < R; r++) {
                    int32_t ae, ao;
                    const int16_t *ar = p->aq16 + (m0 + r) * p->nb * 32 + b * 32 + s * 4;
                    memcpy(&ae, ar, 4);
                    memcpy(&ao, ar + 2, 4);
                    __m256i pe = _mm256_madd_epi16(e, _mm256_set1_epi32(ae)), po = _mm256_madd_epi16(o, _mm256_set1_epi32(ao));
                    iacc[r][h] = _mm256_add_epi32(iacc[r][h], _mm256_add_epi32(pe, po));
                }
            }
        }
        for (int r = 0; r < R; r++) {
            __m256 sr = _mm256_set1_ps(p->as[(m0 + r) * p->nb + b]);
            for (int h = 0; h < 2; h++) {
                __m256 d = _mm256_load_ps((const float *)(blk + 512 + h * 32));
                facc[r][h] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(iacc[r][h]), _mm256_mul_ps(d, sr), facc[r][h]);
            }
        }
    }
    for (int r = 0; r < R; r++) {
        store256(p, m0 + r, g * 16, facc[r][0]);
        store256(p, m0 + r, g * 16 + 8, facc[r][1]);
    }
}

T256 void f32_tile256(const mm_ctx *p, int64_t m0, int64_t g, const int R) {
    __m256 acc[6][2];
    for (int r = 0; r < R; r++) acc[r][0] = acc[r][1] = _mm256_setzero_ps();
    const uint8_t *w0 = p->w + (size_t)g * p->gstride;
    for (int64_t k = 0; k < p->k; k++) {
        __m256 x0 = _mm256_load_ps((const float *)(w0 + k * 64)), x1 = _mm256_load_ps((const float *)(w0 + k * 64 + 32));
        for (int r = 0; r < R; r++) {
            __m256 av = _mm256_set1_ps(p->a[(m0 + r) * p->lda + k]);
            acc[r][0] = _mm256_fmadd_ps(av, x0, acc[r][0]);
            acc[r][1] = _mm256_fmadd_ps(av, x1, acc[r][1]);
        }
    }
    for (int r = 0; r < R; r++) {
        store256(p, m0 + r, g * 16, acc[r][0]);
        store256(p, m0 + r, g * 16 + 8, acc[r][1]);
    }
}

T256 void f16_tile256(const mm_ctx *p, int64_t m0, int64_t g, const int R) {
    __m256 acc[6][2];
    for (int r = 0; r < R; r++) acc[r][0] = acc[r][1] = _mm256_setzero_ps();
    const uint8_t *w0 = p->w + (size_t)g * p->gstride;
    for (int64_t k = 0; k < p->k; k++) {
        __m256 x0 = _mm256_cvtph_ps(_mm_load_si128((const __m128i *)(w0 + k * 32)));
        __m256 x1 = _mm256_cvtph_ps(_mm_load_si128((const __m128i *)(w0 + k * 32 + 16)));
        for (int r = 0; r < R; r++) {
            __m256 av = _mm256_set1_ps(p->a[(m0 + r) * p->lda + k]);
            acc[r][0] = _mm256_fmadd_ps(av, x0, acc[r][0]);
            acc[r][1] = _mm256_fmadd_ps(av, x1, acc[r][1]);
        }
    }
    for (int r = 0; r < R; r++) {
        store256(p, m0 + r, g * 16, acc[r][0]);
        store256(p, m0 + r, g * 16 + 8, acc[r][1]);
    }
}

T256 void bf16x_tile256(const mm_ctx *p, int64_t m0, int64_t g, const int R) {
    __m256 acc[4][2];
    for (int r = 0; r < R; r++) acc[r][0] = acc[r][1] = _mm256_setzero_ps();
    const uint8_t *w0 = p->w + (size_t)g * p->gstride;
    const __m256i hi = _mm256_set1_epi32((int)0xffff0000u);
    for (int64_t q = 0; q < p->nb; q++) {
        __m256i v[2];
        for (int h = 0; h < 2; h++) v[h] = _mm256_load_si256((const __m256i *)(w0 + q * 64 + h * 32));
        for (int r = 0; r < R; r++) {
            __m256 al = _mm256_set1_ps(p->a[(m0 + r) * p->lda + 2 * q]);
            for (int h = 0; h < 2; h++) acc[r][h] = _mm256_fmadd_ps(al, _mm256_castsi256_ps(_mm256_slli_epi32(v[h], 16)), acc[r][h]);
        }
        if (2 * q + 1 < p->k) {
            for (int r = 0; r < R; r++) {
                __m256 ah = _mm256_set1_ps(p->a[(m0 + r) * p->lda + 2 * q + 1]);
                for (int h = 0; h < 2; h++) acc[r][h] = _mm256_fmadd_ps(ah, _mm256_castsi256_ps(_mm256_and_si256(v[h], hi)), acc[r][h]);
            }
        }
    }
    for (int r = 0; r < R; r++) {
        store256(p, m0 + r, g * 16, acc[r][0]);
        store256(p, m0 + r, g * 16 + 8, acc[r][1]);
    }
}

T256 void q8x_tile256(const mm_ctx *p, int64_t m0, int64_t g, const int R) {
    __m256 acc[2][2], ab[2][2];
    for (int r = 0; r < R; r++) acc[r][0] = acc[r][1] = _mm256_setzero_ps();
    const uint8_t *w0 = p->w + (size_t)g * p->gstride;
    const __m256i flip = _mm256_set1_epi32((int)0x80808080u);
    for (int64_t b = 0; b < p->nb; b++) {
        const uint8_t *blk = w0 + b * Q8_GROUP_BLOCK;
        int64_t kmax = p->k - b * 32 < 32 ? p->k - b * 32 : 32;
        for (int r = 0; r < R; r++) ab[r][0] = ab[r][1] = _mm256_setzero_ps();
        for (int64_t i = 0; i < kmax; i++) {
            int s = (int)(i / 4), t = (int)(i % 4);
            __m256 f[2];
            for (int h = 0; h < 2; h++) {
                __m256i x = _mm256_xor_si256(_mm256_load_si256((const __m256i *)(blk + s * 64 + h * 32)), flip);
                __m256i sh = _mm256_sllv_epi32(x, _mm256_set1_epi32(24 - 8 * t));
                f[h] = _mm256_cvtepi32_ps(_mm256_srai_epi32(sh, 24));
            }
            for (int r = 0; r < R; r++) {
                __m256 av = _mm256_set1_ps(p->a[(m0 + r) * p->lda + b * 32 + i]);
                for (int h = 0; h < 2; h++) ab[r][h] = _mm256_fmadd_ps(av, f[h], ab[r][h]);
            }
        }
        for (int r = 0; r < R; r++)
            for (int h = 0; h < 2; h++)
                acc[r][h] = _mm256_fmadd_ps(ab[r][h], _mm256_load_ps((const float *)(blk + 512 + h * 32)), acc[r][h]);
    }
    for (int r = 0; r < R; r++) {
        store256(p, m0 + r, g * 16, acc[r][0]);
        store256(p, m0 + r, g * 16 + 8, acc[r][1]);
    }
}

__attribute__((target("avx2,fma,f16c")))
static void tile256(const mm_ctx *p, int64_t m0, int rows, int64_t g0) {
    // The AVX2 kernels cover one group (16 columns) and fewer rows per call.
    for (int64_t g = g0; g < g0 + 2; g++) {
        if (g * 16 >= p->n) break;
        if (p->dtype == VCK_W_Q8_0 && p->i16) {
            for (int r = 0; r < rows; r += 2) {
                if (rows - r >= 2) q16_tile256(p, m0 + r, g, 2); else q16_tile256(p, m0 + r, g, 1);
            }
        } else if (p->dtype == VCK_W_Q8_0 && p->exact) {
            for (int r = 0; r < rows; r += 2) {
                if (rows - r >= 2) q8x_tile256(p, m0 + r, g, 2); else q8x_tile256(p, m0 + r, g, 1);
            }
        } else if (p->dtype == VCK_W_BF16 && p->exact) {
            for (int r = 0; r < rows; r += 4) {
                switch (rows - r) {
                case 1: bf16x_tile256(p, m0 + r, g, 1); break;
                case 2: bf16x_tile256(p, m0 + r, g, 2); break;
                case 3: bf16x_tile256(p, m0 + r, g, 3); break;
                default: bf16x_tile256(p, m0 + r, g, 4); break;
                }
            }
        } else if (p->dtype == VCK_W_Q8_0) {
            for (int r = 0; r < rows; r += 2) {
                if (rows - r >= 2) q8_tile256(p, m0 + r, g, 2); else q8_tile256(p, m0 + r, g, 1);
            }
        } else if (p->dtype == VCK_W_BF16) {
            for (int r = 0; r < rows; r += 4) {
                switch (rows - r) {
                case 1: bf16_tile256(p, m0 + r, g, 1); break;
                case 2: bf16_tile256(p, m0 + r, g, 2); break;
                case 3: bf16_tile256(p, m0 + r, g, 3); break;
                default: bf16_tile256(p, m0 + r, g, 4); break;
                }
            }
        } else if (p->dtype == VCK_W_F32) {
            for (int r = 0; r < rows; r += 6) {
                switch (rows - r) {
                case 1: f32_tile256(p, m0 + r, g, 1); break;
                case 2: f32_tile256(p, m0 + r, g, 2); break;
                case 3: f32_tile256(p, m0 + r, g, 3); break;
                case 4: f32_tile256(p, m0 + r, g, 4); break;
                case 5: f32_tile256(p, m0 + r, g, 5); break;
                default: f32_tile256(p, m0 + r, g, 6); break;
                }
            }
        } else {
            for (int r = 0; r < rows; r += 6) {
                switch (rows - r) {
                case 1: f16_tile256(p, m0 + r, g, 1); break;
                case 2: f16_tile256(p, m0 + r, g, 2); break;
                case 3: f16_tile256(p, m0 + r, g, 3); break;
                case 4: f16_tile256(p, m0 + r, g, 4); break;
                case 5: f16_tile256(p, m0 + r, g, 5); break;
                default: f16_tile256(p, m0 + r, g, 6); break;
                }
            }
        }
    }
}

// --- driver ------------------------------------------------------------------------------------
static int tile_rows(const mm_ctx *p) {
    if (p->kind == K_AVX512) return p->dtype == VCK_W_Q8_0 ? 6 : 8;
    if (p->kind == K_AVX2) return p->dtype == VCK_W_Q8_0 ? 2 : p->dtype == VCK_W_BF16 ? 4 : 6;
    return 4;
}

static void mm_task(void *vctx, int task) {
    const mm_ctx *p = vctx;
    int64_t tm = task % p->tiles_m, tn = task / p->tiles_m;
    int64_t r0 = tm * p->mb, r1 = r0 + p->mb < p->m ? r0 + p->mb : p->m;
    int64_t gmax = (p->n + 15) / 16;
    int64_t g0 = tn * p->ngroups_task, g1 = g0 + p->ngroups_task;
    int R = tile_rows(p);
    for (int64_t g = g0; g < g1 && g < gmax; g += 2) {
        for (int64_t r = r0; r < r1; r += R) {
            int rows = r1 - r < R ? (int)(r1 - r) : R;
            if (p->kind == K_AVX512) tile512(p, r, rows, g);
            else if (p->kind == K_AVX2) tile256(p, r, rows, g);
            else tile_ref(p, r, rows, g);
        }
    }
}

typedef struct { const float *a; int64_t lda, k, nb, rows_per; int8_t *q; float *s; int32_t *corr; uint32_t *bf; int simd, dtype; int64_t m; float *bf32; int16_t *q16; int8_t *qlo; } prep_ctx;

static void prep_task(void *vctx, int task) {
    prep_ctx *c = vctx;
    int64_t r0 = task * c->rows_per, r1 = r0 + c->rows_per < c->m ? r0 + c->rows_per : c->m;
    for (int64_t r = r0; r < r1; r++) {
        const float *x = c->a + r * c->lda;
        if (c->dtype == VCK_W_Q8_0 && c->qlo) {
            int64_t o = r * c->nb;
            quantize_act_q16_split_avx512(x, c->k, c->q + o * 32, c->qlo + o * 32, c->s + o, c->corr + o);
        } else if (c->dtype == VCK_W_Q8_0 && c->q16) {
            quantize_act_q16(x, c->k, c->q16 + r * c->nb * 32, c->s + r * c->nb, 1); // AVX2 and scalar kernels
        } else if (c->dtype == VCK_W_Q8_0) {
            if (c->simd) quantize_act_q8_avx512(x, c->k, c->q + r * c->nb * 32, c->s + r * c->nb, c->corr + r * c->nb);
            else vck_quantize_act_q8_ref(x, c->k, c->q + r * c->nb * 32, c->s + r * c->nb, c->corr + r * c->nb);
        } else if (c->bf) { // bf16 pairs: RNE, zero padded to an even count
            uint16_t *dst = (uint16_t *)(c->bf + r * c->nb);
            if (c->simd) vck_f32_to_bf16(x, dst, (size_t)c->k); else vck_f32_to_bf16_ref(x, dst, (size_t)c->k);
            if (c->k % 2) dst[c->k] = 0;
        } else { // the same values widened back to fp32 (for the fma kernels)
            float *dst = c->bf32 + r * c->nb * 2;
            uint16_t tmp[256];
            for (int64_t k0 = 0; k0 < c->k; k0 += 256) {
                int64_t cnt = c->k - k0 < 256 ? c->k - k0 : 256;
                vck_f32_to_bf16(x + k0, tmp, (size_t)cnt);
                vck_bf16_to_f32(tmp, dst + k0, (size_t)cnt);
            }
            if (c->k % 2) dst[c->k] = 0.0f;
        }
    }
}

static int choose_kind(int dtype, uint32_t f, int *bf16_fma, int exact, int i16) {
    const uint32_t avx512 = VCK_CPU_AVX512F | VCK_CPU_AVX512BW | VCK_CPU_AVX512VL;
    const uint32_t avx2 = VCK_CPU_AVX2 | VCK_CPU_FMA | VCK_CPU_F16C;
    *bf16_fma = 0;
    if (i16 && dtype == VCK_W_Q8_0) {
        const uint32_t need = avx512 | VCK_CPU_AVX512VNNI | VCK_CPU_FMA;
        if ((f & need) == need) return K_AVX512;
        return (f & avx2) == avx2 ? K_AVX2 : K_REF;
    }
    if (exact && (dtype == VCK_W_BF16 || dtype == VCK_W_Q8_0)) {
        if ((f & (avx512 | VCK_CPU_FMA)) == (avx512 | VCK_CPU_FMA)) return K_AVX512;
        return (f & avx2) == avx2 ? K_AVX2 : K_REF;
    }
    if (dtype == VCK_W_Q8_0 && (f & (avx512 | VCK_CPU_AVX512VNNI)) == (avx512 | VCK_CPU_AVX512VNNI)) return K_AVX512;
    if (dtype == VCK_W_BF16 && (f & (avx512 | VCK_CPU_AVX512BF16)) == (avx512 | VCK_CPU_AVX512BF16) &&
        !(f & VCK_CPU_BF16_VIA_FMA))
        return K_AVX512;
    if (dtype == VCK_W_BF16 && (f & (avx512 | VCK_CPU_FMA)) == (avx512 | VCK_CPU_FMA)) { *bf16_fma = 1; return K_AVX512; }
    if ((dtype == VCK_W_F16 || dtype == VCK_W_F32) && (f & (avx512 | VCK_CPU_F16C | VCK_CPU_FMA)) == (avx512 | VCK_CPU_F16C | VCK_CPU_FMA))
        return K_AVX512;
    if ((f & avx2) == avx2) return K_AVX2;
    return K_REF;
}

// Rows of A per super-block: bounds the prepared-activation scratch to about 8 MiB.
#define VCK_PREP_BYTES (8u << 20)

// The run-wide fields of p for weight pw (activations, output and tiling are set per call).
static void init_ctx(mm_ctx *p, const vck_packed_weight *pw, int kind, int bf16_fma, int exact, int i16) {
    memset(p, 0, sizeof *p);
    p->dtype = pw->dtype;
    p->kind = kind;
    p->bf16_fma = bf16_fma;
    p->exact = exact;
    p->i16 = i16 && pw->dtype == VCK_W_Q8_0;
    p->n = pw->n;
    p->k = pw->k;
    p->nb = pw->nb;
    p->w = pw->data;
    p->gstride = pw->gstride;
    p->split = p->i16 && kind == K_AVX512; // AVX512-VNNI: two byte passes (q16s_tile512)
}

// Bytes of prepared activations per row of A (0: the kernels read fp32 A directly).
static size_t prep_row_bytes(const mm_ctx *p) {
    if (p->split) return (size_t)p->nb * 72;
    if (p->i16) return (size_t)p->nb * 68;
    if (p->exact) return 0;
    if (p->dtype == VCK_W_Q8_0) return (size_t)p->nb * 40;
    if (p->dtype == VCK_W_BF16) return (size_t)p->nb * (p->bf16_fma ? 8 : 4);
    return 0;
}

// Prepares rows [0, rows) of a (row stride lda) into scratch (prep_row_bytes(p) * rows bytes) and
// points p's activation fields at row 0 of it.
static void prepare_rows(mm_ctx *p, const float *a, int64_t lda, int64_t rows, uint8_t *scratch) {
    prep_ctx pc = {a, lda, p->k, p->nb, 16, NULL, NULL, NULL, NULL, p->kind == K_AVX512, p->dtype, rows, NULL, NULL, NULL};
    if (p->split) {
        pc.q = (int8_t *)scratch;
        pc.qlo = (int8_t *)(scratch + (size_t)rows * p->nb * 32);
        pc.s = (float *)(scratch + (size_t)rows * p->nb * 64);
        pc.corr = (int32_t *)(scratch + (size_t)rows * p->nb * 68);
        p->aq = pc.q; p->aql = pc.qlo; p->as = pc.s; p->acorr = pc.corr;
    } else if (p->i16) {
        pc.q16 = (int16_t *)scratch;
        pc.s = (float *)(scratch + (size_t)rows * p->nb * 64);
        p->aq16 = pc.q16; p->as = pc.s;
    } else if (p->dtype == VCK_W_Q8_0) {
        pc.q = (int8_t *)scratch;
        pc.s = (float *)(scratch + (size_t)rows * p->nb * 32);
        pc.corr = (int32_t *)(scratch + (size_t)rows * p->nb * 36);
        p->aq = pc.q; p->as = pc.s; p->acorr = pc.corr;
    } else if (p->bf16_fma) {
        pc.bf32 = (float *)scratch;
        p->abf32 = pc.bf32;
    } else {
        pc.bf = (uint32_t *)scratch;
        p->abf = pc.bf;
    }
    vck_parallel_for((int)((rows + pc.rows_per - 1) / pc.rows_per), prep_task, &pc);
}

// Moves p's activations (fp32 and prepared) down by `off` rows.
static void offset_rows(mm_ctx *p, int64_t off) {
    if (p->a) p->a += off * p->lda;
    if (p->aq) p->aq += off * p->nb * 32;
    if (p->aql) p->aql += off * p->nb * 32;
    if (p->aq16) p->aq16 += off * p->nb * 32;
    if (p->as) p->as += off * p->nb;
    if (p->acorr) p->acorr += off * p->nb;
    if (p->abf) p->abf += off * p->nb;
    if (p->abf32) p->abf32 += off * p->nb * 2;
}

// C rows [0, mm) of the current activations: about 8 row tiles x 128 columns per task, at least
// 4 tasks per thread when possible.
static void run_tiles(mm_ctx *p, int64_t mm) {
    int threads = vck_get_threads();
    int R = tile_rows(p);
    p->m = mm;
    p->mb = (int64_t)R * 8;
    p->ngroups_task = 8;
    int64_t gtotal = (p->n + 15) / 16;
    for (;;) {
        p->tiles_m = (mm + p->mb - 1) / p->mb;
        p->tiles_n = (gtotal + p->ngroups_task - 1) / p->ngroups_task;
        if (p->tiles_m * p->tiles_n >= 4 * threads || (p->mb <= R && p->ngroups_task <= 2)) break;
        if (p->mb > R) p->mb -= R; else p->ngroups_task -= 2;
    }
    vck_parallel_for((int)(p->tiles_m * p->tiles_n), mm_task, p);
}

static void gemm_packed(int64_t m, const float *a, int64_t lda, const vck_packed_weight *pw, const float *bias,
                        float *c, int64_t ldc, float beta, int kind, int bf16_fma, int exact, int i16) {
    mm_ctx p;
    init_ctx(&p, pw, kind, bf16_fma, exact, i16);
    p.ldc = ldc;
    p.bias = bias;
    p.beta = beta;
    size_t row_bytes = prep_row_bytes(&p);
    int64_t ms = row_bytes ? (int64_t)(VCK_PREP_BYTES / row_bytes) : m;
    if (ms < 64) ms = 64;
    if (ms > m) ms = m;
    uint8_t *scratch = row_bytes ? vck_alloc(row_bytes * (size_t)ms) : NULL;
    for (int64_t m0 = 0; m0 < m; m0 += ms) {
        int64_t mm = m - m0 < ms ? m - m0 : ms;
        p.a = a + m0 * lda;
        p.lda = lda;
        p.c = c + m0 * ldc;
        if (row_bytes) prepare_rows(&p, p.a, lda, mm, scratch);
        run_tiles(&p, mm);
    }
    vck_free(scratch);
}

// The kernel kind and activation form for weights of `dtype` under this thread's precision mode.
static int choose_mode(int dtype, int force_ref, int *bf16_fma, int *exact, int *i16) {
    int prec = vck_get_gemm_precision();
    // Balanced: int16 activations for q8_0, fp32 activations for bf16.
    *i16 = prec == VCK_GEMM_BALANCED && dtype == VCK_W_Q8_0;
    *exact = prec == VCK_GEMM_EXACT || (prec == VCK_GEMM_BALANCED && dtype == VCK_W_BF16);
    int kind = choose_kind(dtype, vck_cpu_features(), bf16_fma, *exact, *i16);
    if (force_ref) kind = K_REF, *bf16_fma = 0;
    return kind;
}

// Used by vck_linear (gemm.c) for every weight type (f32: when AVX2/AVX-512 FMA exists).
void vck_linear_lowp(int64_t m, const float *a, int64_t lda, const vck_weight *w, const float *bias, float *c,
                     int64_t ldc, float beta, int force_ref) {
    int dtype = w->dtype == VCK_W_PACKED ? ((const vck_packed_weight *)w->data)->dtype : w->dtype;
    int bf16_fma, exact, i16;
    int kind = choose_mode(dtype, force_ref, &bf16_fma, &exact, &i16);
    if (w->dtype == VCK_W_PACKED) {
        gemm_packed(m, a, lda, (const vck_packed_weight *)w->data, bias, c, ldc, beta, kind, bf16_fma, exact, i16);
        return;
    }
    vck_packed_weight tmp;
    if (!init_packed(w, &tmp)) return;
    tmp.data = vck_alloc((size_t)tmp.groups * tmp.gstride);
    pack_into(w, &tmp);
    gemm_packed(m, a, lda, &tmp, bias, c, ldc, beta, kind, bf16_fma, exact, i16);
    vck_free(tmp.data);
}

int vck_linear_shifted(int64_t m, const float *a, int64_t lda, int64_t rows, const vck_weight *w, int nw,
                       const int64_t *offsets, float *c, int64_t ldc) {
    if (nw <= 0 || m <= 0 || w[0].dtype != VCK_W_PACKED) return 0;
    const vck_packed_weight *w0 = w[0].data;
    for (int t = 0; t < nw; t++) {
        const vck_packed_weight *pt = w[t].data;
        if (w[t].dtype != VCK_W_PACKED || pt->dtype != w0->dtype || pt->n != w0->n || pt->k != w0->k ||
            offsets[t] < 0 || offsets[t] + m > rows)
            return 0;
    }
    int bf16_fma, exact, i16;
    int kind = choose_mode(w0->dtype, 0, &bf16_fma, &exact, &i16);
    mm_ctx base;
    init_ctx(&base, w0, kind, bf16_fma, exact, i16);
    size_t row_bytes = prep_row_bytes(&base);
    if (!row_bytes) return 0;   // fp32 activations: nothing to share
    uint8_t *scratch = vck_alloc(row_bytes * (size_t)rows);
    base.a = a;
    base.lda = lda;
    prepare_rows(&base, a, lda, rows, scratch);
    base.c = c;
    base.ldc = ldc;
    for (int t = 0; t < nw; t++) {
        mm_ctx p = base;
        const vck_packed_weight *pt = w[t].data;
        p.w = pt->data;
        p.gstride = pt->gstride;
        p.beta = t == 0 ? 0.0f : 1.0f;
        offset_rows(&p, offsets[t]);
        run_tiles(&p, m);
    }
    vck_free(scratch);
    return 1;
}

// --- plain f32 products for vck_sgemm ------------------------------------------------------------
typedef struct { const float *b; int64_t ldb; int trans_b; vck_packed_weight *p; } spack_ctx;

// Group g of W = op(B)^T: W[n][k] = trans_b ? b[n*ldb + k] : b[k*ldb + n].
static void spack_task(void *vctx, int g) {
    spack_ctx *c = vctx;
    uint8_t *dst = c->p->data + (size_t)g * c->p->gstride;
    memset(dst, 0, c->p->gstride);
    for (int j = 0; j < 16; j++) {
        int64_t n = (int64_t)g * 16 + j;
        if (n >= c->p->n) break;
        for (int64_t k = 0; k < c->p->k; k++) {
            float v = c->trans_b ? c->b[n * c->ldb + k] : c->b[k * c->ldb + n];
            memcpy(dst + k * 64 + j * 4, &v, 4);
        }
    }
}

int vck_sgemm_own(int trans_a, int trans_b, int64_t m, int64_t n, int64_t k, const float *a, int64_t lda,
                  const float *b, int64_t ldb, float beta, float *c, int64_t ldc) {
    int bf16_fma = 0;
    int kind = choose_kind(VCK_W_F32, vck_cpu_features(), &bf16_fma, 0, 0);
    if (kind == K_REF) return 0;
    vck_packed_weight p = {VCK_W_F32, n, k, (n + 31) / 32 * 2, 0, 0, NULL};
    p.gstride = group_stride(VCK_W_F32, k, &p.nb);
    p.data = vck_alloc((size_t)p.groups * p.gstride);
    spack_ctx sc = {b, ldb, trans_b, &p};
    vck_parallel_for((int)p.groups, spack_task, &sc);
    float *at = NULL;
    if (trans_a) { // op(A) row-major copy: [m, k]
        at = vck_alloc(sizeof(float) * (size_t)(m * k));
        vck_transpose_strided(a, k, m, lda, at);
        a = at;
        lda = k;
    }
    gemm_packed(m, a, lda, &p, NULL, c, ldc, beta, kind, 0, 0, 0);
    vck_free(at);
    vck_free(p.data);
    return 1;
}
