import CVCInterrupts

/// Cleanup of temporary outputs when the process is interrupted (SIGINT, SIGTERM, SIGHUP) or
/// crashes (SIGABRT on an allocation failure in the kernels, a runtime trap, a fault: the action
/// found at install time, e.g. the Swift runtime's backtracer, still runs afterwards).
///
/// Every writer that creates a temporary file (`.name.tmp-<pid>-<random>` next to its output,
/// docs/architecture.md "Outputs are written to a temporary file ...") registers it here and
/// unregisters it once it is renamed into place or removed. A CLI calls `install()` once at
/// start; from then on an interrupt removes every registered temporary file or directory (in the
/// signal handler, with async-signal-safe calls only: Sources/CVCInterrupts) and the process
/// still dies of the signal. Without `install()` registering is harmless and signals keep their
/// default action (the temporaries would then be left behind). `install()` also unblocks the
/// three signals in the calling thread (a child inherits its parent's signal mask).
///
///     try Interrupts.install()                    // in main, before any output is written
///     let token = Interrupts.register(tmp)        // after creating tmp
///     ... write, fsync, rename(tmp, path) ...
///     Interrupts.unregister(token)
public enum Interrupts {
    public struct InstallError: Error, CustomStringConvertible {
        public var description: String { "cannot install the signal handlers that remove temporary outputs (sigaction failed)" }
    }

    /// Installs the handlers (idempotent).
    public static func install() throws {
        guard vcint_install() == 0 else { throw InstallError() }
    }

    /// A registered temporary path; `-1` when the registry was full (the path is then not removed
    /// on an interrupt, everything else works).
    public struct Token: Sendable, Equatable {
        public let raw: Int32
    }

    /// Registers a temporary file (or, with `directory`, a flat temporary directory).
    public static func register(_ path: String, directory: Bool = false) -> Token {
        Token(raw: vcint_register(path, directory ? 1 : 0))
    }

    /// Unregisters a token (after the rename or the removal of its path).
    public static func unregister(_ token: Token) {
        vcint_unregister(token.raw)
    }

}
