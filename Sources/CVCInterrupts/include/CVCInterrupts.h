#ifndef CVCINTERRUPTS_H
#define CVCINTERRUPTS_H

/// Removal of temporary outputs when the process is interrupted (SIGINT, SIGTERM, SIGHUP) or
/// crashes (SIGABRT, SIGILL, SIGTRAP, SIGSEGV, SIGBUS, SIGFPE: an allocation failure, a runtime
/// trap, a fault).
///
/// Writers register each temporary file or directory they create and unregister it once it is
/// renamed into place or removed. `vcint_install` installs handlers (sigaction) that remove every
/// registered path, using async-signal-safe calls only (unlink; for a directory, getdents64 +
/// unlinkat of its files, then rmdir), restore the default action and re-raise the signal, so
/// the process still dies of it (exit status 128 + signal in a shell). For the crash signals the
/// action found at install time (SIG_DFL, or e.g. the Swift runtime's backtracer) is put back
/// and runs after the cleanup: a signal sent by a process is raised again, a fault re-executes
/// its instruction. A signal that was ignored when `vcint_install` ran (e.g. SIGINT of a
/// background job) stays ignored.
///
/// The registry is a fixed table of slots claimed with atomic compare-and-swap: registering and
/// unregistering never allocate or lock, and a handler never reads a path that is being written.

/// Number of paths that can be registered at once.
#define VCINT_SLOTS 256
/// Longest registered path, including the terminating NUL.
#define VCINT_PATH_MAX 4096

/// Installs the handlers (idempotent, thread-safe) and unblocks SIGINT/SIGTERM/SIGHUP in the
/// calling thread (a child inherits its parent's signal mask; call this from the main thread).
/// Returns 0, or -1 if sigaction failed.
int vcint_install(void);

/// Registers `path` (absolute, or relative to the working directory at registration time;
/// relative paths are resolved with getcwd). `is_directory` selects directory removal. Returns a
/// slot token >= 0, or -1 if the table is full or the path too long (the path is then simply not
/// cleaned up on a signal).
int vcint_register(const char *path, int is_directory);

/// Unregisters a token from `vcint_register` (a negative token is ignored).
void vcint_unregister(int token);

#endif
