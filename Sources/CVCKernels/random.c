// Deterministic synthetic data (benchmark weights): counter-based, so any element can be computed
// independently and the fill is split over the thread pool with identical results for any thread
// count.
#include "internal.h"

static inline uint64_t splitmix64(uint64_t z) {
    z += 0x9e3779b97f4a7c15ull;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

void vck_fill_uniform_ref(float *x, size_t n, uint64_t seed, float lo, float hi) {
    uint64_t key = splitmix64(seed);
    float span = hi - lo;
    for (size_t i = 0; i < n; i++) {
        uint64_t r = splitmix64(key ^ (uint64_t)i * 0xd1b54a32d192ed03ull);
        x[i] = lo + span * ((float)(r >> 40) * (1.0f / 16777216.0f)); // 24 random bits in [0, 1)
    }
}

typedef struct { float *x; size_t n, per; uint64_t seed; float lo, hi; } fill_ctx;

static void fill_task(void *vctx, int task) {
    fill_ctx *c = vctx;
    size_t a = (size_t)task * c->per, b = a + c->per < c->n ? a + c->per : c->n;
    uint64_t key = splitmix64(c->seed);
    float span = c->hi - c->lo;
    for (size_t i = a; i < b; i++) {
        uint64_t r = splitmix64(key ^ (uint64_t)i * 0xd1b54a32d192ed03ull);
        c->x[i] = c->lo + span * ((float)(r >> 40) * (1.0f / 16777216.0f));
    }
}

void vck_fill_uniform(float *x, size_t n, uint64_t seed, float lo, float hi) {
    size_t per = 1u << 16;
    if (n <= per) { vck_fill_uniform_ref(x, n, seed, lo, hi); return; }
    fill_ctx c = {x, n, per, seed, lo, hi};
    vck_parallel_for((int)((n + per - 1) / per), fill_task, &c);
}
