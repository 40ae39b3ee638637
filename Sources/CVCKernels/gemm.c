// Matrix products. Weights of every type go to the kernels of gemm_packed.c (f32 too, where
// AVX2/AVX-512 FMA exists); vck_sgemm uses them for alpha = 1 and falls back to OpenBLAS
// (single-threaded, split over our pool for large products) otherwise.
#include "internal.h"
#include <cblas.h>
#include <math.h>

static void sgemm1(int trans_a, int trans_b, int64_t m, int64_t n, int64_t k, float alpha,
                   const float *a, int64_t lda, const float *b, int64_t ldb, float beta, float *c,
                   int64_t ldc) {
    cblas_sgemm(CblasRowMajor, trans_a ? CblasTrans : CblasNoTrans, trans_b ? CblasTrans : CblasNoTrans,
                (blasint)m, (blasint)n, (blasint)k, alpha, a, (blasint)lda, b, (blasint)ldb, beta, c,
                (blasint)ldc);
}

typedef struct {
    int ta, tb; int64_t m, n, k; float alpha; const float *a; int64_t lda; const float *b; int64_t ldb;
    float beta; float *c; int64_t ldc; int split_m; int64_t per;
} sgemm_ctx;

// One task = a band of rows (split_m) or columns of C; OpenBLAS runs single-threaded inside.
static void sgemm_task(void *vctx, int task) {
    sgemm_ctx *g = vctx;
    int64_t s0 = (int64_t)task * g->per, total = g->split_m ? g->m : g->n;
    int64_t cnt = total - s0 < g->per ? total - s0 : g->per;
    if (cnt <= 0) return;
    if (g->split_m) {
        const float *a = g->ta ? g->a + s0 : g->a + s0 * g->lda;
        sgemm1(g->ta, g->tb, cnt, g->n, g->k, g->alpha, a, g->lda, g->b, g->ldb, g->beta, g->c + s0 * g->ldc, g->ldc);
    } else {
        const float *b = g->tb ? g->b + s0 * g->ldb : g->b + s0;
        sgemm1(g->ta, g->tb, g->m, cnt, g->k, g->alpha, g->a, g->lda, b, g->ldb, g->beta, g->c + s0, g->ldc);
    }
}

void vck_sgemm(int trans_a, int trans_b, int64_t m, int64_t n, int64_t k, float alpha,
               const float *a, int64_t lda, const float *b, int64_t ldb, float beta, float *c,
               int64_t ldc) {
    if (m <= 0 || n <= 0) return;
    if (k <= 0) { // C = beta C (BLAS rejects the zero leading dimensions such a call may carry)
        for (int64_t i = 0; i < m; i++)
            for (int64_t j = 0; j < n; j++) c[i * ldc + j] = beta == 0.0f ? 0.0f : beta * c[i * ldc + j];
        return;
    }
    int threads = vck_get_threads(); // also makes sure OpenBLAS is single-threaded
    // The own kernels first: they do not depend on OpenBLAS recognising the CPU (0.3.21 runs its
    // SSE3 "Prescott" kernels on Sapphire/Emerald Rapids, about 5x below the FMA peak).
    if (alpha == 1.0f && vck_sgemm_own(trans_a, trans_b, m, n, k, a, lda, b, ldb, beta, c, ldc)) return;
    double work = (double)m * (double)n * (double)k;
    if (threads <= 1 || vck_in_parallel_region() || work < 4e6) {
        sgemm1(trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
        return;
    }
    sgemm_ctx g = {trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc, m >= n, 0};
    int64_t total = g.split_m ? m : n;
    int tasks = threads;
    if (total / (2 * threads) >= 128) tasks = 2 * threads;
    int64_t per = (total + tasks - 1) / tasks;
    per = (per + 15) / 16 * 16; // keep bands a multiple of the micro-kernel size
    g.per = per;
    vck_parallel_for((int)((total + per - 1) / per), sgemm_task, &g);
}

void vck_sgemm_ref(int trans_a, int trans_b, int64_t m, int64_t n, int64_t k, float alpha,
                   const float *a, int64_t lda, const float *b, int64_t ldb, float beta, float *c,
                   int64_t ldc) {
    for (int64_t i = 0; i < m; i++)
        for (int64_t j = 0; j < n; j++) {
            double s = 0;
            for (int64_t p = 0; p < k; p++) {
                float av = trans_a ? a[p * lda + i] : a[i * lda + p];
                float bv = trans_b ? b[j * ldb + p] : b[p * ldb + j];
                s += (double)av * (double)bv;
            }
            float prev = beta == 0.0f ? 0.0f : beta * c[i * ldc + j];
            c[i * ldc + j] = (float)(alpha * s) + prev;
        }
}

size_t vck_weight_row_bytes(int dtype, int64_t k) {
    switch (dtype) {
    case VCK_W_F32: return (size_t)k * 4;
    case VCK_W_F16:
    case VCK_W_BF16: return (size_t)k * 2;
    case VCK_W_Q8_0: return vck_q8_0_row_bytes((size_t)k);
    default: return 0;
    }
}

void vck_weight_rows_f32(const vck_weight *w, int64_t row0, int64_t nrows, float *dst) {
    if (w->dtype == VCK_W_PACKED) {
        vck_packed_weight_rows_f32((const vck_packed_weight *)w->data, row0, nrows, dst);
        return;
    }
    size_t rb = vck_weight_row_bytes(w->dtype, w->k);
    const uint8_t *base = (const uint8_t *)w->data + (size_t)row0 * rb;
    for (int64_t r = 0; r < nrows; r++) {
        const void *src = base + (size_t)r * rb;
        float *out = dst + r * w->k;
        switch (w->dtype) {
        case VCK_W_F32: memcpy(out, src, (size_t)w->k * 4); break;
        case VCK_W_F16: vck_f16_to_f32(src, out, (size_t)w->k); break;
        case VCK_W_BF16: vck_bf16_to_f32(src, out, (size_t)w->k); break;
        case VCK_W_Q8_0: vck_dequantize_row_q8_0(src, out, (size_t)w->k); break;
        default: memset(out, 0, (size_t)w->k * 4); break;
        }
    }
}

static void add_bias(float *c, int64_t m, int64_t n, int64_t ldc, const float *bias) {
    if (!bias) return;
    for (int64_t i = 0; i < m; i++) {
        float *row = c + i * ldc;
        for (int64_t j = 0; j < n; j++) row[j] += bias[j];
    }
}

// Whether vck_linear runs this weight on the packed-panel kernels (everything but f32 weights on
// CPUs without FMA, which go to OpenBLAS, and K = 0).
static int uses_packed_kernels(const vck_weight *w) {
    const uint32_t fma = VCK_CPU_AVX2 | VCK_CPU_FMA | VCK_CPU_F16C;
    return w->k > 0 && (w->dtype != VCK_W_F32 || (vck_cpu_features() & fma) == fma);
}

vck_packed_weight *vck_pack_for_reuse(const vck_weight *w) {
    if (w->dtype == VCK_W_PACKED || w->n <= 0 || !uses_packed_kernels(w)) return NULL;
    return vck_pack_weight(w);
}

void vck_linear(int64_t m, const float *a, int64_t lda, const vck_weight *w, const float *bias,
                float *c, int64_t ldc, float beta) {
    if (m <= 0 || w->n <= 0) return;
    if (uses_packed_kernels(w)) {
        vck_linear_lowp(m, a, lda, w, bias, c, ldc, beta, 0);
        return;
    }
    // f32 weights without FMA (OpenBLAS beats the scalar kernel), or K = 0: C = beta C + bias
    vck_sgemm(0, 1, m, w->n, w->k, 1.0f, a, lda, (const float *)w->data, w->k, beta, c, ldc);
    add_bias(c, m, w->n, ldc, bias);
}

void vck_linear_ref(int64_t m, const float *a, int64_t lda, const vck_weight *w, const float *bias,
                    float *c, int64_t ldc, float beta) {
    if (m <= 0 || w->n <= 0) return;
    if (w->k > 0 && (w->dtype != VCK_W_F32)) {
        vck_linear_lowp(m, a, lda, w, bias, c, ldc, beta, 1);
        return;
    }
    const float *wf = w->data;
    for (int64_t i = 0; i < m; i++)
        for (int64_t j = 0; j < w->n; j++) {
            float acc = 0.0f;
            for (int64_t p = 0; p < w->k; p++) acc = fmaf(a[i * lda + p], wf[j * w->k + p], acc);
            float out = acc;
            if (bias) out = out + bias[j];
            if (beta != 0.0f) out = beta * c[i * ldc + j] + out;
            c[i * ldc + j] = out;
        }
}
