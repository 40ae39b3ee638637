// Normalisations and pointwise activations.
#include "internal.h"
#include <immintrin.h>
#include <math.h>

static inline float silu1(float v) { return v / (1.0f + expf(-v)); }
static inline float gelu1(float v) { return 0.5f * v * (1.0f + erff(v * 0.70710678118654752440f)); }

// GroupNorm in three parallel passes over fixed chunks of rows (the chunking depends only on the
// shape, never on the thread count, so results are identical for any number of threads):
// per-chunk per-channel sums -> group means; per-chunk sums of squared deviations -> group
// variances (two-pass, double accumulation); then the fused affine transform (+ activation).
#define VCK_GN_MAX_CHUNKS 16

typedef struct {
    const float *x; float *y; int64_t rows, c, groups, chunk_rows, nchunks;
    const float *gamma, *beta; float eps; int act;
    double *partial;            // [nsamples][nchunks][c]
    const double *mean;         // [nsamples][groups]
    const float *scale, *shift; // [nsamples][c]
} gn_ctx;

VCK_CLONES static void gn_sum_rows(const float *x, int64_t rows, int64_t c, double *acc) {
    for (int64_t r = 0; r < rows; r++)
        for (int64_t j = 0; j < c; j++) acc[j] += x[r * c + j];
}

VCK_CLONES static void gn_sq_rows(const float *x, int64_t rows, int64_t c, const double *mean_c, double *acc) {
    for (int64_t r = 0; r < rows; r++)
        for (int64_t j = 0; j < c; j++) {
            double d = (double)x[r * c + j] - mean_c[j];
            acc[j] += d * d;
        }
}

VCK_CLONES static void gn_apply_rows(const float *x, float *y, int64_t rows, int64_t c, const float *sc, const float *sh) {
    for (int64_t r = 0; r < rows; r++)
        for (int64_t j = 0; j < c; j++) y[r * c + j] = x[r * c + j] * sc[j] + sh[j];
}

static void gn_chunk(const gn_ctx *g, int task, int64_t *s, const float **x, float **y, int64_t *rows) {
    *s = task / g->nchunks;
    int64_t ch = task % g->nchunks, r0 = ch * g->chunk_rows;
    *rows = g->rows - r0 < g->chunk_rows ? g->rows - r0 : g->chunk_rows;
    *x = g->x + (*s * g->rows + r0) * g->c;
    *y = g->y + (*s * g->rows + r0) * g->c;
}

static void gn_pass1(void *vctx, int task) {
    gn_ctx *g = vctx;
    int64_t s, rows; const float *x; float *y;
    gn_chunk(g, task, &s, &x, &y, &rows);
    double *acc = g->partial + (int64_t)task * 2 * g->c;
    memset(acc, 0, sizeof(double) * (size_t)g->c);
    gn_sum_rows(x, rows, g->c, acc);
}

static void gn_pass2(void *vctx, int task) {
    gn_ctx *g = vctx;
    int64_t s, rows; const float *x; float *y;
    gn_chunk(g, task, &s, &x, &y, &rows);
    double *acc = g->partial + (int64_t)task * 2 * g->c;
    // per-channel copy of the group mean, after the accumulator (2c doubles per task)
    double *mean_c = acc + g->c;
    int64_t cg = g->c / g->groups;
    for (int64_t j = 0; j < g->c; j++) mean_c[j] = g->mean[s * g->groups + j / cg];
    memset(acc, 0, sizeof(double) * (size_t)g->c);
    gn_sq_rows(x, rows, g->c, mean_c, acc);
}

static void gn_pass3(void *vctx, int task) {
    gn_ctx *g = vctx;
    int64_t s, rows; const float *x; float *y;
    gn_chunk(g, task, &s, &x, &y, &rows);
    const float *sc = g->scale + s * g->c, *sh = g->shift + s * g->c;
    gn_apply_rows(x, y, rows, g->c, sc, sh);
    if (g->act == VCK_ACT_SILU) vck_silu_ref(y, y, (size_t)(rows * g->c));
    else if (g->act == VCK_ACT_GELU) vck_gelu_ref(y, y, (size_t)(rows * g->c));
}

void vck_group_norm(const float *x, float *y, int64_t nsamples, int64_t rows, int64_t c,
                    int64_t groups, const float *gamma, const float *beta, float eps, int act) {
    if (nsamples <= 0 || rows <= 0 || c <= 0 || groups <= 0 || c % groups != 0) return;
    int64_t chunk_rows = (rows + VCK_GN_MAX_CHUNKS - 1) / VCK_GN_MAX_CHUNKS;
    if (chunk_rows < 64) chunk_rows = 64;
    int64_t nchunks = (rows + chunk_rows - 1) / chunk_rows;
    int64_t ntasks = nsamples * nchunks, cg = c / groups;
    double *partial = vck_alloc(sizeof(double) * (size_t)(ntasks * 2 * c));
    double *mean = vck_alloc(sizeof(double) * (size_t)(nsamples * groups));
    float *scale = vck_alloc(sizeof(float) * (size_t)(nsamples * c));
    float *shift = vck_alloc(sizeof(float) * (size_t)(nsamples * c));
    gn_ctx g = {x, y, rows, c, groups, chunk_rows, nchunks, gamma, beta, eps, act, partial, mean, scale, shift};
    double n = (double)rows * (double)cg;
    // Reduces the per-chunk channel sums of sample s, group gi in a fixed order.
#define GN_REDUCE(s, gi, out)                                                                      \
    do {                                                                                           \
        double sum_ = 0;                                                                           \
        for (int64_t ch = 0; ch < nchunks; ch++) {                                                 \
            const double *acc_ = partial + ((s) * nchunks + ch) * 2 * c + (gi) * cg;               \
            for (int64_t j = 0; j < cg; j++) sum_ += acc_[j];                                      \
        }                                                                                          \
        (out) = sum_;                                                                              \
    } while (0)
    vck_parallel_for((int)ntasks, gn_pass1, &g);
    for (int64_t s = 0; s < nsamples; s++)
        for (int64_t gi = 0; gi < groups; gi++) {
            double sum;
            GN_REDUCE(s, gi, sum);
            mean[s * groups + gi] = sum / n;
        }
    vck_parallel_for((int)ntasks, gn_pass2, &g);
    for (int64_t s = 0; s < nsamples; s++)
        for (int64_t gi = 0; gi < groups; gi++) {
            double sq;
            GN_REDUCE(s, gi, sq);
            double rstd = 1.0 / sqrt(sq / n + (double)eps), m = mean[s * groups + gi];
            for (int64_t j = gi * cg; j < (gi + 1) * cg; j++) {
                double a = rstd * (gamma ? gamma[j] : 1.0f);
                scale[s * c + j] = (float)a;
                shift[s * c + j] = (float)((beta ? beta[j] : 0.0f) - m * a);
            }
        }
#undef GN_REDUCE
    vck_parallel_for((int)ntasks, gn_pass3, &g);
    vck_free(partial); vck_free(mean); vck_free(scale); vck_free(shift);
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

// Pointwise work is split into fixed chunks over the pool (results do not depend on threads).
#define VCK_PW_CHUNK 16384
typedef struct { const float *x; float *y; size_t n; int64_t rows, c, per; int op; } pw_ctx;
enum { PW_SILU, PW_GELU, PW_SOFTMAX, PW_GEGLU };

static void pw_task(void *vctx, int task) {
    pw_ctx *p = vctx;
    if (p->op == PW_SILU || p->op == PW_GELU) {
        size_t a = (size_t)task * VCK_PW_CHUNK, cnt = p->n - a < VCK_PW_CHUNK ? p->n - a : VCK_PW_CHUNK;
        if (p->op == PW_SILU) vck_silu_ref(p->x + a, p->y + a, cnt); else vck_gelu_ref(p->x + a, p->y + a, cnt);
        return;
    }
    int64_t r0 = task * p->per, cnt = p->rows - r0 < p->per ? p->rows - r0 : p->per;
    if (p->op == PW_SOFTMAX) { vck_softmax_rows_ref(p->y + r0 * p->c, cnt, p->c); return; }
    for (int64_t r = r0; r < r0 + cnt; r++) {
        const float *a = p->x + r * 2 * p->c, *g = a + p->c;
        float *o = p->y + r * p->c;
        for (int64_t j = 0; j < p->c; j++) o[j] = a[j] * gelu1(g[j]);
    }
}

static void pw_rows(const float *x, float *y, int64_t rows, int64_t c, int op) {
    if (rows <= 0 || c <= 0) return;
    int64_t per = VCK_PW_CHUNK / c;
    if (per < 1) per = 1;
    pw_ctx p = {x, y, 0, rows, c, per, op};
    vck_parallel_for((int)((rows + per - 1) / per), pw_task, &p);
}

static void pw_flat(const float *x, float *y, size_t n, int op) {
    pw_ctx p = {x, y, n, 0, 0, 0, op};
    vck_parallel_for((int)((n + VCK_PW_CHUNK - 1) / VCK_PW_CHUNK), pw_task, &p);
}

void vck_softmax_rows(float *x, int64_t rows, int64_t c) { pw_rows(x, x, rows, c, PW_SOFTMAX); }

void vck_silu_ref(const float *x, float *y, size_t n) { for (size_t i = 0; i < n; i++) y[i] = silu1(x[i]); }
void vck_silu(const float *x, float *y, size_t n) { pw_flat(x, y, n, PW_SILU); }
void vck_gelu_ref(const float *x, float *y, size_t n) { for (size_t i = 0; i < n; i++) y[i] = gelu1(x[i]); }
void vck_gelu(const float *x, float *y, size_t n) { pw_flat(x, y, n, PW_GELU); }

void vck_geglu(const float *x, float *y, int64_t rows, int64_t f) { pw_rows(x, y, rows, f, PW_GEGLU); }

void vck_add(const float *a, const float *b, float *y, size_t n) { for (size_t i = 0; i < n; i++) y[i] = a[i] + b[i]; }
void vck_add_row_vector(const float *x, const float *v, float *y, int64_t rows, int64_t c) {
    for (int64_t r = 0; r < rows; r++) for (int64_t j = 0; j < c; j++) y[r * c + j] = x[r * c + j] + v[j];
}
void vck_scale(float *x, float s, size_t n) { for (size_t i = 0; i < n; i++) x[i] *= s; }
