import CVCInterrupts
import Foundation
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Writes outputs so that a reader never sees a half-written file: everything goes to a
/// temporary name in the destination folder, is fsynced, then renamed into place (and the
/// folder fsynced). A frame directory is written as a temporary directory and renamed.
enum AtomicOutput {
    /// A hidden temporary name next to `path`: `dir/.name.tmp-<pid>-<random>`.
    static func temporaryPath(for path: String) -> String {
        let url = URL(fileURLWithPath: path)
        let dir = url.deletingLastPathComponent().path
        let name = url.lastPathComponent
        let tag = String(UInt64.random(in: 0...UInt64.max), radix: 36)
        return (dir as NSString).appendingPathComponent(".\(name).tmp-\(getpid())-\(tag)")
    }

    /// Checks that `path`'s folder exists and that `path` may be (over)written.
    static func prepare(_ path: String, overwrite: Bool, directory: Bool) throws {
        let fm = FileManager.default
        let parent = URL(fileURLWithPath: path).deletingLastPathComponent().path
        var isDir: ObjCBool = false
        guard fm.fileExists(atPath: parent, isDirectory: &isDir), isDir.boolValue else {
            throw VideoError.io(path: path, "the folder \(parent) does not exist")
        }
        if fm.fileExists(atPath: path, isDirectory: &isDir) {
            guard overwrite else { throw VideoError.exists(path: path) }
            if isDir.boolValue != directory {
                throw VideoError.io(path: path, directory ? "exists and is not a directory" : "exists and is a directory")
            }
        }
    }

    /// fsync of a file or directory (errors on directories are ignored: not every file system
    /// supports it).
    static func sync(_ path: String, isDirectory: Bool = false) throws {
        let fd = open(path, isDirectory ? O_RDONLY | O_DIRECTORY : O_RDONLY)
        guard fd >= 0 else {
            if isDirectory { return }
            throw VideoError.io(path: path, "cannot open for fsync (errno \(errno))")
        }
        defer { close(fd) }
        if fsync(fd) != 0 && !isDirectory {
            throw VideoError.io(path: path, "fsync failed (errno \(errno))")
        }
    }

    /// Moves a finished temporary file into place.
    static func commitFile(temporary: String, to path: String, overwrite: Bool) throws {
        try sync(temporary)
        if !overwrite && FileManager.default.fileExists(atPath: path) {
            throw VideoError.exists(path: path)
        }
        guard rename(temporary, path) == 0 else {
            throw VideoError.io(path: path, "cannot rename \(temporary) into place (errno \(errno))")
        }
        try sync(URL(fileURLWithPath: path).deletingLastPathComponent().path, isDirectory: true)
    }

    /// Moves a finished temporary directory into place (replacing an existing one if allowed).
    static func commitDirectory(temporary: String, to path: String, overwrite: Bool) throws {
        let fm = FileManager.default
        try sync(temporary, isDirectory: true)
        var old: String? = nil
        if fm.fileExists(atPath: path) {
            guard overwrite else { throw VideoError.exists(path: path) }
            let trash = temporaryPath(for: path)
            guard rename(path, trash) == 0 else {
                throw VideoError.io(path: path, "cannot move the existing directory aside (errno \(errno))")
            }
            old = trash
        }
        guard rename(temporary, path) == 0 else {
            let code = errno
            if let old { _ = rename(old, path) }
            throw VideoError.io(path: path, "cannot rename \(temporary) into place (errno \(code))")
        }
        if let old { try? fm.removeItem(atPath: old) }
        try sync(URL(fileURLWithPath: path).deletingLastPathComponent().path, isDirectory: true)
    }

    /// Writes `data` to `path` atomically (replacing an existing file).
    static func write(_ data: Data, to path: String) throws {
        try prepare(path, overwrite: true, directory: false)
        let tmp = temporaryPath(for: path)
        let token = vcint_register(tmp, 0)
        defer { vcint_unregister(token) }
        do {
            try data.write(to: URL(fileURLWithPath: tmp))
            try commitFile(temporary: tmp, to: path, overwrite: true)
        } catch {
            try? FileManager.default.removeItem(atPath: tmp)
            if error is VideoError { throw error }
            throw VideoError.io(path: path, "\(error)")
        }
    }

    static func remove(_ path: String) {
        try? FileManager.default.removeItem(atPath: path)
    }
}
