import Foundation
import VCTensor

/// A memory-mapped .safetensors file (https://github.com/huggingface/safetensors format).
/// Tensor data is never copied: tensors are windows into the mapping.
///
/// NOTE: this first version checks the essentials (header bounds, offsets inside the data
/// section); the full rule set of the reference validator is tracked in the import issue.
public final class SafetensorsFile: TensorSource, @unchecked Sendable {
    public struct Entry: Sendable, Equatable {
        public var name: String
        public var dtypeName: String
        public var shape: [Int]
        public var begin: Int
        public var end: Int
    }

    public let path: String
    public let file: MappedFile
    public let entries: [Entry]
    public let metadata: [String: String]
    public let dataOffset: Int
    private let index: [String: Int]

    public init(path: String) throws {
        self.path = path
        let file = try MappedFile(path: path)
        self.file = file
        guard file.size >= 8 else { throw FormatError.malformed(path: path, offset: 0, "file is \(file.size) bytes, shorter than the 8-byte header length") }
        let n = try file.readLE(offset: 0, width: 8)
        guard n <= 100_000_000, Int(n) <= file.size - 8 else {
            throw FormatError.malformed(path: path, offset: 0, "header length \(n) exceeds the file or the 100 MB limit")
        }
        let headerBytes = try file.bytes(offset: 8, count: Int(n))
        guard let json = try? JSONSerialization.jsonObject(with: Data(headerBytes)), let dict = json as? [String: Any] else {
            throw FormatError.malformed(path: path, offset: 8, "header is not a JSON object")
        }
        var entries: [Entry] = []
        var meta: [String: String] = [:]
        for (key, value) in dict {
            if key == "__metadata__" {
                if let m = value as? [String: String] { meta = m }
                continue
            }
            guard let info = value as? [String: Any], let dt = info["dtype"] as? String,
                  let shape = info["shape"] as? [Int], let offs = info["data_offsets"] as? [Int], offs.count == 2 else {
                throw FormatError.malformed(path: path, offset: 8, "tensor '\(key)': bad header entry")
            }
            entries.append(Entry(name: key, dtypeName: dt, shape: shape, begin: offs[0], end: offs[1]))
        }
        entries.sort { $0.begin < $1.begin }
        self.entries = entries
        self.metadata = meta
        self.dataOffset = 8 + Int(n)
        var idx: [String: Int] = [:]
        for (i, e) in entries.enumerated() { idx[e.name] = i }
        self.index = idx
        for e in entries {
            guard e.begin >= 0, e.end >= e.begin, e.end <= file.size - dataOffset else {
                throw FormatError.malformed(path: path, offset: dataOffset + e.begin, "tensor '\(e.name)': data [\(e.begin), \(e.end)) outside the file")
            }
        }
    }

    public var tensorNames: [String] { entries.map(\.name) }

    public static func dtype(named s: String) -> DType? {
        switch s {
        case "F32": return .f32
        case "F16": return .f16
        case "BF16": return .bf16
        case "I32": return .i32
        case "I64": return .i64
        case "U8": return .u8
        default: return nil
        }
    }

    public func tensor(named name: String) throws -> Tensor? {
        guard let i = index[name] else { return nil }
        let e = entries[i]
        guard let dt = SafetensorsFile.dtype(named: e.dtypeName) else {
            throw FormatError.unsupported(path: path, "tensor '\(name)' has dtype \(e.dtypeName), which the runtime cannot use")
        }
        guard dt.byteCount(shape: e.shape) == e.end - e.begin else {
            throw FormatError.malformed(path: path, offset: dataOffset + e.begin, "tensor '\(name)': \(e.end - e.begin) bytes for \(e.dtypeName) \(e.shape)")
        }
        let st = try file.storage(offset: dataOffset + e.begin, count: e.end - e.begin)
        return try Tensor(shape: e.shape, dtype: dt, storage: st)
    }
}
