// Layout helpers for channels-last activations.
#include "internal.h"

void vck_upsample_nearest2x(const float *x, int64_t nimg, int64_t h, int64_t w, int64_t c, float *y) {
    for (int64_t n = 0; n < nimg; n++)
        for (int64_t oy = 0; oy < 2 * h; oy++) {
            const float *src = x + (n * h + oy / 2) * w * c;
            float *dst = y + (n * 2 * h + oy) * 2 * w * c;
            for (int64_t ox = 0; ox < 2 * w; ox++) memcpy(dst + ox * c, src + (ox / 2) * c, (size_t)c * 4);
        }
}

void vck_concat_channels(const float *a, int64_t ca, const float *b, int64_t cb, int64_t rows, float *y) {
    for (int64_t r = 0; r < rows; r++) {
        memcpy(y + r * (ca + cb), a + r * ca, (size_t)ca * 4);
        memcpy(y + r * (ca + cb) + ca, b + r * cb, (size_t)cb * 4);
    }
}

void vck_transpose_strided(const float *x, int64_t rows, int64_t cols, int64_t ldx, float *y) {
    const int64_t B = 32;
    for (int64_t i0 = 0; i0 < rows; i0 += B)
        for (int64_t j0 = 0; j0 < cols; j0 += B)
            for (int64_t i = i0; i < rows && i < i0 + B; i++)
                for (int64_t j = j0; j < cols && j < j0 + B; j++) y[j * rows + i] = x[i * ldx + j];
}

void vck_transpose(const float *x, int64_t rows, int64_t cols, float *y) { vck_transpose_strided(x, rows, cols, cols, y); }
