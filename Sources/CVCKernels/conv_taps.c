// Stride-1 "same" convolution without im2col: one GEMM per kernel tap over row bands of a
// zero-padded copy of the input. In padded coordinates the input pixels a tap reads for
// consecutive output positions are consecutive rows, so each tap is a plain [M, cin] x [cin, cout]
// product accumulated into a band of outputs that carries kw-1 junk columns per image row; the
// band is then compacted into y (and the bias added). Against im2col this writes no 9x-expanded
// column matrix and lets the GEMM pack each weight panel once per band instead of once per
// im2col chunk. Bands of about 2 MiB (of input and of output) keep the output band in L2 while
// the kh*kw products accumulate into it (measured on the full-size VAE: 8 MiB bands were ~12 %
// slower, 0.5 MiB bands ~10 % slower). The band copy (which can apply a GroupNorm + activation
// and a nearest x2 upsample on the way, so neither is materialised) and the compaction run on
// the thread pool, a row per task.
#include "internal.h"

#define VCK_TAPS_BAND_BYTES (2u << 20)

// Padded band rows [i0, i1): row i holds input row oy0 - ph + i of the (upsampled) image, zero
// outside it, with pw zero pixels on both sides; normalised on the way when `norm` is set.
typedef struct {
    const float *xi; int64_t h, w, cin, vh, vw, wp, pw, ph, oy0, nrows, rows_per, sample;
    float *xin; int up, avx; const vck_prenorm *norm;
} fill_ctx;

static void fill_task(void *vctx, int task) {
    const fill_ctx *c = vctx;
    int64_t i0 = (int64_t)task * c->rows_per, i1 = i0 + c->rows_per < c->nrows ? i0 + c->rows_per : c->nrows;
    for (int64_t i = i0; i < i1; i++) {
        const int64_t iy = c->oy0 - c->ph + i;
        float *row = c->xin + i * c->wp * c->cin;
        if (iy < 0 || iy >= c->vh) {
            memset(row, 0, (size_t)(c->wp * c->cin) * sizeof(float));
            continue;
        }
        memset(row, 0, (size_t)(c->pw * c->cin) * sizeof(float));
        memset(row + (c->pw + c->vw) * c->cin, 0, (size_t)(c->pw * c->cin) * sizeof(float));
        const float *src = c->xi + (c->up ? iy >> 1 : iy) * c->w * c->cin;
        float *dst = row + c->pw * c->cin;
        if (!c->up && !c->norm) {
            memcpy(dst, src, (size_t)(c->w * c->cin) * sizeof(float));
            continue;
        }
        for (int64_t ox = 0; ox < c->vw; ox++) {
            const float *px = src + (c->up ? ox >> 1 : ox) * c->cin;
            if (c->norm) vck_prenorm_row(c->norm, c->avx, c->sample, px, dst + ox * c->cin, c->cin);
            else memcpy(dst + ox * c->cin, px, (size_t)c->cin * sizeof(float));
        }
    }
}

// Output row oy0 + task of the band: the valid columns of acc (+ bias).
typedef struct { const float *acc; float *yi; const float *bias; int64_t oy0, wp, vw, cout; } out_ctx;

static void out_task(void *vctx, int task) {
    const out_ctx *c = vctx;
    float *dst = c->yi + (c->oy0 + task) * c->vw * c->cout;
    const float *src = c->acc + (int64_t)task * c->wp * c->cout;
    if (!c->bias) {
        memcpy(dst, src, (size_t)(c->vw * c->cout) * sizeof(float));
        return;
    }
    for (int64_t ox = 0; ox < c->vw; ox++)
        for (int64_t co = 0; co < c->cout; co++) dst[ox * c->cout + co] = src[ox * c->cout + co] + c->bias[co];
}

void vck_conv2d_taps_nhwc(const float *x, int64_t nimg, int64_t h, int64_t w, int64_t cin,
                          const vck_weight *taps, const float *bias, int64_t kh, int64_t kw,
                          int64_t band_rows, float *y) {
    vck_conv2d_taps_nhwc_ex(x, nimg, h, w, cin, taps, bias, kh, kw, band_rows, 0, NULL, y);
}

void vck_conv2d_taps_nhwc_ex(const float *x, int64_t nimg, int64_t h, int64_t w, int64_t cin,
                             const vck_weight *taps, const float *bias, int64_t kh, int64_t kw,
                             int64_t band_rows, int upsample2x, const vck_prenorm *norm, float *y) {
    const int64_t vh = upsample2x ? 2 * h : h, vw = upsample2x ? 2 * w : w;   // the convolved image
    const int64_t cout = taps[0].n, ph = kh / 2, pw = kw / 2, wp = vw + 2 * pw;
    const int64_t widest = cin > cout ? cin : cout;
    int64_t band = band_rows > 0 ? band_rows : (int64_t)(VCK_TAPS_BAND_BYTES / sizeof(float)) / (wp * (widest > 0 ? widest : 1));
    if (band < 1) band = 1;
    if (band > vh) band = vh;
    float *xin = vck_alloc((size_t)(band + kh - 1) * (size_t)wp * (size_t)cin * sizeof(float));
    float *acc = vck_alloc((size_t)band * (size_t)wp * (size_t)cout * sizeof(float));
    // Tap (ky, kx) reads padded pixel p + ky * wp + kx for output position p.
    int64_t *offsets = vck_alloc((size_t)(kh * kw) * sizeof(int64_t));
    for (int64_t t = 0; t < kh * kw; t++) offsets[t] = (t / kw) * wp + t % kw;
    const int avx = norm && vck_has(VCK_CPU_AVX512F);
    for (int64_t img = 0; img < nimg; img++) {
        const float *xi = x + img * h * w * cin;
        float *yi = y + img * vh * vw * cout;
        for (int64_t oy0 = 0; oy0 < vh; oy0 += band) {
            const int64_t r = vh - oy0 < band ? vh - oy0 : band;
            // Padded input rows oy0 - ph ... oy0 + r - 1 + ph.
            fill_ctx fc = {xi, h, w, cin, vh, vw, wp, pw, ph, oy0, r + kh - 1, 1, norm ? img / norm->imgs_per_sample : 0,
                           xin, upsample2x != 0, avx, norm};
            vck_parallel_for((int)fc.nrows, fill_task, &fc);
            // Output position p = oyr * wp + ox (valid for ox < vw) reads padded pixel
            // p + ky * wp + kx for tap (ky, kx). The last row's junk columns are not computed, so
            // the reads end exactly at the last padded pixel of the band.
            const int64_t m = (r - 1) * wp + vw;
            // Quantized / bf16 activations: each padded pixel is prepared once for all the taps.
            if (!vck_linear_shifted(m, xin, cin, (r + kh - 1) * wp, taps, (int)(kh * kw), offsets, acc, cout)) {
                for (int64_t t = 0; t < kh * kw; t++)
                    vck_linear(m, xin + offsets[t] * cin, cin, &taps[t], NULL, acc, cout, t == 0 ? 0.0f : 1.0f);
            }
            out_ctx oc = {acc, yi, bias, oy0, wp, vw, cout};
            vck_parallel_for((int)r, out_task, &oc);
        }
    }
    vck_free(xin);
    vck_free(acc);
    vck_free(offsets);
}

void vck_repack_conv_taps(const void *src, void *dst, size_t elem_size, int64_t cout, int64_t cin, int64_t taps) {
    const unsigned char *s = src;
    unsigned char *d = dst;
    for (int64_t co = 0; co < cout; co++)
        for (int64_t ci = 0; ci < cin; ci++)
            for (int64_t t = 0; t < taps; t++)
                memcpy(d + ((size_t)((t * cout + co) * cin + ci)) * elem_size,
                       s + ((size_t)((co * cin + ci) * taps + t)) * elem_size, elem_size);
}
