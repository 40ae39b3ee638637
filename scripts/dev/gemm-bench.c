// Developer-only GEMM harness (not built by SwiftPM): speed of vck_linear per precision mode on
// one thread (thread CPU time), and accuracy of each q8_0 mode vs a double-precision product with
// the dequantized weights. Build and run (see docs/performance.md, "GEMM kernels"):
//   clang -O3 -std=gnu11 -ISources/CVCKernels/include $(pkg-config --cflags openblas) \
//      scripts/dev/gemm-bench.c Sources/CVCKernels/*.c $(pkg-config --libs openblas) -lpthread -lm \
//      -o /tmp/gemm-bench && /tmp/gemm-bench
#include "CVCKernels.h"
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static uint64_t rng = 88172645463325252ull;
static float frand(void) {
    rng ^= rng << 13; rng ^= rng >> 7; rng ^= rng << 17;
    return (float)((double)(rng >> 11) / 9007199254740992.0 * 2.0 - 1.0);
}
static double tcpu(void) { struct timespec t; clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t); return t.tv_sec + 1e-9 * t.tv_nsec; }

typedef struct { vck_weight w; void *q8; float *f; } W;
static W make_weight(int64_t n, int64_t k) {
    W r;
    r.f = malloc(sizeof(float) * n * k);
    for (int64_t i = 0; i < n * k; i++) r.f[i] = 0.05f * frand();
    size_t rb = vck_q8_0_row_bytes(k);
    r.q8 = malloc(rb * n);
    for (int64_t i = 0; i < n; i++) vck_quantize_row_q8_0(r.f + i * k, (vck_block_q8_0 *)((char *)r.q8 + i * rb), k);
    r.w = (vck_weight){r.q8, VCK_W_Q8_0, n, k};
    return r;
}

static double bench(int64_t m, int64_t n, int64_t k, int q8, int prec) {
    W w = make_weight(n, k);
    float *a = malloc(sizeof(float) * m * k), *c = malloc(sizeof(float) * m * n);
    for (int64_t i = 0; i < m * k; i++) a[i] = frand();
    uint16_t *bf = NULL;
    vck_weight src = q8 == 1 ? w.w : (vck_weight){w.f, VCK_W_F32, n, k};
    if (q8 == 2 || q8 == 3) { // 2: bf16, 3: f16
        bf = malloc(sizeof(uint16_t) * n * k);
        if (q8 == 2) vck_f32_to_bf16(w.f, bf, (size_t)(n * k)); else vck_f32_to_f16(w.f, bf, (size_t)(n * k));
        src = (vck_weight){bf, q8 == 2 ? VCK_W_BF16 : VCK_W_F16, n, k};
    }
    vck_packed_weight *pk = vck_pack_weight(&src);
    vck_weight pw = {pk, VCK_W_PACKED, n, k};
    vck_set_gemm_precision(prec);
    vck_linear(m, a, k, &pw, NULL, c, n, 0.0f); // warm-up
    double best = 1e30;
    for (int rep = 0; rep < 3; rep++) {
        double t0 = tcpu();
        vck_linear(m, a, k, &pw, NULL, c, n, 0.0f);
        double t = tcpu() - t0;
        if (t < best) best = t;
    }
    vck_packed_weight_free(pk);
    free(a); free(c); free(w.f); free(w.q8); free(bf);
    return 2.0 * m * n * k / best * 1e-9;
}

static void accuracy(int64_t m, int64_t n, int64_t k) {
    W w = make_weight(n, k);
    float *deq = malloc(sizeof(float) * n * k), *a = malloc(sizeof(float) * m * k), *c = malloc(sizeof(float) * m * n);
    vck_weight_rows_f32(&w.w, 0, n, deq);
    for (int64_t i = 0; i < m * k; i++) a[i] = frand() * (i % 7 == 0 ? 4.0f : 1.0f);
    double *ref = malloc(sizeof(double) * m * n);
    for (int64_t i = 0; i < m; i++)
        for (int64_t j = 0; j < n; j++) {
            double s = 0;
            for (int64_t p = 0; p < k; p++) s += (double)a[i * k + p] * deq[j * k + p];
            ref[i * n + j] = s;
        }
    const char *names[] = {"fast", "exact", "balanced"};
    for (int prec = 0; prec < 3; prec++) {
        vck_set_gemm_precision(prec);
        vck_linear(m, a, k, &w.w, NULL, c, n, 0.0f);
        double e2 = 0, r2 = 0, emax = 0;
        for (int64_t i = 0; i < m * n; i++) {
            double d = c[i] - ref[i];
            e2 += d * d; r2 += ref[i] * ref[i];
            if (fabs(d) > emax) emax = fabs(d);
        }
        printf("accuracy q8_0 %-8s M=%lld N=%lld K=%lld: rel RMS error %.3g, max abs error %.3g (rms out %.3g)\n", names[prec],
               (long long)m, (long long)n, (long long)k, sqrt(e2 / r2), emax, sqrt(r2 / (m * n)));
    }
    free(deq); free(a); free(c); free(ref); free(w.f); free(w.q8);
}

int main(int argc, char **argv) {
    vck_set_threads(1);
    // Optional shapes "MxNxK" on the command line; by default two of VC2's and the accuracy check.
    int64_t shapes[16][3] = {{2560, 1280, 320}, {640, 2560, 1280}};
    int nshapes = 2;
    if (argc > 1) {
        nshapes = 0;
        for (int i = 1; i < argc && nshapes < 16; i++) {
            long long m, n, k;
            if (sscanf(argv[i], "%lldx%lldx%lld", &m, &n, &k) == 3) {
                shapes[nshapes][0] = m; shapes[nshapes][1] = n; shapes[nshapes][2] = k;
                nshapes++;
            }
        }
    } else {
        accuracy(64, 96, 320);
        accuracy(32, 64, 1280);
    }
    for (int s = 0; s < nshapes; s++) {
        int64_t m = shapes[s][0], n = shapes[s][1], k = shapes[s][2];
        printf("M=%lld N=%lld K=%lld, 1 thread, GOP/s (thread CPU time, best of 3):\n", (long long)m, (long long)n, (long long)k);
        printf("  q8_0 balanced %.0f\n", bench(m, n, k, 1, VCK_GEMM_BALANCED));
        printf("  q8_0 fast     %.0f\n", bench(m, n, k, 1, VCK_GEMM_FAST));
        printf("  q8_0 exact    %.0f\n", bench(m, n, k, 1, VCK_GEMM_EXACT));
        printf("  f32           %.0f\n", bench(m, n, k, 0, VCK_GEMM_EXACT));
        printf("  f16           %.0f\n", bench(m, n, k, 3, VCK_GEMM_EXACT));
        printf("  bf16 fast     %.0f\n", bench(m, n, k, 2, VCK_GEMM_FAST));
        printf("  bf16 exact    %.0f\n", bench(m, n, k, 2, VCK_GEMM_EXACT));
    }
    return 0;
}
