// Small elementwise helpers used when merging LoRA deltas (plain loops the compiler vectorises).
#include "internal.h"
#include <math.h>

void vck_mul(const float *a, const float *b, float *y, size_t n) {
    for (size_t i = 0; i < n; i++) y[i] = a[i] * b[i];
}

int64_t vck_first_nonfinite(const float *x, size_t n) {
    // Scan in blocks with a branch-free reduction so the common (all finite) case vectorises;
    // only a block that contains a NaN/Inf is searched element by element.
    const size_t block = 4096;
    for (size_t start = 0; start < n; start += block) {
        size_t end = start + block < n ? start + block : n;
        int bad = 0;
        for (size_t i = start; i < end; i++) bad |= !isfinite(x[i]);
        if (bad) {
            for (size_t i = start; i < end; i++) if (!isfinite(x[i])) return (int64_t)i;
        }
    }
    return -1;
}
