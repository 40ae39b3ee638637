import Foundation
import VCTensor
#if canImport(Glibc)
import Glibc
#endif

/// A file written the safe way (docs/architecture.md): to a temporary file in the destination
/// folder, fsynced, then renamed over the destination. If it is not committed, the temporary
/// file is removed. The temporary file is registered with `Interrupts`, so an interrupted CLI
/// (SIGINT/SIGTERM) removes it too.
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
        // O_EXCL: never write into a file that someone else created under our temporary name.
        let fd = open(tempPath, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o644)
        guard fd >= 0 else {
            throw FormatError.io(path: path, "cannot create the temporary file \(tempPath): \(String(cString: strerror(errno)))")
        }
        self.handle = FileHandle(fileDescriptor: fd, closeOnDealloc: true)
        PendingOutputs.shared.register(tempPath) // removed on SIGINT/SIGTERM (Interrupts)
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
