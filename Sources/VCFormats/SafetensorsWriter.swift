import VCTensor

/// Writes a .safetensors file (https://github.com/huggingface/safetensors, format description in
/// its README) as a stream: the tensor list is declared up front (so the JSON header with every
/// offset can be written first), then tensors are written one at a time in that order. The header
/// is padded with spaces to a multiple of 8 bytes and the data section has no gaps, as the
/// reference validator requires. Atomic like every output (temporary file, fsync, rename).
public final class SafetensorsWriter {
    public struct Declaration: Sendable, Equatable {
        public var name: String
        public var dtype: DType
        public var shape: [Int]
        public init(name: String, dtype: DType, shape: [Int]) { self.name = name; self.dtype = dtype; self.shape = shape }
    }

    public let path: String
    private let out: AtomicOutput
    private let declarations: [Declaration]
    private var next = 0
    private var finished = false

    public init(path: String, tensors: [Declaration], metadata: [String: String] = [:],
                overwrite: Bool = false, protecting inputs: [String] = []) throws {
        self.path = path
        var seen = Set<String>()
        var entries: [String] = []
        var offset = 0
        for d in tensors {
            guard let code = SafetensorsWriter.code(d.dtype) else {
                throw FormatError.unsupported(path: path, "tensor '\(d.name)': \(d.dtype.rawValue) has no safetensors dtype (dequantize first)")
            }
            guard d.name != "__metadata__", seen.insert(d.name).inserted else {
                throw FormatError.unsupported(path: path, "tensor name '\(d.name)' is reserved or repeated")
            }
            guard let n = d.dtype.byteCount(shape: d.shape) else { throw FormatError.unsupported(path: path, "tensor '\(d.name)': shape overflows") }
            entries.append("\(jsonString(d.name)):{\"dtype\":\"\(code)\",\"shape\":[\(d.shape.map(String.init).joined(separator: ","))],\"data_offsets\":[\(offset),\(offset + n)]}")
            offset += n
        }
        var head = "{"
        if !metadata.isEmpty {
            let m = metadata.keys.sorted().map { "\(jsonString($0)):\(jsonString(metadata[$0] ?? ""))" }.joined(separator: ",")
            head += "\"__metadata__\":{\(m)}" + (entries.isEmpty ? "" : ",")
        }
        head += entries.joined(separator: ",") + "}"
        var headBytes = Array(head.utf8)
        while headBytes.count % 8 != 0 { headBytes.append(0x20) }
        self.declarations = tensors
        self.out = try AtomicOutput(path: path, overwrite: overwrite, protecting: inputs)
        var prefix: [UInt8] = []
        prefix.appendLE(UInt64(headBytes.count), 8)
        try out.write(prefix + headBytes)
    }

    /// Writes the next declared tensor (same name, dtype and shape as declared).
    public func write(_ name: String, _ tensor: Tensor) throws {
        guard !finished, next < declarations.count else { throw FormatError.io(path: path, "more tensors than declared") }
        let d = declarations[next]
        guard d.name == name, d.dtype == tensor.dtype, d.shape == tensor.shape else {
            throw FormatError.unsupported(path: path, "tensor '\(name)' \(tensor.dtype.rawValue) \(tensor.shape) written where '\(d.name)' \(d.dtype.rawValue) \(d.shape) was declared")
        }
        try out.write(tensor.bytes())
        next += 1
    }

    public func finish() throws {
        guard !finished else { throw FormatError.io(path: path, "finish called twice") }
        finished = true
        guard next == declarations.count else {
            out.abort()
            throw FormatError.io(path: path, "\(declarations.count - next) declared tensors were not written")
        }
        do { try out.commit() } catch { out.abort(); throw error }
    }

    public func cancel() {
        finished = true
        out.abort()
    }

    static func code(_ t: DType) -> String? {
        switch t {
        case .f32: return "F32"
        case .f16: return "F16"
        case .bf16: return "BF16"
        case .i32: return "I32"
        case .i64: return "I64"
        case .u8: return "U8"
        case .q8_0: return nil
        }
    }
}

/// A JSON string literal (RFC 8259 escaping).
func jsonString(_ s: String) -> String {
    var out = "\""
    for u in s.unicodeScalars {
        switch u {
        case "\"": out += "\\\""
        case "\\": out += "\\\\"
        case "\n": out += "\\n"
        case "\r": out += "\\r"
        case "\t": out += "\\t"
        default:
            if u.value < 0x20 {
                let h = String(u.value, radix: 16)
                out += "\\u" + String(repeating: "0", count: 4 - h.count) + h
            } else {
                out.unicodeScalars.append(u)
            }
        }
    }
    return out + "\""
}
