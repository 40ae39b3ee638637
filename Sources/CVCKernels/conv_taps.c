// Stride-1 "same" convolution without im2col: one GEMM per kernel tap over row bands of a
// zero-padded copy of the input. In padded coordinates the input pixels a tap reads for
// consecutive output positions are consecutive rows, so each tap is a plain [M, cin] x [cin, cout]
// product accumulated into a band of outputs that carries kw-1 junk columns per image row; the
// band is then compacted into y (and the bias added). Against im2col this writes no 9x-expanded
// column matrix and lets the GEMM pack each weight panel once per band instead of once per
// im2col chunk. Bands of about 2 MiB (of input and of output) keep the output band in L2 while
// the kh*kw products accumulate into it (measured on the full-size VAE: 8 MiB bands were ~12 %
// slower, 0.5 MiB bands ~10 % slower).
#include "internal.h"

#define VCK_TAPS_BAND_BYTES (2u << 20)

void vck_conv2d_taps_nhwc(const float *x, int64_t nimg, int64_t h, int64_t w, int64_t cin,
                          const vck_weight *taps, const float *bias, int64_t kh, int64_t kw,
                          int64_t band_rows, float *y) {
    const int64_t cout = taps[0].n, ph = kh / 2, pw = kw / 2, wp = w + 2 * pw;
    const int64_t widest = cin > cout ? cin : cout;
    int64_t band = band_rows > 0 ? band_rows : (int64_t)(VCK_TAPS_BAND_BYTES / sizeof(float)) / (wp * (widest > 0 ? widest : 1));
    if (band < 1) band = 1;
    if (band > h) band = h;
    float *xin = vck_alloc((size_t)(band + kh - 1) * (size_t)wp * (size_t)cin * sizeof(float));
    float *acc = vck_alloc((size_t)band * (size_t)wp * (size_t)cout * sizeof(float));
    // Tap (ky, kx) reads padded pixel p + ky * wp + kx for output position p.
    int64_t *offsets = vck_alloc((size_t)(kh * kw) * sizeof(int64_t));
    for (int64_t t = 0; t < kh * kw; t++) offsets[t] = (t / kw) * wp + t % kw;
    for (int64_t img = 0; img < nimg; img++) {
        const float *xi = x + img * h * w * cin;
        float *yi = y + img * h * w * cout;
        for (int64_t oy0 = 0; oy0 < h; oy0 += band) {
            const int64_t r = h - oy0 < band ? h - oy0 : band;
            // Padded input rows oy0 - ph ... oy0 + r - 1 + ph.
            for (int64_t i = 0; i < r + kh - 1; i++) {
                const int64_t iy = oy0 - ph + i;
                float *row = xin + i * wp * cin;
                if (iy < 0 || iy >= h) {
                    memset(row, 0, (size_t)(wp * cin) * sizeof(float));
                } else {
                    memset(row, 0, (size_t)(pw * cin) * sizeof(float));
                    memcpy(row + pw * cin, xi + iy * w * cin, (size_t)(w * cin) * sizeof(float));
                    memset(row + (pw + w) * cin, 0, (size_t)(pw * cin) * sizeof(float));
                }
            }
            // Output position p = oyr * wp + ox (valid for ox < w) reads padded pixel
            // p + ky * wp + kx for tap (ky, kx). The last row's junk columns are not computed, so
            // the reads end exactly at the last padded pixel of the band.
            const int64_t m = (r - 1) * wp + w;
            // Quantized / bf16 activations: each padded pixel is prepared once for all the taps.
            if (!vck_linear_shifted(m, xin, cin, (r + kh - 1) * wp, taps, (int)(kh * kw), offsets, acc, cout)) {
                for (int64_t t = 0; t < kh * kw; t++)
                    vck_linear(m, xin + offsets[t] * cin, cin, &taps[t], NULL, acc, cout, t == 0 ? 0.0f : 1.0f);
            }
            for (int64_t oyr = 0; oyr < r; oyr++) {
                float *dst = yi + (oy0 + oyr) * w * cout;
                const float *src = acc + oyr * wp * cout;
                if (bias) {
                    for (int64_t ox = 0; ox < w; ox++)
                        for (int64_t c = 0; c < cout; c++) dst[ox * cout + c] = src[ox * cout + c] + bias[c];
                } else {
                    memcpy(dst, src, (size_t)(w * cout) * sizeof(float));
                }
            }
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
