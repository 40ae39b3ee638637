import Foundation
import VCTensor
import VCFormats

/// Progress of a long job, reported through a callback (the CLI draws a bar from it).
public struct JobProgress: Sendable, Equatable {
    /// What is being done: "hashing", "converting", "verifying", "exporting", "statistics".
    public var phase: String
    /// Units done and total (bytes for hashing/converting/exporting, tensors otherwise).
    public var done: Int
    public var total: Int
    /// The current tensor, when there is one.
    public var item: String

    public init(phase: String, done: Int, total: Int, item: String = "") {
        self.phase = phase; self.done = done; self.total = total; self.item = item
    }
}

/// A model file opened for reading, whatever its format.
public struct OpenedModelFile: @unchecked Sendable {
    public enum Format: String, Sendable { case safetensors, ckpt, vcm, diffusers }

    public let path: String
    public let format: Format
    public let source: any TensorSource
    /// The mapping behind the tensors, when there is a single one.
    public let file: MappedFile?
    /// Byte size of the file (0 for a folder).
    public let size: Int
    /// Format-level metadata (safetensors `__metadata__`).
    public let metadata: [String: String]
    private let spans: [String: (Int, Int)]

    /// The shape and dtype of every tensor without reading data (tensor windows are cheap).
    public func header(_ name: String) throws -> (shape: [Int], dtype: DType)? {
        guard let t = try source.tensor(named: name) else { return nil }
        return (t.shape, t.dtype)
    }

    /// Drops the pages of tensor `name` from the resident set after it has been consumed, so a
    /// streaming pass over a 7 GB file keeps a small RSS (the pages stay in the page cache).
    public func release(_ name: String) {
        guard let file, let (b, e) = spans[name] else { return }
        file.dontNeed(offset: b, count: e - b)
    }

    /// Drops every page of the mapping (for formats without per-tensor spans).
    public func releaseAll() {
        guard let file else { return }
        file.dontNeed(offset: 0, count: file.size)
    }

    public var hasTensorSpans: Bool { !spans.isEmpty }

    init(path: String, format: Format, source: any TensorSource, file: MappedFile?, size: Int,
         metadata: [String: String] = [:], spans: [String: (Int, Int)] = [:]) {
        self.path = path; self.format = format; self.source = source; self.file = file; self.size = size
        self.metadata = metadata; self.spans = spans
    }
}

public enum ModelFiles {
    /// Opens a model file, recognising the format by its first bytes (not its name).
    public static func open(_ path: String, verify: Bool = true) throws -> OpenedModelFile {
        var isDir: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDir) else {
            throw FormatError.io(path: path, "no such file")
        }
        if isDir.boolValue {
            throw FormatError.unsupported(path: path, "diffusers folders are not supported by this build yet")
        }
        let probe = try MappedFile(path: path)
        let head = try probe.bytes(offset: 0, count: min(8, probe.size))
        if head == VCMFormat.magic {
            let f = try VCMFile(path: path, verify: verify)
            return OpenedModelFile(path: path, format: .vcm, source: f, file: f.file, size: f.file.size)
        }
        if head.starts(with: [0x50, 0x4B, 0x03, 0x04]) || head.starts(with: [0x80]) {
            throw FormatError.unsupported(path: path, "PyTorch checkpoints (.ckpt) are not supported by this build yet; convert to .safetensors first")
        }
        if probe.size >= 9, let first = try? probe.bytes(offset: 8, count: 1), first == [0x7B] { // '{'
            let f = try SafetensorsFile(path: path)
            var spans: [String: (Int, Int)] = [:]
            for e in f.entries { spans[e.name] = (f.dataOffset + e.begin, f.dataOffset + e.end) }
            return OpenedModelFile(path: path, format: .safetensors, source: f, file: f.file, size: f.file.size,
                                   metadata: f.metadata, spans: spans)
        }
        throw FormatError.unsupported(path: path, "not a .vcm, .safetensors or PyTorch checkpoint file")
    }
}
