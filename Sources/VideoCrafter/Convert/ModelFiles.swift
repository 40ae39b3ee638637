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
    public let source: any MappedTensorSource
    /// The single mapping behind the tensors (nil for a folder).
    public let file: MappedFile?
    /// Byte size of the file (sum of the weight files for a folder).
    public let size: Int
    /// Format-level metadata (safetensors `__metadata__`).
    public let metadata: [String: String]

    /// The shape and dtype of a tensor without reading its data (tensors are mapping windows).
    public func header(_ name: String) throws -> (shape: [Int], dtype: DType)? {
        guard let t = try source.tensor(named: name) else { return nil }
        return (t.shape, t.dtype)
    }

    /// Drops the pages of tensor `name` from the resident set after it has been consumed, so a
    /// streaming pass over a 7 GB file keeps a small RSS (the pages stay in the page cache).
    public func release(_ name: String) { source.releasePages(named: name) }
}

public enum ModelFiles {
    /// Opens a .vcm, .safetensors, PyTorch zip checkpoint or diffusers folder, recognised by
    /// content (not by name).
    public static func open(_ path: String, verify: Bool = true) throws -> OpenedModelFile {
        var isDir: ObjCBool = false
        if FileManager.default.fileExists(atPath: path, isDirectory: &isDir), !isDir.boolValue {
            let probe = try MappedFile(path: path)
            if try probe.bytes(offset: 0, count: min(8, probe.size)) == VCMFormat.magic {
                let f = try VCMFile(path: path, verify: verify)
                return OpenedModelFile(path: path, format: .vcm, source: f, file: f.file, size: f.file.size, metadata: [:])
            }
        }
        switch try TensorFiles.kind(of: path) {
        case .safetensors:
            let f = try SafetensorsFile(path: path)
            return OpenedModelFile(path: path, format: .safetensors, source: f, file: f.file, size: f.file.size, metadata: f.metadata)
        case .torchZip:
            let f = try TorchCheckpoint(path: path)
            return OpenedModelFile(path: path, format: .ckpt, source: f, file: f.archive.file, size: f.archive.file.size, metadata: [:])
        case .diffusersFolder:
            let f = try DiffusersFolder(path: path)
            var size = 0
            for c in f.components {
                size += (try? FileManager.default.attributesOfItem(atPath: c.weightsPath)[.size] as? Int) ?? 0
            }
            return OpenedModelFile(path: path, format: .diffusers, source: f, file: nil, size: size, metadata: [:])
        }
    }
}
