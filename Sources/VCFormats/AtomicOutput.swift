import Foundation
import VCTensor
#if canImport(Glibc)
import Glibc
#endif

/// Output files are written to a temporary file in the destination folder, fsynced, then renamed
/// over the destination (docs/architecture.md). Until `commit()` the destination is untouched; on
/// an error, `abort()`, deinit, or `PendingOutputs.removeAll()` (called by the CLI's signal
/// handlers) the temporary file is removed, so a failed or interrupted write leaves nothing behind.
public final class AtomicOutput {
    public let path: String
    public let temporaryPath: String
    private var fd: Int32
    private var done = false
    /// Bytes written so far (the next sequential write goes here).
    public private(set) var position = 0

    /// Creates the temporary file. Refuses an existing destination unless `overwrite`, refuses a
    /// destination that is a directory, and refuses (always) a destination that is the same file
    /// as any of `protecting` (the inputs of the job).
    public init(path: String, overwrite: Bool, protecting inputs: [String] = []) throws {
        self.path = path
        var st = stat()
        if lstat(path, &st) == 0 {
            if (st.st_mode & S_IFMT) == S_IFDIR { throw FormatError.io(path: path, "is a directory") }
            for input in inputs where FileIdentity.same(path, input) {
                throw FormatError.io(path: path, "is the input file \(input); refusing to overwrite an input")
            }
            if !overwrite { throw FormatError.io(path: path, "already exists (use --force to replace it)") }
        }
        let url = URL(fileURLWithPath: path)
        let dir = url.deletingLastPathComponent().path
        let template = dir + "/." + url.lastPathComponent + ".tmp-XXXXXX"
        var buf = Array(template.utf8CString)
        let fd = mkstemp(&buf)
        guard fd >= 0 else {
            throw FormatError.io(path: path, "cannot create a temporary file in \(dir): \(String(cString: strerror(errno)))")
        }
        self.fd = fd
        self.temporaryPath = String(decoding: buf.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
        _ = fchmod(fd, 0o644)
        PendingOutputs.shared.register(temporaryPath)
    }

    deinit { abort() }

    /// Appends `bytes` at `position`.
    public func write(_ bytes: [UInt8]) throws {
        try write(bytes, at: position)
        position += bytes.count
    }

    /// Appends `count` zero bytes.
    public func writeZeros(_ count: Int) throws {
        guard count > 0 else { return }
        try write([UInt8](repeating: 0, count: count))
    }

    /// Writes `bytes` at absolute `offset` (does not move `position`).
    public func write(_ bytes: [UInt8], at offset: Int) throws {
        guard !done else { throw FormatError.io(path: path, "write after the file was closed") }
        var written = 0
        while written < bytes.count {
            // Arrays bridge to `const void *` directly; the rest of a short write is copied (rare).
            let n = written == 0 ? pwrite(fd, bytes, bytes.count, off_t(offset))
                : { let rest = Array(bytes[written...]); return pwrite(fd, rest, rest.count, off_t(offset + written)) }()
            if n < 0 {
                if errno == EINTR { continue }
                throw FormatError.io(path: path, "write of \(bytes.count) bytes at byte \(offset) failed: \(String(cString: strerror(errno)))")
            }
            written += n
        }
    }

    /// fsync, rename over the destination, fsync the folder.
    public func commit() throws {
        guard !done else { throw FormatError.io(path: path, "already closed") }
        guard fsync(fd) == 0 else {
            let e = String(cString: strerror(errno))
            abort()
            throw FormatError.io(path: path, "fsync failed: \(e)")
        }
        close(fd)
        fd = -1
        // Holding the registry lock across the rename keeps a signal-time cleanup from racing it.
        let renamed: Int32 = PendingOutputs.shared.finish(temporaryPath) { rename(temporaryPath, path) }
        done = true
        guard renamed == 0 else {
            let e = String(cString: strerror(errno))
            unlink(temporaryPath)
            throw FormatError.io(path: path, "cannot rename \(temporaryPath) into place: \(e)")
        }
        let dir = URL(fileURLWithPath: path).deletingLastPathComponent().path
        let dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        if dfd >= 0 { _ = fsync(dfd); close(dfd) }
    }

    /// Removes the temporary file (no-op after commit).
    public func abort() {
        guard !done else { return }
        done = true
        if fd >= 0 { close(fd); fd = -1 }
        _ = PendingOutputs.shared.finish(temporaryPath) { unlink(temporaryPath) }
    }
}

/// Temporary files being written, so that a signal handler can remove them (the CLI installs
/// SIGINT/SIGTERM handlers that call `removeAll()` and exit).
public final class PendingOutputs: @unchecked Sendable {
    public static let shared = PendingOutputs()
    private let lock = NSLock()
    private var paths = Set<String>()

    func register(_ path: String) {
        lock.lock(); defer { lock.unlock() }
        paths.insert(path)
    }

    /// Runs `action` (rename or unlink) and forgets `path`, atomically with respect to removeAll.
    func finish<T>(_ path: String, _ action: () -> T) -> T {
        lock.lock(); defer { lock.unlock() }
        let r = action()
        paths.remove(path)
        return r
    }

    /// Deletes every temporary file still being written. Returns how many were removed.
    @discardableResult
    public func removeAll() -> Int { removeAll { _ in true } }

    /// Deletes the temporary files whose path satisfies `predicate` (tests use a folder prefix).
    @discardableResult
    public func removeAll(where predicate: (String) -> Bool) -> Int {
        lock.lock(); defer { lock.unlock() }
        let doomed = paths.filter(predicate)
        for p in doomed { unlink(p); paths.remove(p) }
        return doomed.count
    }

    /// The temporary files currently open (tests).
    public var current: [String] {
        lock.lock(); defer { lock.unlock() }
        return paths.sorted()
    }
}

/// File identity by device and inode (so that `a.vcm` and `./x/../a.vcm` or a hard link compare
/// equal).
public enum FileIdentity {
    public static func same(_ a: String, _ b: String) -> Bool {
        var sa = stat(), sb = stat()
        guard stat(a, &sa) == 0, stat(b, &sb) == 0 else { return false }
        return sa.st_dev == sb.st_dev && sa.st_ino == sb.st_ino
    }
}
