import VCTensor

/// Writes a .vcm file as a stream (formats/vcm.md): tensors are appended one at a time (each
/// aligned, checksummed, optionally zstd-compressed), and `finish` writes the manifest after the
/// data and the header in front. Memory is bounded by the largest single tensor. The file appears
/// at `path` only when `finish` succeeds (temporary file, fsync, rename); otherwise nothing is
/// left behind.
public final class VCMWriter {
    public let path: String
    public let alignment: Int
    private let out: AtomicOutput
    private var records: [VCMTensorRecord] = []
    private var names = Set<String>()
    private let dataOffset: Int
    private var finished = false
    private static let chunk = 8 << 20

    /// - Parameters:
    ///   - overwrite: replace an existing file at `path` (never one of `protecting`).
    ///   - alignment: power of two >= 32 (64 suits AVX-512 loads and cache lines).
    public init(path: String, overwrite: Bool = false, protecting inputs: [String] = [],
                alignment: Int = VCMFormat.defaultAlignment) throws {
        guard alignment >= 32, alignment <= 1 << 20, alignment & (alignment - 1) == 0 else {
            throw FormatError.unsupported(path: path, "alignment \(alignment) is not a power of two in [32, 1 MiB]")
        }
        self.path = path
        self.alignment = alignment
        self.out = try AtomicOutput(path: path, overwrite: overwrite, protecting: inputs)
        self.dataOffset = (VCMFormat.headerSize + alignment - 1) / alignment * alignment
        try out.writeZeros(dataOffset)
    }

    /// The records written so far, in file order.
    public var tensors: [VCMTensorRecord] { records }

    /// Bytes written so far.
    public var bytesWritten: Int { out.position }

    /// Appends one tensor. The stored bytes are the tensor's bytes as they are (convert before
    /// calling); with `.zstd` they are compressed at `level` unless that does not make them smaller
    /// (then the record says `.none`).
    @discardableResult
    public func add(_ name: String, _ tensor: Tensor, compression: VCMCompression = .none, level: Int32 = 3) throws -> VCMTensorRecord {
        guard !finished else { throw FormatError.io(path: path, "add after finish") }
        guard !name.isEmpty, !names.contains(name) else {
            throw FormatError.unsupported(path: path, "tensor name '\(name)' is empty or already written")
        }
        guard tensor.shape.count <= 8 else { throw FormatError.unsupported(path: path, "tensor '\(name)': rank \(tensor.shape.count) > 8") }
        let size = tensor.byteCount
        var compressed: [UInt8]?
        if compression == .zstd, size > 0 {
            let z = try Zstd.compress(tensor.bytes(), level: level)
            if z.count < size { compressed = z }
        }
        let pad = (alignment - (out.position % alignment)) % alignment
        try out.writeZeros(pad)
        let offset = out.position - dataOffset
        if let compressed {
            try out.write(compressed)
        } else {
            // Straight from the tensor's storage in 8 MB pieces: no second copy of a 200 MB tensor.
            var done = 0
            while done < size {
                let n = min(VCMWriter.chunk, size - done)
                try out.write(tensor.storage.bytes((tensor.byteOffset + done)..<(tensor.byteOffset + done + n)))
                done += n
            }
        }
        let r = VCMTensorRecord(name: name, dtype: tensor.dtype, shape: tensor.shape, offset: offset, size: size,
                                compression: compressed == nil ? .none : .zstd, storedSize: compressed?.count ?? size,
                                crc32c: tensor.crc32c())
        records.append(r)
        names.insert(name)
        return r
    }

    /// Writes the manifest (its `tensors` and `alignment` are replaced by what was written) and
    /// the header, then commits the file.
    public func finish(_ manifest: VCMManifest) throws {
        guard !finished else { throw FormatError.io(path: path, "finish called twice") }
        finished = true
        do {
            var m = manifest
            m.tensors = records
            m.alignment = alignment
            let dataSize = out.position - dataOffset
            let bytes = try ManifestCodec.encode(m)
            guard bytes.count <= VCMFormat.maxManifestSize else {
                throw FormatError.unsupported(path: path, "manifest of \(bytes.count) bytes exceeds the \(VCMFormat.maxManifestSize)-byte limit")
            }
            var h = VCMHeader()
            h.dataOffset = dataOffset
            h.dataSize = dataSize
            h.manifestOffset = out.position
            h.manifestSize = bytes.count
            h.manifestCRC32C = CRC32C.checksum(bytes)
            try out.write(bytes)
            try out.write(h.encoded(), at: 0)
            try out.commit()
        } catch {
            out.abort()
            throw error
        }
    }

    /// Abandons the file (the temporary file is removed).
    public func cancel() {
        finished = true
        out.abort()
    }
}
