import VCTensor

/// How a tensor's bytes are stored in a .vcm file.
public enum VCMCompression: String, Sendable, Codable, CaseIterable {
    /// The stored bytes are the tensor bytes; the tensor is a zero-copy window of the mapping.
    case none
    /// One zstd frame with the content size set; the tensor is decompressed into owned memory.
    case zstd
}

/// One tensor record of the manifest (formats/vcm.md, "Tensor records").
public struct VCMTensorRecord: Sendable, Equatable {
    /// Canonical name (official LDM/VideoCrafter state-dict key).
    public var name: String
    public var dtype: DType
    /// PyTorch order; empty for a scalar.
    public var shape: [Int]
    /// Byte offset of the stored bytes from the start of the data section.
    public var offset: Int
    /// Decoded byte size (`dtype.byteCount(shape:)`).
    public var size: Int
    public var compression: VCMCompression
    /// Bytes occupied in the file (equals `size` when uncompressed).
    public var storedSize: Int
    /// CRC-32C of the decoded bytes.
    public var crc32c: UInt32

    public init(name: String, dtype: DType, shape: [Int], offset: Int, size: Int,
                compression: VCMCompression, storedSize: Int, crc32c: UInt32) {
        self.name = name; self.dtype = dtype; self.shape = shape; self.offset = offset; self.size = size
        self.compression = compression; self.storedSize = storedSize; self.crc32c = crc32c
    }
}

/// A key/value conversion option recorded in the provenance.
public struct VCMOption: Sendable, Equatable, Codable {
    public var key: String
    public var value: String
    public init(_ key: String, _ value: String) { self.key = key; self.value = value }
}

/// Where the weights came from and how they were converted.
public struct VCMProvenance: Sendable, Equatable {
    public var sourceName = ""
    public var sourceSize = 0
    /// 32 bytes, or empty when not computed.
    public var sourceSHA256: [UInt8] = []
    /// "safetensors", "ckpt", "diffusers" or "vcm".
    public var sourceFormat = ""
    public var converter = ""
    public var converterVersion = ""
    public var options: [VCMOption] = []
    /// Seconds since 1970 (0 when not recorded).
    public var createdUnix: Int64 = 0

    public init() {}

    /// The SHA-256 as lowercase hex ("" when absent).
    public var sourceSHA256Hex: String { sourceSHA256.map { hex2($0) }.joined() }
}

func hex2(_ b: UInt8) -> String {
    let digits = Array("0123456789abcdef")
    return String([digits[Int(b >> 4)], digits[Int(b & 15)]])
}

/// The manifest of a .vcm file: everything except the tensor bytes (formats/vcm.proto).
public struct VCMManifest: Sendable, Equatable {
    /// "vc2", "vc1" or "sd21".
    public var modelKind = ""
    /// The full model configuration as JSON (VCModels `ModelConfig`).
    public var configJSON = ""
    /// The LVDM YAML the configuration was read from ("" when a preset was used).
    public var configYAML = ""
    /// The open_clip model config JSON ("" when built in).
    public var textConfigJSON = ""
    /// Name of the built-in preset used ("" when a YAML was given).
    public var preset = ""
    /// The open_clip BPE merges text, as one zstd frame.
    public var vocabularyZstd: [UInt8] = []
    public var vocabularySize = 0
    public var vocabularyCRC32C: UInt32 = 0
    public var provenance = VCMProvenance()
    /// Every tensor offset (and the data section) is a multiple of this.
    public var alignment = VCMFormat.defaultAlignment
    /// Sorted by offset.
    public var tensors: [VCMTensorRecord] = []

    public init() {}
}

/// Constants of the container (formats/vcm.md).
public enum VCMFormat {
    /// `\x89 V C M \r \n \x1a \n`: a non-ASCII first byte and the line-ending bytes catch text-mode
    /// transfers and truncated downloads early (the idea of the PNG signature).
    public static let magic: [UInt8] = [0x89, 0x56, 0x43, 0x4D, 0x0D, 0x0A, 0x1A, 0x0A]
    /// The only format version this code reads and writes.
    public static let version: UInt32 = 1
    public static let headerSize = 64
    /// Tensors start on 4 KiB pages: a tensor can be mapped, prefetched (`MADV_WILLNEED`) or
    /// released (`MADV_DONTNEED`) without touching its neighbours, and every start is also
    /// cache-line and AVX-512 aligned. The padding costs at most 4 KiB per tensor (about 8 MB on
    /// VideoCrafter2's 2,000 tensors, 0.3 % of a q8 file).
    public static let defaultAlignment = 4096
    /// Largest manifest a reader accepts (the 2039-tensor VC2 manifest is about 0.4 MB).
    public static let maxManifestSize = 64 << 20
    /// Largest decompressed vocabulary a reader accepts.
    public static let maxVocabularySize = 16 << 20

    /// Wire values of `vcm.DType` (fixed forever).
    public static func dtypeCode(_ t: DType) -> Int32 {
        switch t {
        case .f32: return 1
        case .f16: return 2
        case .bf16: return 3
        case .q8_0: return 4
        case .i32: return 5
        case .i64: return 6
        case .u8: return 7
        }
    }

    public static func dtype(code: UInt64) -> DType? {
        switch code {
        case 1: return .f32
        case 2: return .f16
        case 3: return .bf16
        case 4: return .q8_0
        case 5: return .i32
        case 6: return .i64
        case 7: return .u8
        default: return nil
        }
    }

    public static func compressionCode(_ c: VCMCompression) -> Int32 { c == .none ? 0 : 1 }

    public static func compression(code: UInt64) -> VCMCompression? {
        switch code {
        case 0: return VCMCompression.none
        case 1: return .zstd
        default: return nil
        }
    }
}
