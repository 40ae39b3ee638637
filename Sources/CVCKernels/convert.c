// fp16 / bf16 <-> fp32 conversions. All round to nearest even; the SIMD paths are bit-exact with
// the scalar references (checked by tests over every 16-bit pattern).
#include "internal.h"
#include <immintrin.h>
#include <math.h>

static inline uint32_t f2u(float f) { uint32_t u; memcpy(&u, &f, 4); return u; }
static inline float u2f(uint32_t u) { float f; memcpy(&f, &u, 4); return f; }

static inline float h2f(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000) << 16;
    uint32_t exp = (h >> 10) & 0x1f, mant = h & 0x3ff;
    if (exp == 0) {
        if (mant == 0) return u2f(sign);
        // subnormal: value = mant * 2^-24
        float v = (float)mant * u2f(0x33800000u); // 2^-24
        return u2f(sign | f2u(v));
    }
    if (exp == 31) return u2f(sign | 0x7f800000u | (mant << 13) | (mant ? 0x400000u : 0));
    return u2f(sign | ((exp + 112) << 23) | (mant << 13));
}

// Round-to-nearest-even fp32 -> fp16 (the method of the FP16 library by M. Dukhan: scale into
// the fp16 range so the FPU does the rounding). NaN keeps its top payload bits and is quieted,
// as vcvtps2ph does.
static inline uint16_t f2h(float f) {
    const float scale_to_inf = u2f(0x77800000u);  // 2^112
    const float scale_to_zero = u2f(0x08800000u); // 2^-110
    uint32_t w = f2u(f);
    uint32_t shl1_w = w + w;
    uint32_t sign = w & 0x80000000u;
    if (shl1_w > 0xff000000u) return (uint16_t)((sign >> 16) | 0x7e00u | ((w >> 13) & 0x3ffu));
    float base = (fabsf(f) * scale_to_inf) * scale_to_zero;
    uint32_t bias = shl1_w & 0xff000000u;
    if (bias < 0x71000000u) bias = 0x71000000u;
    base = u2f((bias >> 1) + 0x07800000u) + base;
    uint32_t bits = f2u(base);
    uint32_t exp_bits = (bits >> 13) & 0x00007c00u;
    uint32_t mantissa_bits = bits & 0x00000fffu;
    return (uint16_t)((sign >> 16) | (exp_bits + mantissa_bits));
}

static inline uint16_t f2bf(float f) {
    uint32_t u = f2u(f);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x40u);
    u += 0x7fffu + ((u >> 16) & 1u);
    return (uint16_t)(u >> 16);
}

void vck_f16_to_f32_ref(const uint16_t *src, float *dst, size_t n) {
    for (size_t i = 0; i < n; i++) dst[i] = h2f(src[i]);
}
void vck_f32_to_f16_ref(const float *src, uint16_t *dst, size_t n) {
    for (size_t i = 0; i < n; i++) dst[i] = f2h(src[i]);
}
void vck_bf16_to_f32_ref(const uint16_t *src, float *dst, size_t n) {
    for (size_t i = 0; i < n; i++) dst[i] = u2f((uint32_t)src[i] << 16);
}
void vck_f32_to_bf16_ref(const float *src, uint16_t *dst, size_t n) {
    for (size_t i = 0; i < n; i++) dst[i] = f2bf(src[i]);
}

__attribute__((target("avx512f,avx512bw,avx512vl")))
static void f16_to_f32_avx512(const uint16_t *src, float *dst, size_t n) {
    size_t i = 0;
    for (; i + 16 <= n; i += 16) {
        __m256i h = _mm256_loadu_si256((const __m256i *)(src + i));
        _mm512_storeu_ps(dst + i, _mm512_cvtph_ps(h));
    }
    vck_f16_to_f32_ref(src + i, dst + i, n - i);
}
__attribute__((target("avx512f,avx512bw,avx512vl")))
static void f32_to_f16_avx512(const float *src, uint16_t *dst, size_t n) {
    size_t i = 0;
    for (; i + 16 <= n; i += 16) {
        __m512 v = _mm512_loadu_ps(src + i);
        _mm256_storeu_si256((__m256i *)(dst + i), _mm512_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
    }
    vck_f32_to_f16_ref(src + i, dst + i, n - i);
}
__attribute__((target("avx512f,avx512bw,avx512vl")))
static void bf16_to_f32_avx512(const uint16_t *src, float *dst, size_t n) {
    size_t i = 0;
    for (; i + 16 <= n; i += 16) {
        __m512i v = _mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i *)(src + i)));
        _mm512_storeu_si512((void *)(dst + i), _mm512_slli_epi32(v, 16));
    }
    vck_bf16_to_f32_ref(src + i, dst + i, n - i);
}
// Integer RNE (not vcvtneps2bf16, which treats denormal inputs as zero).
__attribute__((target("avx512f,avx512bw,avx512vl")))
static void f32_to_bf16_avx512(const float *src, uint16_t *dst, size_t n) {
    size_t i = 0;
    const __m512i absmask = _mm512_set1_epi32(0x7fffffff), inf = _mm512_set1_epi32(0x7f800000);
    const __m512i r = _mm512_set1_epi32(0x7fff), one = _mm512_set1_epi32(1), q = _mm512_set1_epi32(0x40);
    for (; i + 16 <= n; i += 16) {
        __m512i u = _mm512_loadu_si512((const void *)(src + i));
        __mmask16 nan = _mm512_cmpgt_epu32_mask(_mm512_and_si512(u, absmask), inf);
        __m512i rounded = _mm512_add_epi32(u, _mm512_add_epi32(r, _mm512_and_si512(_mm512_srli_epi32(u, 16), one)));
        __m512i res = _mm512_mask_blend_epi32(nan, _mm512_srli_epi32(rounded, 16), _mm512_or_si512(_mm512_srli_epi32(u, 16), q));
        _mm256_storeu_si256((__m256i *)(dst + i), _mm512_cvtepi32_epi16(res));
    }
    vck_f32_to_bf16_ref(src + i, dst + i, n - i);
}

void vck_f16_to_f32(const uint16_t *src, float *dst, size_t n) {
    if (vck_has(VCK_AVX512_ALL)) f16_to_f32_avx512(src, dst, n); else vck_f16_to_f32_ref(src, dst, n);
}
void vck_f32_to_f16(const float *src, uint16_t *dst, size_t n) {
    if (vck_has(VCK_AVX512_ALL)) f32_to_f16_avx512(src, dst, n); else vck_f32_to_f16_ref(src, dst, n);
}
void vck_bf16_to_f32(const uint16_t *src, float *dst, size_t n) {
    if (vck_has(VCK_AVX512_ALL)) bf16_to_f32_avx512(src, dst, n); else vck_bf16_to_f32_ref(src, dst, n);
}
void vck_f32_to_bf16(const float *src, uint16_t *dst, size_t n) {
    if (vck_has(VCK_AVX512_ALL)) f32_to_bf16_avx512(src, dst, n); else vck_f32_to_bf16_ref(src, dst, n);
}
