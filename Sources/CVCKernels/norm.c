// Normalisations and pointwise activations.
#include "internal.h"
#include <immintrin.h>
#include <math.h>

static inline float silu1(float v) { return v / (1.0f + expf(-v)); }
static inline float gelu1(float v) { return 0.5f * v * (1.0f + erff(v * 0.70710678118654752440f)); }

typedef struct {
    const float *x; float *y; int64_t rows, c, groups; const float *gamma, *beta; float eps; int act;
} gn_ctx;

// One task = one sample. Two passes in double: per-channel sums, then per-group variance about
// the group mean, then the affine transform (+ activation).
static void gn_task(void *vctx, int s) {
    gn_ctx *g = vctx;
    int64_t c = g->c, cg = c / g->groups;
    const float *x = g->x + (int64_t)s * g->rows * c;
    float *y = g->y + (int64_t)s * g->rows * c;
    double *acc = vck_alloc(sizeof(double) * (size_t)c);
    double *mean = vck_alloc(sizeof(double) * (size_t)g->groups);
    double *rstd = vck_alloc(sizeof(double) * (size_t)g->groups);
    memset(acc, 0, sizeof(double) * (size_t)c);
    for (int64_t r = 0; r < g->rows; r++)
        for (int64_t j = 0; j < c; j++) acc[j] += x[r * c + j];
    double n = (double)g->rows * (double)cg;
    for (int64_t gi = 0; gi < g->groups; gi++) {
        double s0 = 0;
        for (int64_t j = 0; j < cg; j++) s0 += acc[gi * cg + j];
        mean[gi] = s0 / n;
    }
    memset(acc, 0, sizeof(double) * (size_t)c);
    for (int64_t r = 0; r < g->rows; r++)
        for (int64_t j = 0; j < c; j++) {
            double d = x[r * c + j] - mean[j / cg];
            acc[j] += d * d;
        }
    for (int64_t gi = 0; gi < g->groups; gi++) {
        double s2 = 0;
        for (int64_t j = 0; j < cg; j++) s2 += acc[gi * cg + j];
        rstd[gi] = 1.0 / sqrt(s2 / n + (double)g->eps);
    }
    // Per-channel scale/shift, then one fused pass.
    float *sc = (float *)acc, *sh = sc + c; // acc has room for 2c floats
    for (int64_t j = 0; j < c; j++) {
        double a = rstd[j / cg] * (g->gamma ? g->gamma[j] : 1.0f);
        sc[j] = (float)a;
        sh[j] = (float)((g->beta ? g->beta[j] : 0.0f) - mean[j / cg] * a);
    }
    for (int64_t r = 0; r < g->rows; r++) {
        const float *xr = x + r * c;
        float *yr = y + r * c;
        for (int64_t j = 0; j < c; j++) {
            float v = xr[j] * sc[j] + sh[j];
            if (g->act == VCK_ACT_SILU) v = silu1(v);
            else if (g->act == VCK_ACT_GELU) v = gelu1(v);
            yr[j] = v;
        }
    }
    vck_free(acc); vck_free(mean); vck_free(rstd);
}

void vck_group_norm(const float *x, float *y, int64_t nsamples, int64_t rows, int64_t c,
                    int64_t groups, const float *gamma, const float *beta, float eps, int act) {
    gn_ctx g = {x, y, rows, c, groups, gamma, beta, eps, act};
    vck_parallel_for((int)nsamples, gn_task, &g);
}

typedef struct { const float *x; float *y; int64_t rows, c, per; const float *gamma, *beta; float eps; } ln_ctx;

static void ln_task(void *vctx, int task) {
    ln_ctx *l = vctx;
    int64_t a = task * l->per, b = a + l->per < l->rows ? a + l->per : l->rows;
    for (int64_t r = a; r < b; r++) {
        const float *x = l->x + r * l->c;
        float *y = l->y + r * l->c;
        double s = 0;
        for (int64_t j = 0; j < l->c; j++) s += x[j];
        double mean = s / (double)l->c, v = 0;
        for (int64_t j = 0; j < l->c; j++) { double d = x[j] - mean; v += d * d; }
        double rstd = 1.0 / sqrt(v / (double)l->c + (double)l->eps);
        for (int64_t j = 0; j < l->c; j++) {
            float n = (float)((x[j] - mean) * rstd);
            y[j] = n * (l->gamma ? l->gamma[j] : 1.0f) + (l->beta ? l->beta[j] : 0.0f);
        }
    }
}

void vck_layer_norm(const float *x, float *y, int64_t rows, int64_t c, const float *gamma,
                    const float *beta, float eps) {
    int threads = vck_get_threads();
    int64_t per = (rows + threads * 4 - 1) / (threads * 4);
    if (per < 1) per = 1;
    ln_ctx l = {x, y, rows, c, per, gamma, beta, eps};
    vck_parallel_for((int)((rows + per - 1) / per), ln_task, &l);
}

void vck_softmax_rows_ref(float *x, int64_t rows, int64_t c) {
    for (int64_t r = 0; r < rows; r++) {
        float *v = x + r * c;
        float m = -INFINITY;
        for (int64_t j = 0; j < c; j++) if (v[j] > m) m = v[j];
        double s = 0;
        for (int64_t j = 0; j < c; j++) { v[j] = expf(v[j] - m); s += v[j]; }
        float inv = (float)(1.0 / s);
        for (int64_t j = 0; j < c; j++) v[j] *= inv;
    }
}

void vck_softmax_rows(float *x, int64_t rows, int64_t c) { vck_softmax_rows_ref(x, rows, c); }

void vck_silu_ref(const float *x, float *y, size_t n) { for (size_t i = 0; i < n; i++) y[i] = silu1(x[i]); }
void vck_silu(const float *x, float *y, size_t n) { vck_silu_ref(x, y, n); }
void vck_gelu_ref(const float *x, float *y, size_t n) { for (size_t i = 0; i < n; i++) y[i] = gelu1(x[i]); }
void vck_gelu(const float *x, float *y, size_t n) { vck_gelu_ref(x, y, n); }

void vck_geglu(const float *x, float *y, int64_t rows, int64_t f) {
    for (int64_t r = 0; r < rows; r++) {
        const float *a = x + r * 2 * f, *g = a + f;
        float *o = y + r * f;
        for (int64_t j = 0; j < f; j++) o[j] = a[j] * gelu1(g[j]);
    }
}

void vck_add(const float *a, const float *b, float *y, size_t n) { for (size_t i = 0; i < n; i++) y[i] = a[i] + b[i]; }
void vck_add_row_vector(const float *x, const float *v, float *y, int64_t rows, int64_t c) {
    for (int64_t r = 0; r < rows; r++) for (int64_t j = 0; j < c; j++) y[r * c + j] = x[r * c + j] + v[j];
}
void vck_scale(float *x, float s, size_t n) { for (size_t i = 0; i < n; i++) x[i] *= s; }
