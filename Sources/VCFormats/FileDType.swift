import VCTensor

/// Element types as files name them. Every dtype of the safetensors format (the Rust `Dtype` enum
/// of huggingface/safetensors, plus `C128` which only PyTorch checkpoints can hold) is recognised;
/// `runtime` says which of them the runtime can compute with. Reading a tensor of another type
/// fails with a clear error instead of failing to parse the file.
public enum FileDType: String, Sendable, CaseIterable {
    // safetensors names (the raw values are the strings in the header)
    case bool = "BOOL"
    case f4 = "F4"
    case f6e2m3 = "F6_E2M3"
    case f6e3m2 = "F6_E3M2"
    case u8 = "U8"
    case i8 = "I8"
    case f8e5m2 = "F8_E5M2"
    case f8e4m3 = "F8_E4M3"
    case f8e8m0 = "F8_E8M0"
    case f8e4m3fnuz = "F8_E4M3FNUZ"
    case f8e5m2fnuz = "F8_E5M2FNUZ"
    case i16 = "I16"
    case u16 = "U16"
    case f16 = "F16"
    case bf16 = "BF16"
    case i32 = "I32"
    case u32 = "U32"
    case f32 = "F32"
    case c64 = "C64"
    case f64 = "F64"
    case i64 = "I64"
    case u64 = "U64"
    /// complex128: PyTorch `ComplexDoubleStorage` only; safetensors has no name for it.
    case c128 = "C128"

    /// Size of one element in bits.
    public var bits: Int {
        switch self {
        case .f4: return 4
        case .f6e2m3, .f6e3m2: return 6
        case .bool, .u8, .i8, .f8e5m2, .f8e4m3, .f8e8m0, .f8e4m3fnuz, .f8e5m2fnuz: return 8
        case .i16, .u16, .f16, .bf16: return 16
        case .i32, .u32, .f32: return 32
        case .c64, .f64, .i64, .u64: return 64
        case .c128: return 128
        }
    }

    /// Whether safetensors files may use this name.
    public var isSafetensorsType: Bool { self != .c128 }

    /// The runtime type with the same bytes, or nil if the runtime cannot use this type.
    public var runtime: DType? {
        switch self {
        case .f32: return .f32
        case .f16: return .f16
        case .bf16: return .bf16
        case .i32: return .i32
        case .i64: return .i64
        case .u8: return .u8
        default: return nil
        }
    }

    /// The file type of a runtime type (nil for q8_0, which only .vcm files hold).
    public init?(_ d: DType) {
        switch d {
        case .f32: self = .f32
        case .f16: self = .f16
        case .bf16: self = .bf16
        case .i32: self = .i32
        case .i64: self = .i64
        case .u8: self = .u8
        case .q8_0: return nil
        }
    }

    /// The element type of a PyTorch storage class (`torch.FloatStorage` etc.; the name without
    /// the module), or nil for anything else.
    public init?(torchStorage name: String) {
        switch name {
        case "FloatStorage": self = .f32
        case "HalfStorage": self = .f16
        case "BFloat16Storage": self = .bf16
        case "DoubleStorage": self = .f64
        case "LongStorage": self = .i64
        case "IntStorage": self = .i32
        case "ShortStorage": self = .i16
        case "CharStorage": self = .i8
        case "ByteStorage": self = .u8
        case "BoolStorage": self = .bool
        case "ComplexFloatStorage": self = .c64
        case "ComplexDoubleStorage": self = .c128
        case "Float8_e5m2Storage": self = .f8e5m2
        case "Float8_e4m3fnStorage": self = .f8e4m3
        case "Float8_e5m2fnuzStorage": self = .f8e5m2fnuz
        case "Float8_e4m3fnuzStorage": self = .f8e4m3fnuz
        case "UInt16Storage": self = .u16
        case "UInt32Storage": self = .u32
        case "UInt64Storage": self = .u64
        default: return nil
        }
    }

    /// Bytes of `elements` values (nil on overflow or when the bits do not fill whole bytes).
    public func byteCount(elements: Int) -> Int? {
        guard elements >= 0 else { return nil }
        let (b, o) = elements.multipliedReportingOverflow(by: bits)
        guard !o, b % 8 == 0 else { return nil }
        return b / 8
    }

    /// Bytes per element for whole-byte types (alignment unit), 1 for sub-byte types.
    public var alignment: Int { max(1, bits / 8) }

    /// The usable runtime types, listed for error messages.
    static let usableList = "F32, F16, BF16, I32, I64, U8"
}
