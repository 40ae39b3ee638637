// CPU feature detection and the thread pool shared with OpenBLAS.
#include "internal.h"
#include <cblas.h>
#include <pthread.h>
#include <stdatomic.h>
#include <unistd.h>
#include <stdio.h>

static _Atomic uint32_t g_features = 0xffffffffu;
static _Atomic uint32_t g_mask = 0xffffffffu;

static uint32_t detect(void) {
    uint32_t f = 0;
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx2")) f |= VCK_CPU_AVX2;
    if (__builtin_cpu_supports("fma")) f |= VCK_CPU_FMA;
    if (__builtin_cpu_supports("avx2")) f |= VCK_CPU_F16C; // every AVX2 CPU we target has F16C
    if (__builtin_cpu_supports("avx512f")) f |= VCK_CPU_AVX512F;
    if (__builtin_cpu_supports("avx512bw")) f |= VCK_CPU_AVX512BW;
    if (__builtin_cpu_supports("avx512vl")) f |= VCK_CPU_AVX512VL;
    if (__builtin_cpu_supports("avx512vnni")) f |= VCK_CPU_AVX512VNNI;
    if (__builtin_cpu_supports("avx512bf16")) f |= VCK_CPU_AVX512BF16;
    if (__builtin_cpu_supports("sse4.2")) f |= VCK_CPU_SSE42;
    return f;
}

uint32_t vck_cpu_features(void) {
    uint32_t f = atomic_load_explicit(&g_features, memory_order_relaxed);
    if (f == 0xffffffffu) {
        f = detect();
        atomic_store(&g_features, f);
    }
    return f & atomic_load_explicit(&g_mask, memory_order_relaxed);
}

void vck_cpu_set_mask(uint32_t mask) { atomic_store(&g_mask, mask); }

void *vck_alloc(size_t bytes) {
    void *p = NULL;
    if (bytes == 0) bytes = 64;
    if (posix_memalign(&p, 64, (bytes + 63) & ~(size_t)63) != 0 || p == NULL) {
        fprintf(stderr, "vck: out of memory allocating %zu bytes of scratch\n", bytes);
        abort();
    }
    return p;
}
void vck_free(void *p) { free(p); }

// ---------------------------------------------------------------------------------------------
// Thread pool: persistent workers, a generation counter, tasks handed out by an atomic index.
// ---------------------------------------------------------------------------------------------
#define VCK_MAX_THREADS 256
static pthread_mutex_t g_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t g_cv = PTHREAD_COND_INITIALIZER;
static pthread_cond_t g_done_cv = PTHREAD_COND_INITIALIZER;
static pthread_mutex_t g_run_mu = PTHREAD_MUTEX_INITIALIZER; // one parallel region at a time
static int g_threads = 0;          // configured size (0 = not yet set)
static int g_workers = 0;          // started workers (g_threads - 1)
static uint64_t g_generation = 0;
static void (*g_fn)(void *, int);
static void *g_ctx;
static int g_ntasks;
static _Atomic int g_next;
static int g_active;               // workers still inside the current generation
static _Thread_local int t_in_region = 0;

int vck_in_parallel_region(void) { return t_in_region; }

static void run_tasks(void) {
    for (;;) {
        int i = atomic_fetch_add(&g_next, 1);
        if (i >= g_ntasks) break;
        g_fn(g_ctx, i);
    }
}

static int g_participants;        // workers allowed to take tasks in this generation

static void *worker_main(void *arg) {
    int id = (int)(intptr_t)arg;
    uint64_t seen = 0;
    t_in_region = 1;
    pthread_mutex_lock(&g_mu);
    for (;;) {
        while (g_generation == seen) pthread_cond_wait(&g_cv, &g_mu);
        seen = g_generation;
        int take = id < g_participants;
        pthread_mutex_unlock(&g_mu);
        if (take) run_tasks();
        pthread_mutex_lock(&g_mu);
        if (--g_active == 0) pthread_cond_signal(&g_done_cv);
    }
    return NULL;
}

static int online_cpus(void) {
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n < 1 ? 1 : (int)n;
}

void vck_blas_threads(int n) { openblas_set_num_threads(n < 1 ? 1 : n); }

void vck_set_threads(int n) {
    if (n < 1) n = online_cpus();
    if (n > VCK_MAX_THREADS) n = VCK_MAX_THREADS;
    pthread_mutex_lock(&g_run_mu);
    pthread_mutex_lock(&g_mu);
    while (g_workers < n - 1) {
        pthread_t th;
        if (pthread_create(&th, NULL, worker_main, (void *)(intptr_t)g_workers) != 0) break;
        pthread_detach(th);
        g_workers++;
    }
    g_threads = n;
    pthread_mutex_unlock(&g_mu);
    pthread_mutex_unlock(&g_run_mu);
    vck_blas_threads(n);
}

int vck_get_threads(void) {
    if (g_threads == 0) vck_set_threads(0);
    return g_threads;
}

void vck_parallel_for(int ntasks, void (*fn)(void *ctx, int task), void *ctx) {
    if (ntasks <= 0) return;
    int threads = vck_get_threads();
    if (ntasks == 1 || threads <= 1 || t_in_region) {
        for (int i = 0; i < ntasks; i++) fn(ctx, i);
        return;
    }
    pthread_mutex_lock(&g_run_mu);
    // Workers beyond the configured size stay parked: only `threads - 1` join.
    int helpers = threads - 1 < g_workers ? threads - 1 : g_workers;
    pthread_mutex_lock(&g_mu);
    g_fn = fn;
    g_ctx = ctx;
    g_ntasks = ntasks;
    atomic_store(&g_next, 0);
    g_active = g_workers; // every started worker wakes; only the first `helpers` take tasks
    g_participants = helpers;
    g_generation++;
    pthread_cond_broadcast(&g_cv);
    pthread_mutex_unlock(&g_mu);
    t_in_region = 1;
    run_tasks();
    t_in_region = 0;
    pthread_mutex_lock(&g_mu);
    while (g_active > 0) pthread_cond_wait(&g_done_cv, &g_mu);
    pthread_mutex_unlock(&g_mu);
    pthread_mutex_unlock(&g_run_mu);
}
