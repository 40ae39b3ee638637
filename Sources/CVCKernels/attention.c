// Scaled dot-product attention over many independent sequences, flash style: a task takes a tile
// of up to 64 queries of one (sequence, head) and walks the keys in blocks of 64 with an online
// softmax (running max and sum per query, fp32 throughout), so no buffer ever holds more than a
// 64 x 64 block of scores.
//
// The tile is kept transposed: queries are the SIMD lanes. Q^T [d][W] (W = 16..64 lanes, scaled
// by scale*log2(e) so the softmax uses exp2), scores S^T [key][W], the output O^T [d][W]. Then
// - S^T rows = sum_e K[j][e] (broadcast straight from the strided K rows) * Q^T[e],
// - the per-query max / sum / rescale are plain vertical operations (no horizontal reductions),
// - O^T[e] += sum_j V[j][e] (broadcast from the strided V rows) * P^T[j],
// so K and V are read in place (no packing) and only Q and O are transposed, once per tile.
// Short sequences (the 16-frame temporal attention) use 16-lane tiles; a task takes a run of
// consecutive (sequence, head, tile) items so tiny sequences are batched per task.
#include "internal.h"
#include <immintrin.h>
#include <math.h>
#include "simd_math.h"

#define ATT_KB 64          // keys per online-softmax block
// Loops over the register tile must be fully unrolled so the accumulators stay in registers.
#define UNROLL _Pragma("clang loop unroll(full)")

// ---------------------------------------------------------------------------------------------
// Portable path (no AVX-512): one (sequence, head) per task, query chunks of 32, full score rows.
// ---------------------------------------------------------------------------------------------
#define VCK_ATT_QB 32

static float dot_ref(const float *a, const float *b, int64_t d) {
    float s0 = 0, s1 = 0, s2 = 0, s3 = 0;
    int64_t i = 0;
    for (; i + 4 <= d; i += 4) { s0 += a[i] * b[i]; s1 += a[i + 1] * b[i + 1]; s2 += a[i + 2] * b[i + 2]; s3 += a[i + 3] * b[i + 3]; }
    for (; i < d; i++) s0 += a[i] * b[i];
    return (s0 + s1) + (s2 + s3);
}

typedef struct {
    int64_t heads, sq, sk, d;
    const float *q; int64_t qs, qr;
    const float *k; int64_t ks, kr;
    const float *v; int64_t vs, vr;
    float *o; int64_t os, orow;
    float scale; int causal;
    // AVX-512 tiling
    int nq;               // zmm (16 queries each) per tile, 1..4
    int64_t qtiles;       // tiles per (sequence, head)
    int64_t items;        // nseq * heads * qtiles
    int64_t per;          // items per task
} att_ctx;

static void att_task_portable(void *vctx, int task) {
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
                float sc = dot_ref(qi, k + j * c->kr, c->d) * c->scale;
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

// ---------------------------------------------------------------------------------------------
// AVX-512 flash path
// ---------------------------------------------------------------------------------------------

// Per-thread scratch, grown on demand and kept (pool threads live for the process).
static _Thread_local float *tl_scratch = NULL;
static _Thread_local size_t tl_cap = 0;

static float *att_scratch(size_t floats) {
    if (floats > tl_cap) {
        vck_free(tl_scratch);
        tl_scratch = vck_alloc(floats * sizeof(float));
        tl_cap = floats;
    }
    return tl_scratch;
}

/// In-register transpose of a 16x16 float block: r[i] lane j <-> r[j] lane i.
__attribute__((target("avx512f"), always_inline))
static inline void transpose16(__m512 r[16]) {
    __m512 t[16];
    UNROLL
    for (int i = 0; i < 8; i++) {
        t[2 * i] = _mm512_unpacklo_ps(r[2 * i], r[2 * i + 1]);
        t[2 * i + 1] = _mm512_unpackhi_ps(r[2 * i], r[2 * i + 1]);
    }
    UNROLL
    for (int i = 0; i < 4; i++) {
        __m512d a = _mm512_castps_pd(t[4 * i]), b = _mm512_castps_pd(t[4 * i + 1]);
        __m512d c = _mm512_castps_pd(t[4 * i + 2]), d = _mm512_castps_pd(t[4 * i + 3]);
        r[4 * i] = _mm512_castpd_ps(_mm512_unpacklo_pd(a, c));
        r[4 * i + 1] = _mm512_castpd_ps(_mm512_unpackhi_pd(a, c));
        r[4 * i + 2] = _mm512_castpd_ps(_mm512_unpacklo_pd(b, d));
        r[4 * i + 3] = _mm512_castpd_ps(_mm512_unpackhi_pd(b, d));
    }
    UNROLL
    for (int h = 0; h < 2; h++) {
        UNROLL
        for (int i = 0; i < 4; i++) {
            t[8 * h + i] = _mm512_shuffle_f32x4(r[8 * h + i], r[8 * h + 4 + i], 0x88);
            t[8 * h + 4 + i] = _mm512_shuffle_f32x4(r[8 * h + i], r[8 * h + 4 + i], 0xdd);
        }
    }
    UNROLL
    for (int i = 0; i < 8; i++) {
        r[i] = _mm512_shuffle_f32x4(t[i], t[8 + i], 0x88);
        r[8 + i] = _mm512_shuffle_f32x4(t[i], t[8 + i], 0xdd);
    }
}

// S^T rows [j0, j0+kb) of the tile: st[r][W] = sum_e K[j0+r][e] * Q^T[e][.], for groups of
// KR = 16/NQ keys (KR x NQ accumulators). Causal: key j > query i gives -inf. Tracks the lane max.
__attribute__((target("avx512f"), always_inline))
static inline void att_scores(const int NQ, const float *qt, int64_t d, const float *k, int64_t kstride,
                              int64_t j0, int64_t kb, int64_t q0, int causal, float *st, __m512 *mx) {
    enum { MAXR = 16 };
    const int KR = NQ == 1 ? 8 : 16 / NQ;
    const int64_t W = 16 * NQ;
    const __m512i iota = _mm512_set_epi32(15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0);
    for (int64_t jr = 0; jr < kb; jr += KR) {
        int kr = kb - jr < KR ? (int)(kb - jr) : KR;
        const float *kp[MAXR];
        UNROLL
        for (int r = 0; r < KR; r++) kp[r] = k + (j0 + jr + (r < kr ? r : kr - 1)) * kstride;
        __m512 acc[MAXR][4];
        UNROLL
        for (int r = 0; r < KR; r++)
            UNROLL
            for (int c = 0; c < NQ; c++) acc[r][c] = _mm512_setzero_ps();
        for (int64_t e = 0; e < d; e++) {
            __m512 qv[4];
            UNROLL
            for (int c = 0; c < NQ; c++) qv[c] = _mm512_load_ps(qt + e * W + 16 * c);
            UNROLL
            for (int r = 0; r < KR; r++) {
                __m512 kv = _mm512_set1_ps(kp[r][e]);
                UNROLL
                for (int c = 0; c < NQ; c++) acc[r][c] = _mm512_fmadd_ps(kv, qv[c], acc[r][c]);
            }
        }
        UNROLL
        for (int r = 0; r < KR; r++) {
            if (r >= kr) continue;
            int64_t j = j0 + jr + r;
            UNROLL
            for (int c = 0; c < NQ; c++) {
                __m512 s = acc[r][c];
                if (causal && j > q0 + 16 * c) {
                    __m512i qi = _mm512_add_epi32(iota, _mm512_set1_epi32((int)(q0 + 16 * c)));
                    __mmask16 masked = _mm512_cmplt_epi32_mask(qi, _mm512_set1_epi32((int)j));
                    s = _mm512_mask_mov_ps(s, masked, _mm512_set1_ps(-INFINITY));
                }
                mx[c] = _mm512_max_ps(mx[c], s);
                _mm512_store_ps(st + (jr + r) * W + 16 * c, s);
            }
        }
    }
}

// O^T[e][.] += sum_{j < kb} V[j0+j][e] * P^T[j][.], in groups of ER = 16/NQ output rows.
__attribute__((target("avx512f"), always_inline))
static inline void att_pv(const int NQ, const float *pt, const float *v, int64_t vstride, int64_t j0, int64_t kb,
                          int64_t d, float *ot) {
    enum { MAXR = 16 };
    const int ER = 16 / NQ;
    const int64_t W = 16 * NQ;
    const float *vb = v + j0 * vstride;
    for (int64_t e0 = 0; e0 < d; e0 += ER) {
        int er = d - e0 < ER ? (int)(d - e0) : ER;
        __m512 acc[MAXR][4];
        if (er == ER) {
            UNROLL
            for (int r = 0; r < ER; r++)
                UNROLL
                for (int c = 0; c < NQ; c++) acc[r][c] = _mm512_load_ps(ot + (e0 + r) * W + 16 * c);
            for (int64_t j = 0; j < kb; j++) {
                const float *vj = vb + j * vstride + e0;
                __m512 p[4];
                UNROLL
                for (int c = 0; c < NQ; c++) p[c] = _mm512_load_ps(pt + j * W + 16 * c);
                UNROLL
                for (int r = 0; r < ER; r++) {
                    __m512 vv = _mm512_set1_ps(vj[r]);
                    UNROLL
                    for (int c = 0; c < NQ; c++) acc[r][c] = _mm512_fmadd_ps(vv, p[c], acc[r][c]);
                }
            }
            UNROLL
            for (int r = 0; r < ER; r++)
                UNROLL
                for (int c = 0; c < NQ; c++) _mm512_store_ps(ot + (e0 + r) * W + 16 * c, acc[r][c]);
        } else {
            // Tail rows: one row at a time.
            for (int r = 0; r < er; r++) {
                __m512 a[4];
                UNROLL
                for (int c = 0; c < NQ; c++) a[c] = _mm512_load_ps(ot + (e0 + r) * W + 16 * c);
                for (int64_t j = 0; j < kb; j++) {
                    __m512 vv = _mm512_set1_ps(vb[j * vstride + e0 + r]);
                    UNROLL
                    for (int c = 0; c < NQ; c++) a[c] = _mm512_fmadd_ps(vv, _mm512_load_ps(pt + j * W + 16 * c), a[c]);
                }
                UNROLL
                for (int c = 0; c < NQ; c++) _mm512_store_ps(ot + (e0 + r) * W + 16 * c, a[c]);
            }
        }
    }
}

// One tile: queries [q0, q0 + qn) of sequence s, head h.
__attribute__((target("avx512f"), always_inline))
static inline void att_tile(const int NQ, const att_ctx *c, int64_t s, int64_t h, int64_t q0) {
    const int64_t W = 16 * NQ, d = c->d;
    int64_t qn = c->sq - q0 < W ? c->sq - q0 : W;
    const float *q = c->q + s * c->qs + h * d;
    const float *k = c->k + s * c->ks + h * d;
    const float *v = c->v + s * c->vs + h * d;
    float *o = c->o + s * c->os + h * d;
    float *qt = att_scratch((size_t)(2 * d + ATT_KB) * (size_t)W);
    float *ot = qt + d * W, *st = ot + d * W;

    // Q^T, scaled into the log2 domain, by 16x16 blocks; lanes past the last query are zero.
    const __m512 sl = _mm512_set1_ps(c->scale * VCK_LOG2E);
    for (int64_t i0 = 0; i0 < W; i0 += 16)
        for (int64_t e0 = 0; e0 < d; e0 += 16) {
            int ne = d - e0 < 16 ? (int)(d - e0) : 16;
            __mmask16 em = (__mmask16)((1u << ne) - 1);
            __m512 r[16];
            UNROLL
            for (int i = 0; i < 16; i++)
                r[i] = i0 + i < qn ? _mm512_mul_ps(_mm512_maskz_loadu_ps(em, q + (q0 + i0 + i) * c->qr + e0), sl)
                                   : _mm512_setzero_ps();
            transpose16(r);
            for (int t = 0; t < ne; t++) _mm512_store_ps(qt + (e0 + t) * W + i0, r[t]);
        }
    memset(ot, 0, sizeof(float) * (size_t)(d * W));

    __m512 m[4], l[4];
    UNROLL
    for (int cc = 0; cc < NQ; cc++) { m[cc] = _mm512_set1_ps(-INFINITY); l[cc] = _mm512_setzero_ps(); }
    int64_t kend = c->sk;
    if (c->causal && q0 + W < kend) kend = q0 + W;   // later keys are masked for every query here
    const __m512 ninf = _mm512_set1_ps(-INFINITY);
    for (int64_t j0 = 0; j0 < kend; j0 += ATT_KB) {
        int64_t kb = kend - j0 < ATT_KB ? kend - j0 : ATT_KB;
        __m512 mx[4];
        UNROLL
        for (int cc = 0; cc < NQ; cc++) mx[cc] = ninf;
        att_scores(NQ, qt, d, k, c->kr, j0, kb, q0, c->causal, st, mx);
        __m512 alpha[4], msafe[4], lsum[4];
        UNROLL
        for (int cc = 0; cc < NQ; cc++) {
            __m512 mn = _mm512_max_ps(m[cc], mx[cc]);
            // A lane with no finite score yet keeps -inf; subtract 0 there (no inf - inf).
            msafe[cc] = _mm512_mask_mov_ps(mn, _mm512_cmp_ps_mask(mn, ninf, _CMP_EQ_OQ), _mm512_setzero_ps());
            alpha[cc] = vck_exp2_avx512(_mm512_sub_ps(m[cc], msafe[cc]));
            m[cc] = mn;
            lsum[cc] = _mm512_setzero_ps();
        }
        for (int64_t j = 0; j < kb; j++)
            UNROLL
            for (int cc = 0; cc < NQ; cc++) {
                __m512 p = vck_exp2_avx512(_mm512_sub_ps(_mm512_load_ps(st + j * W + 16 * cc), msafe[cc]));
                lsum[cc] = _mm512_add_ps(lsum[cc], p);
                _mm512_store_ps(st + j * W + 16 * cc, p);
            }
        UNROLL
        for (int cc = 0; cc < NQ; cc++) l[cc] = _mm512_fmadd_ps(l[cc], alpha[cc], lsum[cc]);
        if (j0 > 0)
            for (int64_t e = 0; e < d; e++)
                UNROLL
                for (int cc = 0; cc < NQ; cc++)
                    _mm512_store_ps(ot + e * W + 16 * cc, _mm512_mul_ps(_mm512_load_ps(ot + e * W + 16 * cc), alpha[cc]));
        att_pv(NQ, st, v, c->vr, j0, kb, d, ot);
    }

    // O = O^T / l, written back to the strided rows.
    UNROLL
    for (int cc = 0; cc < NQ; cc++) {
        if (16 * cc >= qn) continue;
        __m512 inv = _mm512_div_ps(_mm512_set1_ps(1.0f), l[cc]);
        int nqr = qn - 16 * cc < 16 ? (int)(qn - 16 * cc) : 16;
        for (int64_t e0 = 0; e0 < d; e0 += 16) {
            int ne = d - e0 < 16 ? (int)(d - e0) : 16;
            __mmask16 em = (__mmask16)((1u << ne) - 1);
            __m512 r[16];
            UNROLL
            for (int t = 0; t < 16; t++)
                r[t] = t < ne ? _mm512_mul_ps(_mm512_load_ps(ot + (e0 + t) * W + 16 * cc), inv) : _mm512_setzero_ps();
            transpose16(r);
            for (int i = 0; i < nqr; i++) _mm512_mask_storeu_ps(o + (q0 + 16 * cc + i) * c->orow + e0, em, r[i]);
        }
    }
}

#define ATT_TASK(NQ)                                                                             \
    __attribute__((target("avx512f"))) static void att_task_nq##NQ(void *vctx, int task) {      \
        att_ctx *c = vctx;                                                                       \
        int64_t a = (int64_t)task * c->per, b = a + c->per < c->items ? a + c->per : c->items;   \
        for (int64_t it = a; it < b; it++) {                                                     \
            int64_t t = it % c->qtiles, sh = it / c->qtiles;                                     \
            att_tile(NQ, c, sh / c->heads, sh % c->heads, t * 16 * NQ);                          \
        }                                                                                        \
    }
ATT_TASK(1)
ATT_TASK(2)
ATT_TASK(3)
ATT_TASK(4)

void vck_attention(int64_t nseq, int64_t heads, int64_t sq, int64_t sk, int64_t d,
                   const float *q, int64_t q_seq_stride, int64_t q_row_stride,
                   const float *k, int64_t k_seq_stride, int64_t k_row_stride,
                   const float *v, int64_t v_seq_stride, int64_t v_row_stride,
                   float *o, int64_t o_seq_stride, int64_t o_row_stride, float scale, int causal) {
    if (nseq <= 0 || heads <= 0 || sq <= 0 || d <= 0) return;
    att_ctx c = {heads, sq, sk, d, q, q_seq_stride, q_row_stride, k, k_seq_stride, k_row_stride,
                 v, v_seq_stride, v_row_stride, o, o_seq_stride, o_row_stride, scale, causal, 0, 0, 0, 0};
    if (sk <= 0) {
        // No keys: softmax over nothing; define the output as zeros.
        for (int64_t s = 0; s < nseq; s++)
            for (int64_t i = 0; i < sq; i++)
                for (int64_t h = 0; h < heads; h++) memset(o + s * o_seq_stride + i * o_row_stride + h * d, 0, sizeof(float) * (size_t)d);
        return;
    }
    if (!vck_has(VCK_CPU_AVX512F)) {
        vck_parallel_for((int)(nseq * heads), att_task_portable, &c);
        return;
    }
    c.nq = sq >= 64 ? 4 : (int)((sq + 15) / 16);
    c.qtiles = (sq + 16 * c.nq - 1) / (16 * c.nq);
    c.items = nseq * heads * c.qtiles;
    // About 64 tasks per thread, but at least ~64K multiply-adds per task.
    int64_t threads = vck_get_threads();
    int64_t per_item = 16 * c.nq * sk * d;
    int64_t per = c.items / (threads * 64);
    int64_t min_per = (1 << 16) / (per_item > 0 ? per_item : 1);
    if (per < min_per) per = min_per;
    if (per < 1) per = 1;
    c.per = per;
    int ntasks = (int)((c.items + per - 1) / per);
    switch (c.nq) {
    case 1: vck_parallel_for(ntasks, att_task_nq1, &c); break;
    case 2: vck_parallel_for(ntasks, att_task_nq2, &c); break;
    case 3: vck_parallel_for(ntasks, att_task_nq3, &c); break;
    default: vck_parallel_for(ntasks, att_task_nq4, &c); break;
    }
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
                float *oi = o + s * o_seq_stride + i * o_row_stride + h * d;
                if (jmax <= 0) { for (int64_t e = 0; e < d; e++) oi[e] = 0.0f; continue; }
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
                for (int64_t e = 0; e < d; e++) {
                    double acc = 0;
                    for (int64_t j = 0; j < jmax; j++) acc += sc[j] * v[s * v_seq_stride + j * v_row_stride + h * d + e];
                    oi[e] = (float)(acc / sum);
                }
            }
    vck_free(sc);
}
