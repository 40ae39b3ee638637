// Vector math shared by the attention and normalisation kernels (private). Own approximations:
// - exp2: x = n + f with |f| <= 1/2, 2^f from the degree-7 Taylor polynomial of e^(f ln 2)
//   (truncation error < 6e-9 relative), scaled by 2^n with vscalefps; x <= -150 gives 0.
// - erfc(z) for z >= 0 as erfcx(z) * exp(-z^2) with erfcx(z) = t * P10(t), t = 1/(1 + 0.4 z);
//   P10 fitted by reweighted least squares on the relative error of scipy.special.erfcx over
//   t in (0, 1] (max relative error 1.7e-7 evaluated in float32 Horner form).
#ifndef VCK_SIMD_MATH_H
#define VCK_SIMD_MATH_H
#include <immintrin.h>

#define VCK_LOG2E 1.44269504088896340736f

__attribute__((target("avx512f"), always_inline))
static inline __m512 vck_exp2_avx512(__m512 x) {
    x = _mm512_max_ps(x, _mm512_set1_ps(-150.0f));
    __m512 n = _mm512_roundscale_ps(x, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m512 f = _mm512_sub_ps(x, n);
    __m512 p = _mm512_set1_ps(1.5252733804059840e-05f);
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(1.5403530393381606e-04f));
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(1.3333558146428443e-03f));
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(9.6181291076284772e-03f));
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(5.5504108664821580e-02f));
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(2.4022650695910071e-01f));
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(6.9314718055994531e-01f));
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(1.0f));
    return _mm512_scalef_ps(p, n);
}

/// SiLU: v / (1 + e^-v).
__attribute__((target("avx512f"), always_inline))
static inline __m512 vck_silu_avx512(__m512 v) {
    __m512 e = vck_exp2_avx512(_mm512_mul_ps(v, _mm512_set1_ps(-VCK_LOG2E)));
    return _mm512_div_ps(v, _mm512_add_ps(_mm512_set1_ps(1.0f), e));
}

/// Exact (erf) GELU: x * Phi(x), Phi(x) = erfc(-x / sqrt 2) / 2, evaluated as 1 - erfc(z)/2 for
/// x >= 0 and erfc(z)/2 for x < 0 with z = |x| / sqrt 2 (no cancellation for negative x).
__attribute__((target("avx512f"), always_inline))
static inline __m512 vck_gelu_avx512(__m512 x) {
    const __m512 absmask = _mm512_castsi512_ps(_mm512_set1_epi32(0x7fffffff));
    __m512 z = _mm512_mul_ps(_mm512_castsi512_ps(_mm512_and_si512(_mm512_castps_si512(x), _mm512_castps_si512(absmask))), _mm512_set1_ps(0.70710678118654752440f));
    __m512 t = _mm512_div_ps(_mm512_set1_ps(1.0f), _mm512_fmadd_ps(z, _mm512_set1_ps(0.4f), _mm512_set1_ps(1.0f)));
    __m512 p = _mm512_set1_ps(-0.03097468428313732f);
    p = _mm512_fmadd_ps(p, t, _mm512_set1_ps(0.148826465010643f));
    p = _mm512_fmadd_ps(p, t, _mm512_set1_ps(-0.25247612595558167f));
    p = _mm512_fmadd_ps(p, t, _mm512_set1_ps(0.15654322504997253f));
    p = _mm512_fmadd_ps(p, t, _mm512_set1_ps(-0.059763312339782715f));
    p = _mm512_fmadd_ps(p, t, _mm512_set1_ps(0.08933975547552109f));
    p = _mm512_fmadd_ps(p, t, _mm512_set1_ps(0.11760310083627701f));
    p = _mm512_fmadd_ps(p, t, _mm512_set1_ps(0.1719527393579483f));
    p = _mm512_fmadd_ps(p, t, _mm512_set1_ps(0.2075965255498886f));
    p = _mm512_fmadd_ps(p, t, _mm512_set1_ps(0.22567646205425262f));
    p = _mm512_fmadd_ps(p, t, _mm512_set1_ps(0.22567583620548248f));
    __m512 erfcx = _mm512_mul_ps(p, t);
    __m512 e = vck_exp2_avx512(_mm512_mul_ps(_mm512_mul_ps(z, z), _mm512_set1_ps(-VCK_LOG2E)));
    __m512 half_erfc = _mm512_mul_ps(_mm512_mul_ps(erfcx, e), _mm512_set1_ps(0.5f));
    __mmask16 neg = _mm512_cmp_ps_mask(x, _mm512_setzero_ps(), _CMP_LT_OQ);
    __m512 phi = _mm512_mask_mov_ps(_mm512_sub_ps(_mm512_set1_ps(1.0f), half_erfc), neg, half_erfc);
    return _mm512_mul_ps(x, phi);
}
#endif
