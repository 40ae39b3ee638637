// Summary statistics of a float32 buffer for `vcconv inspect --stats`.
#include "CVCManifest.h"

#include <math.h>

void vcm_stats_init(vcm_stats *s) {
    s->min = INFINITY;
    s->max = -INFINITY;
    s->sum = 0;
    s->sumsq = 0;
    s->finite = 0;
    s->nonfinite = 0;
}

void vcm_stats_f32(vcm_stats *s, const float *x, size_t count) {
    // Chunk sums are folded into the totals every 4096 values (two-level summation), which keeps
    // the rounding error of a 200M-value tensor's mean small.
    double mn = s->min, mx = s->max, sum = s->sum, sq = s->sumsq;
    uint64_t fin = s->finite, nonfin = s->nonfinite;
    for (size_t i = 0; i < count;) {
        size_t end = count - i > 4096 ? i + 4096 : count;
        double cs = 0, cq = 0;
        for (; i < end; i++) {
            float v = x[i];
            if (!isfinite(v)) { nonfin++; continue; }
            double d = v;
            if (d < mn) mn = d;
            if (d > mx) mx = d;
            cs += d;
            cq += d * d;
            fin++;
        }
        sum += cs;
        sq += cq;
    }
    s->min = mn; s->max = mx; s->sum = sum; s->sumsq = sq; s->finite = fin; s->nonfinite = nonfin;
}
