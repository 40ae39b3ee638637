// CPU feature detection and the thread pool shared with OpenBLAS.
#include "internal.h"
#include <cblas.h>
#include <pthread.h>
#include <stdatomic.h>
#include <unistd.h>
#include <stdio.h>

static _Atomic uint32_t g_features = 0xffffffffu;
static _Atomic uint32_t g_mask = 0xffffffffu;
static _Thread_local uint32_t t_mask = 0xffffffffu;

static uint32_t detect(void) {
    uint32_t f = 0;
    // __builtin_cpu_supports also checks that the OS saves the AVX / AVX-512 register state.
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx2")) f |= VCK_CPU_AVX2;
    if (__builtin_cpu_supports("fma")) f |= VCK_CPU_FMA;
    if (__builtin_cpu_supports("f16c")) f |= VCK_CPU_F16C;
    if (__builtin_cpu_supports("avx512f")) f |= VCK_CPU_AVX512F;
    if (__builtin_cpu_supports("avx512bw")) f |= VCK_CPU_AVX512BW;
    if (__builtin_cpu_supports("avx512vl")) f |= VCK_CPU_AVX512VL;
    if (__builtin_cpu_supports("avx512vnni")) f |= VCK_CPU_AVX512VNNI;
    if (__builtin_cpu_supports("avx512bf16")) f |= VCK_CPU_AVX512BF16;
    if (__builtin_cpu_supports("sse4.2")) f |= VCK_CPU_SSE42;
    if (__builtin_cpu_is("intel")) f |= VCK_CPU_BF16_VIA_FMA;
    return f;
}

uint32_t vck_cpu_detected(void) {
    uint32_t f = atomic_load_explicit(&g_features, memory_order_relaxed);
    if (f == 0xffffffffu) {
        f = detect();
        atomic_store(&g_features, f);
    }
    return f;
}

uint32_t vck_cpu_features(void) {
    return vck_cpu_detected() & atomic_load_explicit(&g_mask, memory_order_relaxed) & t_mask;
}

void vck_cpu_set_mask(uint32_t mask) { atomic_store(&g_mask, mask); }
void vck_cpu_set_thread_mask(uint32_t mask) { t_mask = mask; }

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
// Thread pool: persistent workers that are never shut down (they park on a condition variable
// between regions and the process may exit at any time), a generation counter, and tasks handed
// out by an atomic index. One parallel region runs at a time (g_run_mu); a region started from
// inside a task (nested) runs serially on the calling thread.
//
// OpenBLAS is kept single-threaded: vck_sgemm splits large products over this pool instead. Two
// thread pools on the same cores would oversubscribe them (OpenBLAS workers busy-wait after each
// call), and OpenBLAS's thread count is a process-wide setting that a task cannot change for
// itself alone.
// ---------------------------------------------------------------------------------------------
#define VCK_MAX_THREADS 256
static pthread_mutex_t g_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t g_cv = PTHREAD_COND_INITIALIZER;
static pthread_cond_t g_done_cv = PTHREAD_COND_INITIALIZER;
static pthread_mutex_t g_run_mu = PTHREAD_MUTEX_INITIALIZER; // one parallel region at a time
static _Atomic int g_threads = 0;  // configured size (0 = not yet set)
static int g_workers = 0;          // started workers (at most VCK_MAX_THREADS - 1), under g_mu
static uint64_t g_generation = 0;  // under g_mu
static void (*g_fn)(void *, int);
static void *g_ctx;
static int g_ntasks;
static _Atomic int g_next;
static int g_active;               // workers still inside the current generation, under g_mu
static int g_participants;         // workers allowed to take tasks in this generation, under g_mu
static _Thread_local int t_in_region = 0;
static pthread_once_t g_once = PTHREAD_ONCE_INIT;
// The generation current when worker i was created: it joins every later one (a worker that first
// runs after a region has started must still join that region, which counts it in g_active).
static uint64_t g_start_generation[VCK_MAX_THREADS];

int vck_in_parallel_region(void) { return t_in_region; }

static void run_tasks(void (*fn)(void *, int), void *ctx, int ntasks) {
    for (;;) {
        int i = atomic_fetch_add(&g_next, 1);
        if (i >= ntasks) break;
        fn(ctx, i);
    }
}

static void *worker_main(void *arg) {
    int id = (int)(intptr_t)arg;
    t_in_region = 1;
    pthread_mutex_lock(&g_mu);
    uint64_t seen = g_start_generation[id];
    for (;;) {
        while (g_generation == seen) pthread_cond_wait(&g_cv, &g_mu);
        seen = g_generation;
        int take = id < g_participants;
        void (*fn)(void *, int) = g_fn;
        void *ctx = g_ctx;
        int ntasks = g_ntasks;
        pthread_mutex_unlock(&g_mu);
        if (take) run_tasks(fn, ctx, ntasks);
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

// A forked child has none of the parent's workers: forget them (the child starts its own).
static void atfork_prepare(void) { pthread_mutex_lock(&g_run_mu); pthread_mutex_lock(&g_mu); }
static void atfork_parent(void) { pthread_mutex_unlock(&g_mu); pthread_mutex_unlock(&g_run_mu); }
static void atfork_child(void) {
    pthread_cond_init(&g_cv, NULL);
    pthread_cond_init(&g_done_cv, NULL);
    g_workers = 0;
    g_active = 0;
    pthread_mutex_unlock(&g_mu);
    pthread_mutex_unlock(&g_run_mu);
}
static void pool_once(void) {
    pthread_atfork(atfork_prepare, atfork_parent, atfork_child);
    vck_blas_threads(1);
}

void vck_set_threads(int n) {
    pthread_once(&g_once, pool_once);
    if (n < 1) n = online_cpus();
    if (n > VCK_MAX_THREADS) n = VCK_MAX_THREADS;
    // Inside a task the region's owner holds g_run_mu: changing the pool there would deadlock.
    if (t_in_region) return;
    pthread_mutex_lock(&g_run_mu);
    pthread_mutex_lock(&g_mu);
    while (g_workers < n - 1) {
        pthread_t th;
        pthread_attr_t attr;
        g_start_generation[g_workers] = g_generation;
        pthread_attr_init(&attr);
        pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
        int rc = pthread_create(&th, &attr, worker_main, (void *)(intptr_t)g_workers);
        pthread_attr_destroy(&attr);
        if (rc != 0) break; // fewer workers than asked: regions use the ones that exist
        g_workers++;
    }
    atomic_store(&g_threads, n);
    pthread_mutex_unlock(&g_mu);
    pthread_mutex_unlock(&g_run_mu);
}

int vck_get_threads(void) {
    int n = atomic_load(&g_threads);
    if (n == 0) {
        if (t_in_region) return 1;
        vck_set_threads(0);
        n = atomic_load(&g_threads);
    }
    return n;
}

void vck_parallel_for(int ntasks, void (*fn)(void *ctx, int task), void *ctx) {
    if (ntasks <= 0) return;
    int threads = vck_get_threads();
    if (ntasks == 1 || threads <= 1 || t_in_region) {
        for (int i = 0; i < ntasks; i++) fn(ctx, i);
        return;
    }
    pthread_mutex_lock(&g_run_mu);
    pthread_mutex_lock(&g_mu);
    // Workers beyond the configured size stay parked: only `threads - 1` join.
    int helpers = threads - 1 < g_workers ? threads - 1 : g_workers;
    if (helpers > ntasks - 1) helpers = ntasks - 1;
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
    run_tasks(fn, ctx, ntasks);
    t_in_region = 0;
    pthread_mutex_lock(&g_mu);
    while (g_active > 0) pthread_cond_wait(&g_done_cv, &g_mu);
    pthread_mutex_unlock(&g_mu);
    pthread_mutex_unlock(&g_run_mu);
}
