// Normalisations and pointwise activations. Everything large is split over the thread pool in
// row blocks; the SiLU/GELU SIMD paths use the approximations of simd_math.h (checked against the
// libm-based _ref twins).
#include "internal.h"
#include <immintrin.h>
#include <math.h>
#include "simd_math.h"

static inline float silu1(float v) { return v / (1.0f + expf(-v)); }
static inline float gelu1(float v) { return 0.5f * v * (1.0f + erff(v * 0.70710678118654752440f)); }

/// Splits [0, n) into about 4 blocks per thread of at least `min_block` items.
static int64_t block_size(int64_t n, int64_t min_block) {
    int64_t threads = vck_get_threads();
    int64_t b = (n + threads * 4 - 1) / (threads * 4);
    if (b < min_block) b = min_block;
    if (b < 1) b = 1;
    return b;
}

// ---------------------------------------------------------------------------------------------
// Pointwise activations
// ---------------------------------------------------------------------------------------------
typedef struct { const float *x; float *y; int64_t n, per; int act; } pw_ctx;

__attribute__((target("avx512f")))
static void act_avx512(const float *x, float *y, int64_t n, int act) {
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) {
        __m512 v = _mm512_loadu_ps(x + i);
        _mm512_storeu_ps(y + i, act == VCK_ACT_SILU ? vck_silu_avx512(v) : vck_gelu_avx512(v));
    }
    if (i < n) {
        __mmask16 m = (__mmask16)((1u << (n - i)) - 1);
        __m512 v = _mm512_maskz_loadu_ps(m, x + i);
        _mm512_mask_storeu_ps(y + i, m, act == VCK_ACT_SILU ? vck_silu_avx512(v) : vck_gelu_avx512(v));
    }
}

static void act_ref(const float *x, float *y, int64_t n, int act) {
    for (int64_t i = 0; i < n; i++) y[i] = act == VCK_ACT_SILU ? silu1(x[i]) : gelu1(x[i]);
}

static void pw_task(void *vctx, int task) {
    pw_ctx *c = vctx;
    int64_t a = task * c->per, b = a + c->per < c->n ? a + c->per : c->n;
    if (c->act >= 0 && vck_has(VCK_CPU_AVX512F)) act_avx512(c->x + a, c->y + a, b - a, c->act);
    else act_ref(c->x + a, c->y + a, b - a, c->act < 0 ? -c->act : c->act);
}

/// act >= 0: the SIMD approximations; -act: the libm formula (bit-identical to the _ref twins).
static void act_parallel(const float *x, float *y, size_t n, int act) {
    pw_ctx c = {x, y, (int64_t)n, block_size((int64_t)n, 1 << 14), act};
    vck_parallel_for((int)(((int64_t)n + c.per - 1) / c.per), pw_task, &c);
}

// vck_silu / vck_gelu keep the libm formulas (bit-identical to their twins, split over the pool);
// the _fast variants and the fused activations (GEGLU, GroupNorm, conv gathers) use the SIMD
// approximations of simd_math.h.
void vck_silu_ref(const float *x, float *y, size_t n) { act_ref(x, y, (int64_t)n, VCK_ACT_SILU); }
void vck_silu(const float *x, float *y, size_t n) { act_parallel(x, y, n, -VCK_ACT_SILU); }
void vck_silu_fast(const float *x, float *y, size_t n) { act_parallel(x, y, n, VCK_ACT_SILU); }
void vck_gelu_ref(const float *x, float *y, size_t n) { act_ref(x, y, (int64_t)n, VCK_ACT_GELU); }
void vck_gelu(const float *x, float *y, size_t n) { act_parallel(x, y, n, -VCK_ACT_GELU); }
void vck_gelu_fast(const float *x, float *y, size_t n) { act_parallel(x, y, n, VCK_ACT_GELU); }

typedef struct { const float *x; float *y; int64_t rows, f, per; } geglu_ctx;

__attribute__((target("avx512f")))
static void geglu_rows_avx512(const float *x, float *y, int64_t r0, int64_t r1, int64_t f) {
    for (int64_t r = r0; r < r1; r++) {
        const float *a = x + r * 2 * f, *g = a + f;
        float *o = y + r * f;
        int64_t j = 0;
        for (; j + 16 <= f; j += 16)
            _mm512_storeu_ps(o + j, _mm512_mul_ps(_mm512_loadu_ps(a + j), vck_gelu_avx512(_mm512_loadu_ps(g + j))));
        if (j < f) {
            __mmask16 m = (__mmask16)((1u << (f - j)) - 1);
            _mm512_mask_storeu_ps(o + j, m, _mm512_mul_ps(_mm512_maskz_loadu_ps(m, a + j),
                                                          vck_gelu_avx512(_mm512_maskz_loadu_ps(m, g + j))));
        }
    }
}

static void geglu_rows_ref(const float *x, float *y, int64_t r0, int64_t r1, int64_t f) {
    for (int64_t r = r0; r < r1; r++) {
        const float *a = x + r * 2 * f, *g = a + f;
        float *o = y + r * f;
        for (int64_t j = 0; j < f; j++) o[j] = a[j] * gelu1(g[j]);
    }
}

static void geglu_task(void *vctx, int task) {
    geglu_ctx *c = vctx;
    int64_t a = task * c->per, b = a + c->per < c->rows ? a + c->per : c->rows;
    if (vck_has(VCK_CPU_AVX512F)) geglu_rows_avx512(c->x, c->y, a, b, c->f);
    else geglu_rows_ref(c->x, c->y, a, b, c->f);
}

void vck_geglu(const float *x, float *y, int64_t rows, int64_t f) {
    geglu_ctx c = {x, y, rows, f, block_size(rows, (1 << 14) / (f > 0 ? f : 1) + 1)};
    vck_parallel_for((int)((rows + c.per - 1) / c.per), geglu_task, &c);
}

void vck_geglu_ref(const float *x, float *y, int64_t rows, int64_t f) { geglu_rows_ref(x, y, 0, rows, f); }

// ---------------------------------------------------------------------------------------------
// GroupNorm: statistics (parallel over samples x row blocks, double partial sums reduced in a
// fixed order, so results do not depend on the thread count), then a parallel affine pass.
// ---------------------------------------------------------------------------------------------
typedef struct {
    const float *x; int64_t rows, c, groups, nblk, rpb;
    const double *mean;   // [nsamples, groups] (pass 2)
    double *part;         // [nsamples, nblk, c]
} gns_ctx;

static void gn_sum_task(void *vctx, int task) {
    gns_ctx *g = vctx;
    int64_t s = task / g->nblk, blk = task % g->nblk, c = g->c;
    int64_t r0 = blk * g->rpb, r1 = r0 + g->rpb < g->rows ? r0 + g->rpb : g->rows;
    const float *x = g->x + s * g->rows * c;
    double *acc = g->part + ((size_t)s * (size_t)g->nblk + (size_t)blk) * (size_t)c;
    memset(acc, 0, sizeof(double) * (size_t)c);
    if (!g->mean) {
        for (int64_t r = r0; r < r1; r++)
            for (int64_t j = 0; j < c; j++) acc[j] += x[r * c + j];
    } else {
        int64_t cg = c / g->groups;
        const double *mean = g->mean + s * g->groups;
        double *mc = vck_alloc(sizeof(double) * (size_t)c);   // the group mean of each channel
        for (int64_t j = 0; j < c; j++) mc[j] = mean[j / cg];
        for (int64_t r = r0; r < r1; r++)
            for (int64_t j = 0; j < c; j++) { double d = x[r * c + j] - mc[j]; acc[j] += d * d; }
        vck_free(mc);
    }
}

void vck_group_norm_stats(const float *x, int64_t nsamples, int64_t rows, int64_t c, int64_t groups,
                          const float *gamma, const float *beta, float eps, float *scale, float *shift) {
    if (nsamples <= 0 || c <= 0 || groups <= 0) return;
    // Row blocks depend on the shape only (up to 16 per sample, at least 64 rows each), so the
    // reduction order and the result do not depend on the thread count.
    int64_t rpb = (rows + 15) / 16;
    if (rpb < 64) rpb = 64;
    int64_t nblk = rows > 0 ? (rows + rpb - 1) / rpb : 1;
    size_t psize = (size_t)nsamples * (size_t)nblk * (size_t)c;
    double *part = vck_alloc(sizeof(double) * psize);
    double *mean = vck_alloc(sizeof(double) * (size_t)(nsamples * groups));
    double *rstd = vck_alloc(sizeof(double) * (size_t)(nsamples * groups));
    int64_t cg = c / groups;
    double n = (double)rows * (double)cg;
    gns_ctx g = {x, rows, c, groups, nblk, rpb, NULL, part};
    vck_parallel_for((int)(nsamples * nblk), gn_sum_task, &g);
    for (int64_t s = 0; s < nsamples; s++)
        for (int64_t gi = 0; gi < groups; gi++) {
            double s0 = 0;
            for (int64_t b = 0; b < nblk; b++)
                for (int64_t j = 0; j < cg; j++) s0 += part[((size_t)(s * nblk + b)) * (size_t)c + (size_t)(gi * cg + j)];
            mean[s * groups + gi] = s0 / n;
        }
    g.mean = mean;
    vck_parallel_for((int)(nsamples * nblk), gn_sum_task, &g);
    for (int64_t s = 0; s < nsamples; s++)
        for (int64_t gi = 0; gi < groups; gi++) {
            double s2 = 0;
            for (int64_t b = 0; b < nblk; b++)
                for (int64_t j = 0; j < cg; j++) s2 += part[((size_t)(s * nblk + b)) * (size_t)c + (size_t)(gi * cg + j)];
            rstd[s * groups + gi] = 1.0 / sqrt(s2 / n + (double)eps);
        }
    for (int64_t s = 0; s < nsamples; s++)
        for (int64_t j = 0; j < c; j++) {
            int64_t gi = j / cg;
            double a = rstd[s * groups + gi] * (gamma ? gamma[j] : 1.0f);
            scale[s * c + j] = (float)a;
            shift[s * c + j] = (float)((beta ? beta[j] : 0.0f) - mean[s * groups + gi] * a);
        }
    vck_free(part); vck_free(mean); vck_free(rstd);
}

typedef struct {
    const float *x; float *y; int64_t rows, c, per; const float *scale, *shift; int act; int64_t total;
} gna_ctx;

__attribute__((target("avx512f")))
static void gn_apply_rows_avx512(const float *x, float *y, int64_t n, int64_t c, const float *sc, const float *sh, int act) {
    for (int64_t r = 0; r < n; r++) {
        const float *xr = x + r * c;
        float *yr = y + r * c;
        int64_t j = 0;
        for (; j < c; j += 16) {
            __mmask16 m = c - j >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << (c - j)) - 1);
            __m512 v = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, xr + j), _mm512_maskz_loadu_ps(m, sc + j), _mm512_maskz_loadu_ps(m, sh + j));
            if (act == VCK_ACT_SILU) v = vck_silu_avx512(v);
            else if (act == VCK_ACT_GELU) v = vck_gelu_avx512(v);
            _mm512_mask_storeu_ps(yr + j, m, v);
        }
    }
}

static void gn_apply_rows_ref(const float *x, float *y, int64_t n, int64_t c, const float *sc, const float *sh, int act) {
    for (int64_t r = 0; r < n; r++)
        for (int64_t j = 0; j < c; j++) {
            float v = x[r * c + j] * sc[j] + sh[j];
            if (act == VCK_ACT_SILU) v = silu1(v);
            else if (act == VCK_ACT_GELU) v = gelu1(v);
            y[r * c + j] = v;
        }
}

// Task = a block of global rows; each row r belongs to sample r / rows.
static void gn_apply_task(void *vctx, int task) {
    gna_ctx *g = vctx;
    int64_t a = task * g->per, b = a + g->per < g->total ? a + g->per : g->total;
    int avx = vck_has(VCK_CPU_AVX512F);
    while (a < b) {
        int64_t s = a / g->rows, end = (s + 1) * g->rows < b ? (s + 1) * g->rows : b;
        const float *sc = g->scale + s * g->c, *sh = g->shift + s * g->c;
        if (avx) gn_apply_rows_avx512(g->x + a * g->c, g->y + a * g->c, end - a, g->c, sc, sh, g->act);
        else gn_apply_rows_ref(g->x + a * g->c, g->y + a * g->c, end - a, g->c, sc, sh, g->act);
        a = end;
    }
}

void vck_group_norm_apply(const float *x, float *y, int64_t nsamples, int64_t rows, int64_t c,
                          const float *scale, const float *shift, int act) {
    int64_t total = nsamples * rows;
    if (total <= 0 || c <= 0) return;
    gna_ctx g = {x, y, rows, c, block_size(total, (1 << 14) / c + 1), scale, shift, act, total};
    vck_parallel_for((int)((total + g.per - 1) / g.per), gn_apply_task, &g);
}

void vck_group_norm(const float *x, float *y, int64_t nsamples, int64_t rows, int64_t c,
                    int64_t groups, const float *gamma, const float *beta, float eps, int act) {
    if (nsamples <= 0 || c <= 0) return;
    float *sc = vck_alloc(sizeof(float) * (size_t)(nsamples * c));
    float *sh = vck_alloc(sizeof(float) * (size_t)(nsamples * c));
    vck_group_norm_stats(x, nsamples, rows, c, groups, gamma, beta, eps, sc, sh);
    vck_group_norm_apply(x, y, nsamples, rows, c, sc, sh, act);
    vck_free(sc); vck_free(sh);
}

// The reference: one sample at a time, two passes in double, scalar libm activations.
void vck_group_norm_ref(const float *x, float *y, int64_t nsamples, int64_t rows, int64_t c,
                        int64_t groups, const float *gamma, const float *beta, float eps, int act) {
    int64_t cg = c / groups;
    double n = (double)rows * (double)cg;
    for (int64_t s = 0; s < nsamples; s++) {
        const float *xs = x + s * rows * c;
        float *ys = y + s * rows * c;
        for (int64_t gi = 0; gi < groups; gi++) {
            double s0 = 0, s2 = 0;
            for (int64_t r = 0; r < rows; r++)
                for (int64_t j = gi * cg; j < (gi + 1) * cg; j++) s0 += xs[r * c + j];
            double mean = s0 / n;
            for (int64_t r = 0; r < rows; r++)
                for (int64_t j = gi * cg; j < (gi + 1) * cg; j++) { double d = xs[r * c + j] - mean; s2 += d * d; }
            double rstd = 1.0 / sqrt(s2 / n + (double)eps);
            for (int64_t r = 0; r < rows; r++)
                for (int64_t j = gi * cg; j < (gi + 1) * cg; j++) {
                    double a = rstd * (gamma ? gamma[j] : 1.0f);
                    float v = (float)((double)xs[r * c + j] * a + ((beta ? beta[j] : 0.0f) - mean * a));
                    if (act == VCK_ACT_SILU) v = silu1(v);
                    else if (act == VCK_ACT_GELU) v = gelu1(v);
                    ys[r * c + j] = v;
                }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// LayerNorm
// ---------------------------------------------------------------------------------------------
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

// ---------------------------------------------------------------------------------------------
// Adds and scales (parallel element blocks; the loops auto-vectorise)
// ---------------------------------------------------------------------------------------------
typedef struct { const float *a, *b; float *y; int64_t n, per, c; float s; } ew_ctx;

static void add_task(void *vctx, int task) {
    ew_ctx *e = vctx;
    int64_t a = task * e->per, b = a + e->per < e->n ? a + e->per : e->n;
    for (int64_t i = a; i < b; i++) e->y[i] = e->a[i] + e->b[i];
}

void vck_add(const float *a, const float *b, float *y, size_t n) {
    ew_ctx e = {a, b, y, (int64_t)n, block_size((int64_t)n, 1 << 15), 0, 0};
    vck_parallel_for((int)((e.n + e.per - 1) / e.per), add_task, &e);
}

static void add_row_task(void *vctx, int task) {
    ew_ctx *e = vctx;
    int64_t a = task * e->per, b = a + e->per < e->n ? a + e->per : e->n;
    for (int64_t r = a; r < b; r++)
        for (int64_t j = 0; j < e->c; j++) e->y[r * e->c + j] = e->a[r * e->c + j] + e->b[j];
}

void vck_add_row_vector(const float *x, const float *v, float *y, int64_t rows, int64_t c) {
    ew_ctx e = {x, v, y, rows, block_size(rows, (1 << 15) / (c > 0 ? c : 1) + 1), c, 0};
    vck_parallel_for((int)((rows + e.per - 1) / e.per), add_row_task, &e);
}

static void scale_task(void *vctx, int task) {
    ew_ctx *e = vctx;
    int64_t a = task * e->per, b = a + e->per < e->n ? a + e->per : e->n;
    for (int64_t i = a; i < b; i++) e->y[i] *= e->s;
}

void vck_scale(float *x, float s, size_t n) {
    ew_ctx e = {NULL, NULL, x, (int64_t)n, block_size((int64_t)n, 1 << 15), 0, s};
    vck_parallel_for((int)((e.n + e.per - 1) / e.per), scale_task, &e);
}
