import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// A file written the safe way (docs/architecture.md): to a temporary file in the destination
/// folder, fsynced, then renamed over the destination. If it is not committed, the temporary
/// file is removed.
final class OutputFile {
    let path: String
    let tempPath: String
    private var handle: FileHandle?
    private(set) var bytesWritten = 0

    init(path: String) throws {
        self.path = path
        let url = URL(fileURLWithPath: path)
        let dir = url.deletingLastPathComponent().path
        let name = url.lastPathComponent
        self.tempPath = dir + "/." + name + ".tmp-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        guard FileManager.default.createFile(atPath: tempPath, contents: nil) else {
            throw FormatError.io(path: path, "cannot create the temporary file \(tempPath): \(String(cString: strerror(errno)))")
        }
        guard let h = FileHandle(forWritingAtPath: tempPath) else {
            try? FileManager.default.removeItem(atPath: tempPath)
            throw FormatError.io(path: path, "cannot open the temporary file \(tempPath)")
        }
        self.handle = h
        PendingOutputs.shared.register(tempPath) // removed by vcconv's SIGINT/SIGTERM handler
    }

    func write(_ bytes: [UInt8]) throws {
        guard let handle else { throw FormatError.io(path: path, "write after the file was closed") }
        do { try handle.write(contentsOf: Data(bytes)) } catch {
            throw FormatError.io(path: path, "write failed: \(error.localizedDescription)")
        }
        bytesWritten += bytes.count
    }

    /// fsync, close, rename over `path`, fsync the folder.
    func commit() throws {
        guard let handle else { throw FormatError.io(path: path, "file already closed") }
        do {
            try handle.synchronize()
            try handle.close()
        } catch {
            self.handle = nil
            PendingOutputs.shared.finish(tempPath) { try? FileManager.default.removeItem(atPath: tempPath) }
            throw FormatError.io(path: path, "fsync/close failed: \(error.localizedDescription)")
        }
        self.handle = nil
        let renamed: Int32 = PendingOutputs.shared.finish(tempPath) { rename(tempPath, path) }
        guard renamed == 0 else {
            let m = String(cString: strerror(errno))
            try? FileManager.default.removeItem(atPath: tempPath)
            throw FormatError.io(path: path, "cannot rename \(tempPath) to it: \(m)")
        }
        let dir = URL(fileURLWithPath: path).deletingLastPathComponent().path
        if let d = FileHandle(forReadingAtPath: dir) {
            try? d.synchronize()
            try? d.close()
        }
    }

    /// Closes and removes the temporary file.
    func discard() {
        if let handle {
            try? handle.close()
            self.handle = nil
            PendingOutputs.shared.finish(tempPath) { try? FileManager.default.removeItem(atPath: tempPath) }
        }
    }

    deinit { discard() }
}
