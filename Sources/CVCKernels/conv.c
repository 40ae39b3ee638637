// Convolutions lowered to GEMM: im2col in PyTorch weight order (cin, ky, kx), so every weight
// type is used as stored, one bounded chunk of output pixels at a time. The _ex variants fold a
// preceding GroupNorm (+ activation) and a nearest x2 upsample into the im2col gather, so the
// normalised / upsampled input is never materialised.
#include "internal.h"
#include <immintrin.h>
#include <math.h>
#include "simd_math.h"

#define VCK_IM2COL_BYTES (8u << 20)

/// dst[0..c) = act(src * scale + shift) (the GroupNorm affine of one pixel).
__attribute__((target("avx512f")))
static void prenorm_row_avx512(const float *src, const float *sc, const float *sh, int act, float *dst, int64_t c) {
    for (int64_t j = 0; j < c; j += 16) {
        __mmask16 m = c - j >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << (c - j)) - 1);
        __m512 v = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, src + j), _mm512_maskz_loadu_ps(m, sc + j), _mm512_maskz_loadu_ps(m, sh + j));
        if (act == VCK_ACT_SILU) v = vck_silu_avx512(v);
        else if (act == VCK_ACT_GELU) v = vck_gelu_avx512(v);
        _mm512_mask_storeu_ps(dst + j, m, v);
    }
}

static void prenorm_row_ref(const float *src, const float *sc, const float *sh, int act, float *dst, int64_t c) {
    for (int64_t j = 0; j < c; j++) {
        float v = src[j] * sc[j] + sh[j];
        if (act == VCK_ACT_SILU) v = v / (1.0f + expf(-v));
        else if (act == VCK_ACT_GELU) v = 0.5f * v * (1.0f + erff(v * 0.70710678118654752440f));
        dst[j] = v;
    }
}

void vck_prenorm_row(const vck_prenorm *n, int avx, int64_t sample, const float *src, float *dst, int64_t c) {
    const float *sc = n->scale + sample * c, *sh = n->shift + sample * c;
    if (avx) prenorm_row_avx512(src, sc, sh, n->act, dst, c);
    else prenorm_row_ref(src, sc, sh, n->act, dst, c);
}

typedef struct {
    const float *x; int64_t h, w, cin, kh, kw, stride, pad, oh, ow;
    int64_t p0; float *col; int64_t k; int64_t rows_per_task; int64_t count;
    int up; const vck_prenorm *norm; int avx;   // avx: read on the calling thread
} im2col_ctx;

// Rows [p0 + a, p0 + b) of the im2col matrix; pixel p = (img, oy, ox). With `up` the input is
// seen at twice its size (nearest neighbour).
static void im2col_task(void *vctx, int task) {
    im2col_ctx *c = vctx;
    int64_t a = (int64_t)task * c->rows_per_task;
    int64_t b = a + c->rows_per_task < c->count ? a + c->rows_per_task : c->count;
    int64_t per_img = c->oh * c->ow;
    int64_t vh = c->up ? 2 * c->h : c->h, vw = c->up ? 2 * c->w : c->w;
    int64_t taps = c->kh * c->kw;
    float *tmp = c->norm ? vck_alloc(sizeof(float) * (size_t)c->cin) : NULL;
    for (int64_t r = a; r < b; r++) {
        int64_t p = c->p0 + r;
        int64_t img = p / per_img, rem = p % per_img, oy = rem / c->ow, ox = rem % c->ow;
        float *dst = c->col + r * c->k;
        const float *xi = c->x + img * c->h * c->w * c->cin;
        for (int64_t ky = 0; ky < c->kh; ky++) {
            int64_t iy = oy * c->stride - c->pad + ky;
            for (int64_t kx = 0; kx < c->kw; kx++) {
                int64_t ix = ox * c->stride - c->pad + kx;
                int64_t t = ky * c->kw + kx;
                if (iy < 0 || iy >= vh || ix < 0 || ix >= vw) {
                    for (int64_t ci = 0; ci < c->cin; ci++) dst[ci * taps + t] = 0.0f;
                    continue;
                }
                int64_t sy = c->up ? iy >> 1 : iy, sx = c->up ? ix >> 1 : ix;
                const float *src = xi + (sy * c->w + sx) * c->cin;
                if (c->norm) {
                    if (taps == 1) { vck_prenorm_row(c->norm, c->avx, img / c->norm->imgs_per_sample, src, dst, c->cin); continue; }
                    vck_prenorm_row(c->norm, c->avx, img / c->norm->imgs_per_sample, src, tmp, c->cin);
                    src = tmp;
                }
                if (taps == 1) memcpy(dst, src, sizeof(float) * (size_t)c->cin);
                else for (int64_t ci = 0; ci < c->cin; ci++) dst[ci * taps + t] = src[ci];
            }
        }
    }
    vck_free(tmp);
}

// vck_linear packs an unpacked weight on every call and these convolutions call it once per im2col
// chunk (~180 rows at VC2's widest layers, where repacking cost about as much as the products):
// pack it once for all chunks.
static vck_packed_weight *pack_for_chunks(const vck_weight *wt, int64_t total, int64_t chunk, vck_weight *use) {
    *use = *wt;
    vck_packed_weight *p = total > chunk ? vck_pack_for_reuse(wt) : NULL;
    if (p) *use = (vck_weight){p, VCK_W_PACKED, wt->n, wt->k};
    return p;
}

void vck_conv2d_nhwc_ex(const float *x, int64_t nimg, int64_t h, int64_t w, int64_t cin,
                        const vck_weight *wt, const float *bias, int64_t kh, int64_t kw,
                        int64_t stride, int64_t pad, int upsample2x, const vck_prenorm *norm, float *y) {
    int64_t vh = upsample2x ? 2 * h : h, vw = upsample2x ? 2 * w : w;
    int64_t oh = (vh + 2 * pad - kh) / stride + 1, ow = (vw + 2 * pad - kw) / stride + 1;
    int64_t cout = wt->n, k = cin * kh * kw;
    int64_t total = nimg * oh * ow;
    if (total <= 0 || cout <= 0) return;
    if (k <= 0 || (kh == 1 && kw == 1 && stride == 1 && pad == 0 && !upsample2x && !norm)) {
        vck_linear(total, x, cin, wt, bias, y, cout, 0.0f); // k == 0: y = bias
        return;
    }
    int64_t chunk = (int64_t)(VCK_IM2COL_BYTES / (sizeof(float) * (size_t)k));
    if (chunk < 1) chunk = 1;
    if (chunk > total) chunk = total;
    float *col = vck_alloc((size_t)chunk * (size_t)k * sizeof(float));
    vck_weight use;
    vck_packed_weight *own = pack_for_chunks(wt, total, chunk, &use);
    int threads = vck_get_threads(), avx = vck_has(VCK_CPU_AVX512F);
    for (int64_t p0 = 0; p0 < total; p0 += chunk) {
        int64_t count = total - p0 < chunk ? total - p0 : chunk;
        im2col_ctx c = {x, h, w, cin, kh, kw, stride, pad, oh, ow, p0, col, k, 0, count, upsample2x, norm, avx};
        int tasks = threads * 4;
        c.rows_per_task = (count + tasks - 1) / tasks;
        if (c.rows_per_task < 1) c.rows_per_task = 1;
        tasks = (int)((count + c.rows_per_task - 1) / c.rows_per_task);
        vck_parallel_for(tasks, im2col_task, &c);
        vck_linear(count, col, k, &use, bias, y + p0 * cout, cout, 0.0f);
    }
    vck_packed_weight_free(own);
    vck_free(col);
}

void vck_conv2d_nhwc(const float *x, int64_t nimg, int64_t h, int64_t w, int64_t cin,
                     const vck_weight *wt, const float *bias, int64_t kh, int64_t kw,
                     int64_t stride, int64_t pad, float *y) {
    vck_conv2d_nhwc_ex(x, nimg, h, w, cin, wt, bias, kh, kw, stride, pad, 0, NULL, y);
}

typedef struct {
    const float *x; int64_t t, hw, cin, kt; int64_t p0, count, rows_per_task; float *col;
    const vck_prenorm *norm; int avx;
} tcol_ctx;

static void tcol_task(void *vctx, int task) {
    tcol_ctx *c = vctx;
    int64_t a = (int64_t)task * c->rows_per_task;
    int64_t b = a + c->rows_per_task < c->count ? a + c->rows_per_task : c->count;
    int64_t per_seq = c->t * c->hw, half = c->kt / 2, k = c->cin * c->kt;
    float *tmp = c->norm ? vck_alloc(sizeof(float) * (size_t)c->cin) : NULL;
    for (int64_t r = a; r < b; r++) {
        int64_t p = c->p0 + r;
        int64_t s = p / per_seq, rem = p % per_seq, ti = rem / c->hw, pix = rem % c->hw;
        float *dst = c->col + r * k;
        for (int64_t j = 0; j < c->kt; j++) {
            int64_t tt = ti - half + j;
            if (tt < 0 || tt >= c->t) {
                for (int64_t ci = 0; ci < c->cin; ci++) dst[ci * c->kt + j] = 0.0f;
            } else {
                const float *src = c->x + ((s * c->t + tt) * c->hw + pix) * c->cin;
                if (c->norm) {
                    vck_prenorm_row(c->norm, c->avx, s / c->norm->imgs_per_sample, src, tmp, c->cin);
                    src = tmp;
                }
                for (int64_t ci = 0; ci < c->cin; ci++) dst[ci * c->kt + j] = src[ci];
            }
        }
    }
    vck_free(tmp);
}

void vck_conv_temporal_ex(const float *x, int64_t nseq, int64_t t, int64_t hw, int64_t cin,
                          const vck_weight *wt, const float *bias, int64_t kt, const vck_prenorm *norm, float *y) {
    int64_t cout = wt->n, k = cin * kt, total = nseq * t * hw;
    if (total <= 0 || cout <= 0) return;
    if (k <= 0) { vck_linear(total, x, cin, wt, bias, y, cout, 0.0f); return; }
    int64_t chunk = (int64_t)(VCK_IM2COL_BYTES / (sizeof(float) * (size_t)k));
    if (chunk < 1) chunk = 1;
    if (chunk > total) chunk = total;
    float *col = vck_alloc((size_t)chunk * (size_t)k * sizeof(float));
    vck_weight use;
    vck_packed_weight *own = pack_for_chunks(wt, total, chunk, &use);
    int threads = vck_get_threads(), avx = vck_has(VCK_CPU_AVX512F);
    for (int64_t p0 = 0; p0 < total; p0 += chunk) {
        int64_t count = total - p0 < chunk ? total - p0 : chunk;
        tcol_ctx c = {x, t, hw, cin, kt, p0, count, 0, col, norm, avx};
        int tasks = threads * 4;
        c.rows_per_task = (count + tasks - 1) / tasks;
        if (c.rows_per_task < 1) c.rows_per_task = 1;
        tasks = (int)((count + c.rows_per_task - 1) / c.rows_per_task);
        vck_parallel_for(tasks, tcol_task, &c);
        vck_linear(count, col, k, &use, bias, y + p0 * cout, cout, 0.0f);
    }
    vck_packed_weight_free(own);
    vck_free(col);
}

void vck_conv_temporal(const float *x, int64_t nseq, int64_t t, int64_t hw, int64_t cin,
                       const vck_weight *wt, const float *bias, int64_t kt, float *y) {
    vck_conv_temporal_ex(x, nseq, t, hw, cin, wt, bias, kt, NULL, y);
}
