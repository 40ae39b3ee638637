// q8_0 blocks (the ggml q8_0 layout): 32 int8 values and an fp16 scale d = amax / 127,
// q = round-half-away(x / d). A partial last block is zero-padded. NaN inputs are ignored by the
// amax and quantize to 0 (as does an infinite input, whose block gets an infinite scale).
#include "internal.h"
#include <immintrin.h>
#include <math.h>

_Static_assert(sizeof(vck_block_q8_0) == 34, "q8_0 block must be 34 bytes (2-byte scale + 32 quants)");

size_t vck_q8_0_row_bytes(size_t k) { return ((k + VCK_Q8_BLOCK - 1) / VCK_Q8_BLOCK) * sizeof(vck_block_q8_0); }

void vck_quantize_row_q8_0_ref(const float *src, vck_block_q8_0 *dst, size_t k) {
    size_t nb = (k + VCK_Q8_BLOCK - 1) / VCK_Q8_BLOCK;
    for (size_t b = 0; b < nb; b++) {
        size_t n = k - b * VCK_Q8_BLOCK < VCK_Q8_BLOCK ? k - b * VCK_Q8_BLOCK : VCK_Q8_BLOCK;
        const float *x = src + b * VCK_Q8_BLOCK;
        float amax = 0;
        for (size_t i = 0; i < n; i++) { float a = fabsf(x[i]); if (a > amax) amax = a; }
        float d = amax / 127.0f;
        vck_f32_to_f16_ref(&d, &dst[b].d, 1);
        for (size_t i = 0; i < VCK_Q8_BLOCK; i++) {
            float q = (i < n && d != 0.0f) ? x[i] / d : 0.0f;
            dst[b].qs[i] = isnan(q) ? 0 : (int8_t)roundf(q); // |q| <= 127 otherwise
        }
    }
}

__attribute__((target("avx512f,avx512bw,avx512vl")))
static void quantize_row_q8_0_avx512(const float *src, vck_block_q8_0 *dst, size_t k) {
    size_t full = k / VCK_Q8_BLOCK;
    const __m512 half = _mm512_set1_ps(0.5f), onev = _mm512_set1_ps(1.0f);
    for (size_t b = 0; b < full; b++) {
        const float *x = src + b * VCK_Q8_BLOCK;
        __m512 v0 = _mm512_loadu_ps(x), v1 = _mm512_loadu_ps(x + 16);
        // NaN lanes count as 0 (max_ps would return a NaN for one operand order).
        __m512 a0 = _mm512_maskz_mov_ps(_mm512_cmp_ps_mask(v0, v0, _CMP_ORD_Q), _mm512_abs_ps(v0));
        __m512 a1 = _mm512_maskz_mov_ps(_mm512_cmp_ps_mask(v1, v1, _CMP_ORD_Q), _mm512_abs_ps(v1));
        __m512 m = _mm512_max_ps(a0, a1);
        float amax = _mm512_reduce_max_ps(m);
        float d = amax / 127.0f;
        vck_f32_to_f16_ref(&d, &dst[b].d, 1);
        if (d == 0.0f) { memset(dst[b].qs, 0, VCK_Q8_BLOCK); continue; }
        __m512 dv = _mm512_set1_ps(d);
        __m512 vs[2] = {v0, v1};
        for (int h = 0; h < 2; h++) {
            __m512 q = _mm512_div_ps(vs[h], dv);
            __m512 t = _mm512_roundscale_ps(q, _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC);
            __m512 diff = _mm512_abs_ps(_mm512_sub_ps(q, t));
            __mmask16 up = _mm512_cmp_ps_mask(diff, half, _CMP_GE_OQ);
            __m512 sgn = _mm512_castsi512_ps(_mm512_or_si512(
                _mm512_and_si512(_mm512_castps_si512(q), _mm512_set1_epi32((int)0x80000000)), _mm512_castps_si512(onev)));
            t = _mm512_mask_add_ps(t, up, t, sgn);
            t = _mm512_maskz_mov_ps(_mm512_cmp_ps_mask(q, q, _CMP_ORD_Q), t); // NaN -> 0
            __m128i packed = _mm512_cvtsepi32_epi8(_mm512_cvttps_epi32(t));
            _mm_storeu_si128((__m128i *)(dst[b].qs + 16 * h), packed);
        }
    }
    if (full * VCK_Q8_BLOCK < k)
        vck_quantize_row_q8_0_ref(src + full * VCK_Q8_BLOCK, dst + full, k - full * VCK_Q8_BLOCK);
}

void vck_quantize_row_q8_0(const float *src, vck_block_q8_0 *dst, size_t k) {
    if (vck_has(VCK_AVX512_ALL)) quantize_row_q8_0_avx512(src, dst, k); else vck_quantize_row_q8_0_ref(src, dst, k);
}

void vck_dequantize_row_q8_0_ref(const vck_block_q8_0 *src, float *dst, size_t k) {
    for (size_t i = 0; i < k; i++) {
        const vck_block_q8_0 *b = &src[i / VCK_Q8_BLOCK];
        float d;
        vck_f16_to_f32_ref(&b->d, &d, 1);
        dst[i] = d * (float)b->qs[i % VCK_Q8_BLOCK];
    }
}

__attribute__((target("avx512f,avx512bw,avx512vl")))
static void dequantize_row_q8_0_avx512(const vck_block_q8_0 *src, float *dst, size_t k) {
    size_t full = k / VCK_Q8_BLOCK;
    for (size_t b = 0; b < full; b++) {
        float d;
        vck_f16_to_f32_ref(&src[b].d, &d, 1);
        __m512 dv = _mm512_set1_ps(d);
        for (int h = 0; h < 2; h++) {
            __m128i q = _mm_loadu_si128((const __m128i *)(src[b].qs + 16 * h));
            __m512 f = _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(q));
            _mm512_storeu_ps(dst + b * VCK_Q8_BLOCK + 16 * h, _mm512_mul_ps(dv, f));
        }
    }
    if (full * VCK_Q8_BLOCK < k)
        vck_dequantize_row_q8_0_ref(src + full, dst + full * VCK_Q8_BLOCK, k - full * VCK_Q8_BLOCK);
}

void vck_dequantize_row_q8_0(const vck_block_q8_0 *src, float *dst, size_t k) {
    if (vck_has(VCK_AVX512_ALL)) dequantize_row_q8_0_avx512(src, dst, k); else vck_dequantize_row_q8_0_ref(src, dst, k);
}

float vck_dot_q8_0_ref(const vck_block_q8_0 *a, const vck_block_q8_0 *b, size_t k) {
    size_t nb = (k + VCK_Q8_BLOCK - 1) / VCK_Q8_BLOCK;
    float sum = 0;
    for (size_t i = 0; i < nb; i++) {
        int32_t isum = 0;
        for (int j = 0; j < VCK_Q8_BLOCK; j++) isum += (int32_t)a[i].qs[j] * (int32_t)b[i].qs[j];
        float da, db;
        vck_f16_to_f32_ref(&a[i].d, &da, 1);
        vck_f16_to_f32_ref(&b[i].d, &db, 1);
        sum += (float)isum * (da * db);
    }
    return sum;
}

__attribute__((target("avx512f,avx512bw,avx512vl")))
static float dot_q8_0_avx512(const vck_block_q8_0 *a, const vck_block_q8_0 *b, size_t k) {
    size_t nb = (k + VCK_Q8_BLOCK - 1) / VCK_Q8_BLOCK;
    float sum = 0;
    for (size_t i = 0; i < nb; i++) {
        __m512i qa = _mm512_cvtepi8_epi16(_mm256_loadu_si256((const __m256i *)a[i].qs));
        __m512i qb = _mm512_cvtepi8_epi16(_mm256_loadu_si256((const __m256i *)b[i].qs));
        int32_t isum = _mm512_reduce_add_epi32(_mm512_madd_epi16(qa, qb)); // exact in int32
        float da, db;
        vck_f16_to_f32_ref(&a[i].d, &da, 1);
        vck_f16_to_f32_ref(&b[i].d, &db, 1);
        sum += (float)isum * (da * db);
    }
    return sum;
}

float vck_dot_q8_0(const vck_block_q8_0 *a, const vck_block_q8_0 *b, size_t k) {
    return vck_has(VCK_AVX512_ALL) ? dot_q8_0_avx512(a, b, k) : vck_dot_q8_0_ref(a, b, k);
}
