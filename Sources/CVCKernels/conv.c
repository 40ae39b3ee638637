// Convolutions lowered to GEMM: im2col in PyTorch weight order (cin, ky, kx), so every weight
// type is used as stored, one bounded chunk of output pixels at a time.
#include "internal.h"

#define VCK_IM2COL_BYTES (8u << 20)

typedef struct {
    const float *x; int64_t h, w, cin, kh, kw, stride, pad, oh, ow;
    int64_t p0; float *col; int64_t k; int64_t rows_per_task; int64_t count;
} im2col_ctx;

// Rows [p0 + a, p0 + b) of the im2col matrix; pixel p = (img, oy, ox).
static void im2col_task(void *vctx, int task) {
    im2col_ctx *c = vctx;
    int64_t a = (int64_t)task * c->rows_per_task;
    int64_t b = a + c->rows_per_task < c->count ? a + c->rows_per_task : c->count;
    int64_t per_img = c->oh * c->ow;
    for (int64_t r = a; r < b; r++) {
        int64_t p = c->p0 + r;
        int64_t img = p / per_img, rem = p % per_img, oy = rem / c->ow, ox = rem % c->ow;
        float *dst = c->col + r * c->k;
        const float *xi = c->x + img * c->h * c->w * c->cin;
        int64_t taps = c->kh * c->kw;
        for (int64_t ky = 0; ky < c->kh; ky++) {
            int64_t iy = oy * c->stride - c->pad + ky;
            for (int64_t kx = 0; kx < c->kw; kx++) {
                int64_t ix = ox * c->stride - c->pad + kx;
                int64_t t = ky * c->kw + kx;
                if (iy < 0 || iy >= c->h || ix < 0 || ix >= c->w) {
                    for (int64_t ci = 0; ci < c->cin; ci++) dst[ci * taps + t] = 0.0f;
                } else {
                    const float *src = xi + (iy * c->w + ix) * c->cin;
                    for (int64_t ci = 0; ci < c->cin; ci++) dst[ci * taps + t] = src[ci];
                }
            }
        }
    }
}

void vck_conv2d_nhwc(const float *x, int64_t nimg, int64_t h, int64_t w, int64_t cin,
                     const vck_weight *wt, const float *bias, int64_t kh, int64_t kw,
                     int64_t stride, int64_t pad, float *y) {
    int64_t oh = (h + 2 * pad - kh) / stride + 1, ow = (w + 2 * pad - kw) / stride + 1;
    int64_t cout = wt->n, k = cin * kh * kw;
    int64_t total = nimg * oh * ow;
    if (total <= 0 || cout <= 0) return;
    if (k <= 0 || (kh == 1 && kw == 1 && stride == 1 && pad == 0)) {
        vck_linear(total, x, cin, wt, bias, y, cout, 0.0f); // k == 0: y = bias
        return;
    }
    int64_t chunk = (int64_t)(VCK_IM2COL_BYTES / (sizeof(float) * (size_t)k));
    if (chunk < 1) chunk = 1;
    if (chunk > total) chunk = total;
    float *col = vck_alloc((size_t)chunk * (size_t)k * sizeof(float));
    int threads = vck_get_threads();
    for (int64_t p0 = 0; p0 < total; p0 += chunk) {
        int64_t count = total - p0 < chunk ? total - p0 : chunk;
        im2col_ctx c = {x, h, w, cin, kh, kw, stride, pad, oh, ow, p0, col, k, 0, count};
        int tasks = threads * 4;
        c.rows_per_task = (count + tasks - 1) / tasks;
        if (c.rows_per_task < 1) c.rows_per_task = 1;
        tasks = (int)((count + c.rows_per_task - 1) / c.rows_per_task);
        vck_parallel_for(tasks, im2col_task, &c);
        vck_linear(count, col, k, wt, bias, y + p0 * cout, cout, 0.0f);
    }
    vck_free(col);
}

typedef struct {
    const float *x; int64_t t, hw, cin, kt; int64_t p0, count, rows_per_task; float *col;
} tcol_ctx;

static void tcol_task(void *vctx, int task) {
    tcol_ctx *c = vctx;
    int64_t a = (int64_t)task * c->rows_per_task;
    int64_t b = a + c->rows_per_task < c->count ? a + c->rows_per_task : c->count;
    int64_t per_seq = c->t * c->hw, half = c->kt / 2, k = c->cin * c->kt;
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
                for (int64_t ci = 0; ci < c->cin; ci++) dst[ci * c->kt + j] = src[ci];
            }
        }
    }
}

void vck_conv_temporal(const float *x, int64_t nseq, int64_t t, int64_t hw, int64_t cin,
                       const vck_weight *wt, const float *bias, int64_t kt, float *y) {
    int64_t cout = wt->n, k = cin * kt, total = nseq * t * hw;
    if (total <= 0 || cout <= 0) return;
    if (k <= 0) { vck_linear(total, x, cin, wt, bias, y, cout, 0.0f); return; }
    int64_t chunk = (int64_t)(VCK_IM2COL_BYTES / (sizeof(float) * (size_t)k));
    if (chunk < 1) chunk = 1;
    if (chunk > total) chunk = total;
    float *col = vck_alloc((size_t)chunk * (size_t)k * sizeof(float));
    int threads = vck_get_threads();
    for (int64_t p0 = 0; p0 < total; p0 += chunk) {
        int64_t count = total - p0 < chunk ? total - p0 : chunk;
        tcol_ctx c = {x, t, hw, cin, kt, p0, count, 0, col};
        int tasks = threads * 4;
        c.rows_per_task = (count + tasks - 1) / tasks;
        if (c.rows_per_task < 1) c.rows_per_task = 1;
        tasks = (int)((count + c.rows_per_task - 1) / c.rows_per_task);
        vck_parallel_for(tasks, tcol_task, &c);
        vck_linear(count, col, k, wt, bias, y + p0 * cout, cout, 0.0f);
    }
    vck_free(col);
}
