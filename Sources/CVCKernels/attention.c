// Scaled dot-product attention over many independent sequences, in chunks of queries so the
// score buffer is at most VCK_ATT_QB x sk floats per worker. Correct-first: the performance work
// replaces the inner loops with a tiled online-softmax kernel behind the same entry point.
#include "internal.h"
#include <immintrin.h>
#include <math.h>

#define VCK_ATT_QB 32

static float dot_ref(const float *a, const float *b, int64_t d) {
    float s0 = 0, s1 = 0, s2 = 0, s3 = 0;
    int64_t i = 0;
    for (; i + 4 <= d; i += 4) { s0 += a[i] * b[i]; s1 += a[i + 1] * b[i + 1]; s2 += a[i + 2] * b[i + 2]; s3 += a[i + 3] * b[i + 3]; }
    for (; i < d; i++) s0 += a[i] * b[i];
    return (s0 + s1) + (s2 + s3);
}

__attribute__((target("avx512f")))
static float dot_avx512(const float *a, const float *b, int64_t d) {
    __m512 acc0 = _mm512_setzero_ps(), acc1 = _mm512_setzero_ps();
    int64_t i = 0;
    for (; i + 32 <= d; i += 32) {
        acc0 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i), _mm512_loadu_ps(b + i), acc0);
        acc1 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i + 16), _mm512_loadu_ps(b + i + 16), acc1);
    }
    for (; i + 16 <= d; i += 16) acc0 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i), _mm512_loadu_ps(b + i), acc0);
    float s = _mm512_reduce_add_ps(_mm512_add_ps(acc0, acc1));
    for (; i < d; i++) s += a[i] * b[i];
    return s;
}

typedef struct {
    int64_t heads, sq, sk, d;
    const float *q; int64_t qs, qr;
    const float *k; int64_t ks, kr;
    const float *v; int64_t vs, vr;
    float *o; int64_t os, orow;
    float scale; int causal; int avx512;
} att_ctx;

static void att_task(void *vctx, int task) {
    att_ctx *c = vctx;
    int64_t s = task / c->heads, h = task % c->heads;
    const float *q = c->q + s * c->qs + h * c->d;
    const float *k = c->k + s * c->ks + h * c->d;
    const float *v = c->v + s * c->vs + h * c->d;
    float *o = c->o + s * c->os + h * c->d;
    float stackbuf[4096];
    size_t need = (size_t)VCK_ATT_QB * (size_t)c->sk;
    float *p = need <= 4096 ? stackbuf : vck_alloc(need * sizeof(float));
    for (int64_t i0 = 0; i0 < c->sq; i0 += VCK_ATT_QB) {
        int64_t qb = c->sq - i0 < VCK_ATT_QB ? c->sq - i0 : VCK_ATT_QB;
        for (int64_t i = 0; i < qb; i++) {
            const float *qi = q + (i0 + i) * c->qr;
            float *pi = p + i * c->sk;
            int64_t jmax = c->causal ? (i0 + i + 1 < c->sk ? i0 + i + 1 : c->sk) : c->sk;
            float m = -INFINITY;
            for (int64_t j = 0; j < jmax; j++) {
                float sc = (c->avx512 ? dot_avx512(qi, k + j * c->kr, c->d) : dot_ref(qi, k + j * c->kr, c->d)) * c->scale;
                pi[j] = sc;
                if (sc > m) m = sc;
            }
            double sum = 0;
            for (int64_t j = 0; j < jmax; j++) { pi[j] = expf(pi[j] - m); sum += pi[j]; }
            float inv = (float)(1.0 / sum);
            float *oi = o + (i0 + i) * c->orow;
            for (int64_t e = 0; e < c->d; e++) oi[e] = 0.0f;
            for (int64_t j = 0; j < jmax; j++) {
                float w = pi[j] * inv;
                const float *vj = v + j * c->vr;
                for (int64_t e = 0; e < c->d; e++) oi[e] += w * vj[e];
            }
        }
    }
    if (p != stackbuf) vck_free(p);
}

void vck_attention(int64_t nseq, int64_t heads, int64_t sq, int64_t sk, int64_t d,
                   const float *q, int64_t q_seq_stride, int64_t q_row_stride,
                   const float *k, int64_t k_seq_stride, int64_t k_row_stride,
                   const float *v, int64_t v_seq_stride, int64_t v_row_stride,
                   float *o, int64_t o_seq_stride, int64_t o_row_stride, float scale, int causal) {
    att_ctx c = {heads, sq, sk, d, q, q_seq_stride, q_row_stride, k, k_seq_stride, k_row_stride,
                 v, v_seq_stride, v_row_stride, o, o_seq_stride, o_row_stride, scale, causal,
                 vck_has(VCK_CPU_AVX512F)};
    vck_parallel_for((int)(nseq * heads), att_task, &c);
}

void vck_attention_ref(int64_t nseq, int64_t heads, int64_t sq, int64_t sk, int64_t d,
                       const float *q, int64_t q_seq_stride, int64_t q_row_stride,
                       const float *k, int64_t k_seq_stride, int64_t k_row_stride,
                       const float *v, int64_t v_seq_stride, int64_t v_row_stride,
                       float *o, int64_t o_seq_stride, int64_t o_row_stride, float scale,
                       int causal) {
    double *sc = vck_alloc(sizeof(double) * (size_t)(sk > 0 ? sk : 1));
    for (int64_t s = 0; s < nseq; s++)
        for (int64_t h = 0; h < heads; h++)
            for (int64_t i = 0; i < sq; i++) {
                const float *qi = q + s * q_seq_stride + i * q_row_stride + h * d;
                int64_t jmax = causal ? (i + 1 < sk ? i + 1 : sk) : sk;
                double m = -INFINITY;
                for (int64_t j = 0; j < jmax; j++) {
                    const float *kj = k + s * k_seq_stride + j * k_row_stride + h * d;
                    double acc = 0;
                    for (int64_t e = 0; e < d; e++) acc += (double)qi[e] * kj[e];
                    sc[j] = acc * scale;
                    if (sc[j] > m) m = sc[j];
                }
                double sum = 0;
                for (int64_t j = 0; j < jmax; j++) { sc[j] = exp(sc[j] - m); sum += sc[j]; }
                float *oi = o + s * o_seq_stride + i * o_row_stride + h * d;
                for (int64_t e = 0; e < d; e++) {
                    double acc = 0;
                    for (int64_t j = 0; j < jmax; j++) acc += sc[j] * v[s * v_seq_stride + j * v_row_stride + h * d + e];
                    oi[e] = (float)(acc / sum);
                }
            }
    vck_free(sc);
}
