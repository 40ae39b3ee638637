import Foundation
import VCTensor

// Format: huggingface/safetensors README ("Format") and the validation of
// `safetensors/src/tensor.rs` (`read_metadata`, `Metadata::validate`) at commit 24b0b2857f;
// the rules are restated in ../shared/research/formats-lora-sdcpp.md §1.4. Own implementation.

/// A memory-mapped .safetensors file (https://github.com/huggingface/safetensors format).
/// Tensor data is never copied (except to realign a tensor whose file offset is not a multiple
/// of its element size): tensors are windows into the mapping.
///
/// Opening validates the file as strictly as the reference implementation:
/// header length (8 bytes, at most 100,000,000, inside the file), UTF-8, JSON syntax (with
/// duplicate keys rejected, which serde_json would collapse), entry structure (`dtype` a known
/// name, `shape` and `data_offsets` non-negative integer literals), offsets contiguous from 0 with
/// no gap or overlap, byte sizes equal to shape x dtype size (overflow-checked), and the data
/// section ending exactly at the end of the file. `__metadata__` must map strings to strings.
/// Every dtype of the format is recognised; reading one the runtime cannot use throws
/// `FormatError.unsupported` naming the tensor and the dtype.
public final class SafetensorsFile: MappedTensorSource, @unchecked Sendable {
    public struct Entry: Sendable, Equatable {
        public var name: String
        /// The dtype string as written in the header.
        public var dtypeName: String
        public var dtype: FileDType
        public var shape: [Int]
        /// Offsets relative to the data section (`dataOffset`), end exclusive.
        public var begin: Int
        public var end: Int
        /// Absolute file offset of the entry's name in the header (for messages).
        public var headerOffset: Int = 0
        public var byteCount: Int { end - begin }
    }

    /// The reference's `MAX_HEADER_SIZE`.
    public static let maxHeaderSize = 100_000_000

    public let path: String
    public let file: MappedFile
    /// Entries in data order (sorted by offsets).
    public let entries: [Entry]
    public let metadata: [String: String]
    /// Absolute file offset of the data section (8 + header length).
    public let dataOffset: Int
    private let index: [String: Int]

    public convenience init(path: String) throws {
        let file: MappedFile
        do { file = try MappedFile(path: path) } catch let e as TensorError {
            if case .io(_, let m) = e { throw FormatError.io(path: path, m) }
            throw FormatError.io(path: path, e.description)
        }
        try self.init(file: file)
    }

    /// Parses a file already mapped (or held in memory: `MappedFile(bytes:path:)`).
    public init(file: MappedFile) throws {
        let path = file.path
        self.path = path
        self.file = file
        func bad(_ offset: Int, _ m: String) -> FormatError { .malformed(path: path, offset: offset, m) }

        guard file.size >= 8 else { throw bad(0, "file is \(file.size) bytes, shorter than the 8-byte header length") }
        let n64 = try file.readLE(offset: 0, width: 8)
        guard n64 <= UInt64(SafetensorsFile.maxHeaderSize) else {
            throw bad(0, "header length \(n64) exceeds the 100,000,000-byte limit")
        }
        let n = Int(n64)
        guard n <= file.size - 8 else {
            throw bad(0, "header length \(n) runs past the end of the file (\(file.size) bytes)")
        }
        let headerBytes = try file.bytes(offset: 8, count: n)
        let json: JSONValue
        do { json = try StrictJSON.parse(headerBytes, baseOffset: 8) } catch {
            throw bad(error.offset, "header: \(error.message)")
        }
        guard case .object(let members) = json else { throw bad(8, "header is \(json.kindName), not a JSON object") }

        var entries: [Entry] = []
        var meta: [String: String] = [:]
        entries.reserveCapacity(members.count)
        for m in members {
            if m.key == "__metadata__" {
                switch m.value {
                case .null: break
                case .object(let kv):
                    for p in kv {
                        guard case .string(let s) = p.value else {
                            throw bad(p.valueOffset, "__metadata__ value of \"\(p.key)\" is \(p.value.kindName), not a string")
                        }
                        meta[p.key] = s
                    }
                default:
                    throw bad(m.valueOffset, "__metadata__ is \(m.value.kindName), not an object of strings")
                }
                continue
            }
            entries.append(try SafetensorsFile.entry(m, bad))
        }

        // Offsets, sorted by (begin, end) as the reference does: contiguous from 0, sizes exact.
        entries.sort { ($0.begin, $0.end) < ($1.begin, $1.end) }
        var position = 0
        var previous: String? = nil
        for e in entries {
            let at = 8 + n + e.begin
            if e.end < e.begin {
                throw bad(e.headerOffset, "tensor '\(e.name)': data_offsets [\(e.begin), \(e.end)] end before they begin")
            }
            if e.begin != position {
                if let previous {
                    let kind = e.begin > position ? "a gap" : "an overlap"
                    throw bad(at, "tensor '\(e.name)': data starts at \(e.begin) but '\(previous)' ends at \(position) (\(kind))")
                }
                throw bad(at, "tensor '\(e.name)': data starts at \(e.begin); the first tensor must start at 0")
            }
            var numel = 1
            for d in e.shape {
                let (p, o) = numel.multipliedReportingOverflow(by: d)
                if o { throw bad(e.headerOffset, "tensor '\(e.name)': shape \(e.shape) overflows") }
                numel = p
            }
            let (bitsTotal, o) = numel.multipliedReportingOverflow(by: e.dtype.bits)
            if o { throw bad(e.headerOffset, "tensor '\(e.name)': shape \(e.shape) of \(e.dtypeName) overflows") }
            guard bitsTotal % 8 == 0 else {
                throw bad(e.headerOffset, "tensor '\(e.name)': \(numel) elements of \(e.dtypeName) do not fill whole bytes")
            }
            guard e.end - e.begin == bitsTotal / 8 else {
                throw bad(at, "tensor '\(e.name)': data_offsets [\(e.begin), \(e.end)] hold \(e.end - e.begin) bytes, but \(e.dtypeName) \(e.shape) needs \(bitsTotal / 8)")
            }
            position = e.end
            previous = e.name
        }
        let dataSize = file.size - 8 - n
        if position != dataSize {
            let what = position < dataSize ? "\(dataSize - position) trailing byte(s) after the last tensor"
                                            : "the data section is truncated (\(position - dataSize) bytes missing)"
            throw bad(8 + n + min(position, dataSize), "tensors end at data offset \(position) but the data section is \(dataSize) bytes: \(what)")
        }

        self.entries = entries
        self.metadata = meta
        self.dataOffset = 8 + n
        var idx: [String: Int] = [:]
        for (i, e) in entries.enumerated() { idx[e.name] = i }
        self.index = idx
    }

    /// Parses one tensor entry of the header.
    private static func entry(_ m: JSONMember, _ bad: (Int, String) -> FormatError) throws -> Entry {
        let name = m.key
        guard case .object = m.value else {
            throw bad(m.valueOffset, "tensor '\(name)': entry is \(m.value.kindName), not an object")
        }
        func field(_ k: String) throws -> JSONValue {
            guard let v = m.value[k] else { throw bad(m.valueOffset, "tensor '\(name)': missing \"\(k)\"") }
            return v
        }
        guard case .string(let dtName) = try field("dtype") else {
            throw bad(m.valueOffset, "tensor '\(name)': dtype is \(try field("dtype").kindName), not a string")
        }
        guard let dt = FileDType(rawValue: dtName), dt.isSafetensorsType else {
            throw bad(m.valueOffset, "tensor '\(name)': unknown dtype \"\(dtName)\"")
        }
        func integers(_ k: String) throws -> [Int] {
            guard case .array(let items) = try field(k) else {
                throw bad(m.valueOffset, "tensor '\(name)': \(k) is \(try field(k).kindName), not an array")
            }
            return try items.enumerated().map { (i, v) in
                guard case .number(let text) = v, text.utf8.allSatisfy({ $0 >= 0x30 && $0 <= 0x39 }) else {
                    throw bad(m.valueOffset, "tensor '\(name)': \(k)[\(i)] is \(v.kindName), not a non-negative integer")
                }
                guard let x = Int(text) else {
                    throw bad(m.valueOffset, "tensor '\(name)': \(k)[\(i)] = \(text) overflows")
                }
                return x
            }
        }
        let shape = try integers("shape")
        let offs = try integers("data_offsets")
        guard offs.count == 2 else {
            throw bad(m.valueOffset, "tensor '\(name)': data_offsets has \(offs.count) numbers, not 2")
        }
        return Entry(name: name, dtypeName: dtName, dtype: dt, shape: shape, begin: offs[0], end: offs[1], headerOffset: m.keyOffset)
    }

    public var tensorNames: [String] { entries.map(\.name) }

    /// The entry of `name`, or nil.
    public func entry(named name: String) -> Entry? { index[name].map { entries[$0] } }

    /// The runtime type of a safetensors dtype string (nil for unknown or unusable types).
    public static func dtype(named s: String) -> DType? { FileDType(rawValue: s)?.runtime }

    /// The stored bytes of a tensor of any dtype, as a window into the mapping.
    public func rawStorage(named name: String) throws -> Storage? {
        guard let e = entry(named: name) else { return nil }
        return try file.storage(offset: dataOffset + e.begin, count: e.byteCount)
    }

    /// The values of an F64 or F32 tensor as doubles (for reference data such as the fp64
    /// goldens, which the runtime cannot use as tensors). nil if the tensor does not exist.
    public func doubles(named name: String) throws -> [Double]? {
        guard let e = entry(named: name), let st = try rawStorage(named: name) else { return nil }
        let b = try st.bytes(0..<e.byteCount)
        switch e.dtype {
        case .f64:
            return stride(from: 0, to: b.count, by: 8).map { i in
                var v: UInt64 = 0
                for k in 0..<8 { v |= UInt64(b[i + k]) << (8 * UInt64(k)) }
                return Double(bitPattern: v)
            }
        case .f32:
            return stride(from: 0, to: b.count, by: 4).map { i in
                Double(Float(bitPattern: UInt32(b[i]) | UInt32(b[i + 1]) << 8 | UInt32(b[i + 2]) << 16 | UInt32(b[i + 3]) << 24))
            }
        default:
            throw FormatError.unsupported(path: path, "tensor '\(name)' is \(e.dtypeName); doubles(named:) reads F64 and F32")
        }
    }

    public func releasePages(named name: String) {
        guard let e = entry(named: name) else { return }
        file.dontNeed(offset: dataOffset + e.begin, count: e.byteCount)
    }

    public func tensor(named name: String) throws -> Tensor? {
        guard let e = entry(named: name) else { return nil }
        guard let dt = e.dtype.runtime else {
            throw FormatError.unsupported(path: path, "tensor '\(name)' has dtype \(e.dtypeName), which the runtime cannot use (usable: \(FileDType.usableList))")
        }
        let at = dataOffset + e.begin
        let st = try file.storage(offset: at, count: e.byteCount)
        if at % e.dtype.alignment != 0 {
            // The format does not require alignment: realign into owned memory.
            return try Tensor(shape: e.shape, dtype: dt, bytes: st.bytes(0..<e.byteCount))
        }
        return try Tensor(shape: e.shape, dtype: dt, storage: st)
    }
}
