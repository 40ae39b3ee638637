// Removal of registered temporary outputs on SIGINT/SIGTERM/SIGHUP and on the signals of a crash
// (see include/CVCInterrupts.h).
#define _GNU_SOURCE
#include "CVCInterrupts.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

enum { FREE = 0, WRITING = 1, ACTIVE = 2, CLAIMED = 3 };

typedef struct {
    _Atomic int state;
    int is_directory;
    char path[VCINT_PATH_MAX];
} slot_t;

static slot_t slots[VCINT_SLOTS];
static _Atomic int installed = 0;
static const int handled[] = {SIGINT, SIGTERM, SIGHUP};
// A crash: abort() (an allocation failure in the kernels), a Swift runtime trap (SIGILL /
// SIGTRAP), a fault. The previous action (e.g. the Swift runtime's backtracer) is kept and runs
// after the cleanup.
static const int crashes[] = {SIGABRT, SIGILL, SIGTRAP, SIGSEGV, SIGBUS, SIGFPE};
static struct sigaction previous[sizeof crashes / sizeof crashes[0]];

/// Removes the files of a flat directory and the directory (async-signal-safe: raw getdents64).
static int remove_directory(const char *path) {
    int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) return rmdir(path);
    char buf[4096] __attribute__((aligned(8)));
    for (;;) {
        long n = syscall(SYS_getdents64, fd, buf, sizeof buf);
        if (n <= 0) break;
        long at = 0;
        while (at < n) {
            // struct linux_dirent64: u64 ino, s64 off, u16 reclen, u8 type, char name[]
            unsigned short reclen;
            memcpy(&reclen, buf + at + 16, sizeof reclen);
            const char *name = buf + at + 19;
            if (reclen == 0) break;
            if (!(name[0] == '.' && (name[1] == 0 || (name[1] == '.' && name[2] == 0)))) {
                (void)unlinkat(fd, name, 0);
            }
            at += reclen;
        }
    }
    close(fd);
    return rmdir(path);
}

static void cleanup(void) {
    for (int i = 0; i < VCINT_SLOTS; i++) {
        int expected = ACTIVE;
        // Claim the slot so that no thread can reuse (and rewrite) its path while we read it.
        if (!atomic_compare_exchange_strong(&slots[i].state, &expected, CLAIMED)) continue;
        if (slots[i].is_directory) (void)remove_directory(slots[i].path);
        else (void)unlink(slots[i].path);
        // The slot stays CLAIMED: the process is about to die, and a late vcint_unregister from
        // another thread must not free a slot that a new registration could then take.
    }
}

static void handler(int sig) {
    int saved = errno;
    cleanup();
    struct sigaction dfl;
    memset(&dfl, 0, sizeof dfl);
    dfl.sa_handler = SIG_DFL;
    sigemptyset(&dfl.sa_mask);
    sigaction(sig, &dfl, NULL);
    errno = saved;
    // Die of the same signal (it is blocked while the handler runs and delivered on return).
    raise(sig);
}

static void crash_handler(int sig, siginfo_t *info, void *context) {
    (void)context;
    int saved = errno;
    cleanup();
    for (size_t i = 0; i < sizeof crashes / sizeof crashes[0]; i++)
        if (crashes[i] == sig) sigaction(sig, &previous[i], NULL);
    errno = saved;
    // A signal sent by a process (abort, raise, kill) is sent again, to the previous action; a
    // fault returns to the faulting instruction, which faults again into the previous action
    // with its own context (what a backtracer needs).
    if (info == NULL || info->si_code <= 0) raise(sig);
}

int vcint_install(void) {
    int expected = 0;
    if (!atomic_compare_exchange_strong(&installed, &expected, 1)) return 0;
    for (size_t i = 0; i < sizeof handled / sizeof handled[0]; i++) {
        struct sigaction old;
        if (sigaction(handled[i], NULL, &old) != 0) return -1;
        if (old.sa_handler == SIG_IGN) continue; // e.g. SIGINT of a background job
        struct sigaction sa;
        memset(&sa, 0, sizeof sa);
        sa.sa_handler = handler;
        sigemptyset(&sa.sa_mask);
        for (size_t k = 0; k < sizeof handled / sizeof handled[0]; k++) sigaddset(&sa.sa_mask, handled[k]);
        sa.sa_flags = SA_RESTART;
        if (sigaction(handled[i], &sa, NULL) != 0) return -1;
    }
    for (size_t i = 0; i < sizeof crashes / sizeof crashes[0]; i++) {
        if (sigaction(crashes[i], NULL, &previous[i]) != 0) return -1;
        if (previous[i].sa_handler == SIG_IGN) continue;
        struct sigaction sa;
        memset(&sa, 0, sizeof sa);
        sa.sa_sigaction = crash_handler;
        sigemptyset(&sa.sa_mask);
        sa.sa_flags = SA_SIGINFO | (previous[i].sa_flags & SA_ONSTACK);
        if (sigaction(crashes[i], &sa, NULL) != 0) return -1;
    }
    // A process inherits its parent's signal mask (posix_spawn from a thread that blocks
    // everything, as dispatch worker threads do, passes that on): unblock the handled signals in
    // this thread so that they can be delivered at all.
    sigset_t set;
    sigemptyset(&set);
    for (size_t i = 0; i < sizeof handled / sizeof handled[0]; i++) sigaddset(&set, handled[i]);
    if (pthread_sigmask(SIG_UNBLOCK, &set, NULL) != 0) return -1;
    return 0;
}

int vcint_register(const char *path, int is_directory) {
    size_t n = strlen(path);
    char cwd[VCINT_PATH_MAX];
    size_t prefix = 0;
    if (path[0] != '/') {
        if (getcwd(cwd, sizeof cwd) == NULL) return -1;
        prefix = strlen(cwd) + 1;
    }
    if (prefix + n + 1 > VCINT_PATH_MAX) return -1;
    for (int i = 0; i < VCINT_SLOTS; i++) {
        int expected = FREE;
        if (!atomic_compare_exchange_strong(&slots[i].state, &expected, WRITING)) continue;
        if (prefix) {
            memcpy(slots[i].path, cwd, prefix - 1);
            slots[i].path[prefix - 1] = '/';
        }
        memcpy(slots[i].path + prefix, path, n + 1);
        slots[i].is_directory = is_directory;
        atomic_store(&slots[i].state, ACTIVE);
        return i;
    }
    return -1;
}

void vcint_unregister(int token) {
    if (token < 0 || token >= VCINT_SLOTS) return;
    int expected = ACTIVE;
    // If a handler has claimed the slot, it owns it now (and the process is going down).
    (void)atomic_compare_exchange_strong(&slots[token].state, &expected, FREE);
}
