import Foundation
import VCTensor

/// The fixed 64-byte header at the start of a .vcm file (formats/vcm.md, "Header").
public struct VCMHeader: Sendable, Equatable {
    public var version: UInt32 = VCMFormat.version
    public var headerSize = VCMFormat.headerSize
    public var dataOffset = 0
    public var dataSize = 0
    public var manifestOffset = 0
    public var manifestSize = 0
    public var manifestCRC32C: UInt32 = 0
    public var flags: UInt32 = 0

    public init() {}

    /// The 64 header bytes (little-endian), ending with the CRC-32C of the first 60.
    public func encoded() -> [UInt8] {
        var b = VCMFormat.magic
        b.appendLE(UInt64(version), 4)
        b.appendLE(UInt64(headerSize), 4)
        b.appendLE(UInt64(dataOffset), 8)
        b.appendLE(UInt64(dataSize), 8)
        b.appendLE(UInt64(manifestOffset), 8)
        b.appendLE(UInt64(manifestSize), 8)
        b.appendLE(UInt64(manifestCRC32C), 4)
        b.appendLE(UInt64(flags), 4)
        b.appendLE(0, 4)
        b.appendLE(UInt64(CRC32C.checksum(b)), 4)
        return b
    }
}

extension Array where Element == UInt8 {
    mutating func appendLE(_ v: UInt64, _ width: Int) {
        for i in 0..<width { append(UInt8(truncatingIfNeeded: v >> (8 * UInt64(i)))) }
    }
}

/// CRC-32C of byte arrays (through the tensor core's hardware-accelerated kernel).
public enum CRC32C {
    public static func checksum(_ bytes: [UInt8]) -> UInt32 {
        guard !bytes.isEmpty else { return 0 }
        // A u8 tensor over a copy of the bytes; the copy is small (headers, manifests).
        return (try? Tensor(shape: [bytes.count], dtype: .u8, bytes: bytes).crc32c()) ?? 0
    }
}

/// A .vcm model file opened for reading (formats/vcm.md). The header and manifest are validated
/// completely at open; uncompressed tensors are zero-copy windows into the read-only mapping,
/// zstd tensors are decompressed into owned memory. With `verify` (the default) each tensor's
/// CRC-32C is checked the first time it is read; `verifyAll()` checks every tensor at once.
public final class VCMFile: MappedTensorSource, @unchecked Sendable {
    public let path: String
    public let file: MappedFile
    public let header: VCMHeader
    public let manifest: VCMManifest
    public let verify: Bool
    private let index: [String: Int]
    private let lock = NSLock()
    private var verified = Set<String>()

    public init(path: String, verify: Bool = true) throws {
        self.path = path
        self.verify = verify
        let file = try MappedFile(path: path)
        self.file = file
        let header = try VCMFile.readHeader(file, path: path)
        self.header = header
        let mbytes = try file.bytes(offset: header.manifestOffset, count: header.manifestSize)
        let crc = CRC32C.checksum(mbytes)
        guard crc == header.manifestCRC32C else {
            throw FormatError.malformed(path: path, offset: header.manifestOffset,
                                        "manifest checksum mismatch (CRC-32C \(hex(crc)), header says \(hex(header.manifestCRC32C)))")
        }
        let manifest = try ManifestCodec.decode(mbytes, path: path, offset: header.manifestOffset)
        self.manifest = manifest
        self.index = try VCMFile.validate(manifest, header: header, path: path)
    }

    // MARK: TensorSource

    public var tensorNames: [String] { manifest.tensors.map(\.name) }

    /// Drops the mapped pages of an uncompressed tensor (compressed ones are copies already).
    public func releasePages(named name: String) {
        guard let r = record(named: name), r.compression == .none else { return }
        file.dontNeed(offset: header.dataOffset + r.offset, count: r.storedSize)
    }

    public func record(named name: String) -> VCMTensorRecord? {
        index[name].map { manifest.tensors[$0] }
    }

    public func tensor(named name: String) throws -> Tensor? {
        guard let r = record(named: name) else { return nil }
        let at = header.dataOffset + r.offset
        let t: Tensor
        switch r.compression {
        case .none:
            let st = try file.storage(offset: at, count: r.size)
            t = try Tensor(shape: r.shape, dtype: r.dtype, storage: st)
        case .zstd:
            let stored = try file.bytes(offset: at, count: r.storedSize)
            let raw: [UInt8]
            do { raw = try Zstd.decompress(stored, expectedSize: r.size) } catch {
                throw FormatError.malformed(path: path, offset: at, "tensor '\(name)': \(error)")
            }
            t = try Tensor(shape: r.shape, dtype: r.dtype, bytes: raw)
        }
        if verify && !isVerified(name) {
            try check(t, r)
            lock.lock(); verified.insert(name); lock.unlock()
        }
        return t
    }

    /// Checks every tensor's checksum (and that every zstd frame decodes); throws on the first
    /// mismatch, naming the tensor and its byte offset.
    public func verifyAll(progress: (Int, Int) -> Void = { _, _ in }) throws {
        for (i, r) in manifest.tensors.enumerated() {
            let at = header.dataOffset + r.offset
            if r.compression == .none {
                let crc = try file.crc32c(offset: at, count: r.size)
                guard crc == r.crc32c else { throw mismatch(r, crc) }
                file.dontNeed(offset: at, count: r.size)
            } else {
                _ = try tensor(named: r.name).map { try check($0, r) }
            }
            progress(i + 1, manifest.tensors.count)
        }
        lock.lock(); verified = Set(manifest.tensors.map(\.name)); lock.unlock()
    }

    /// The open_clip BPE merges text stored in the file (decompressed and checked).
    public func vocabulary() throws -> [UInt8] {
        let m = manifest
        guard !m.vocabularyZstd.isEmpty else { throw FormatError.model(path: path, "the file holds no tokenizer vocabulary") }
        let raw: [UInt8]
        do { raw = try Zstd.decompress(m.vocabularyZstd, expectedSize: m.vocabularySize) } catch {
            throw FormatError.malformed(path: path, offset: header.manifestOffset, "vocabulary: \(error)")
        }
        let crc = CRC32C.checksum(raw)
        guard crc == m.vocabularyCRC32C else {
            throw FormatError.malformed(path: path, offset: header.manifestOffset, "vocabulary checksum mismatch (\(hex(crc)) != \(hex(m.vocabularyCRC32C)))")
        }
        return raw
    }

    private func isVerified(_ name: String) -> Bool {
        lock.lock(); defer { lock.unlock() }
        return verified.contains(name)
    }

    private func check(_ t: Tensor, _ r: VCMTensorRecord) throws {
        let crc = t.crc32c()
        guard crc == r.crc32c else { throw mismatch(r, crc) }
    }

    private func mismatch(_ r: VCMTensorRecord, _ crc: UInt32) -> FormatError {
        .malformed(path: path, offset: header.dataOffset + r.offset,
                   "tensor '\(r.name)': checksum mismatch (CRC-32C \(hex(crc)), manifest says \(hex(r.crc32c))); the file is corrupt")
    }

    // MARK: validation

    static func readHeader(_ file: MappedFile, path: String) throws -> VCMHeader {
        let size = file.size
        guard size >= VCMFormat.headerSize else {
            throw FormatError.malformed(path: path, offset: 0, "file is \(size) bytes, shorter than the \(VCMFormat.headerSize)-byte .vcm header")
        }
        let b = try file.bytes(offset: 0, count: VCMFormat.headerSize)
        guard Array(b[0..<8]) == VCMFormat.magic else {
            throw FormatError.malformed(path: path, offset: 0, "not a .vcm file (bad magic \(b[0..<8].map { hex2($0) }.joined(separator: " ")))")
        }
        func le(_ o: Int, _ w: Int) -> UInt64 {
            var v: UInt64 = 0
            for i in 0..<w { v |= UInt64(b[o + i]) << (8 * UInt64(i)) }
            return v
        }
        var h = VCMHeader()
        h.version = UInt32(le(8, 4))
        guard h.version == VCMFormat.version else {
            throw FormatError.malformed(path: path, offset: 8, "format version \(h.version) is not supported (this reader knows version \(VCMFormat.version))")
        }
        let crc = CRC32C.checksum(Array(b[0..<60]))
        guard crc == UInt32(le(60, 4)) else {
            throw FormatError.malformed(path: path, offset: 60, "header checksum mismatch (CRC-32C \(hex(crc)), stored \(hex(UInt32(le(60, 4)))))")
        }
        let hs = le(12, 4)
        guard hs == UInt64(VCMFormat.headerSize) else {
            throw FormatError.malformed(path: path, offset: 12, "header size \(hs), expected \(VCMFormat.headerSize)")
        }
        h.flags = UInt32(le(52, 4))
        guard h.flags == 0, le(56, 4) == 0 else {
            throw FormatError.malformed(path: path, offset: 52, "unknown header flags \(h.flags) / reserved \(le(56, 4))")
        }
        // Every 64-bit field is bounded by the file size before any arithmetic.
        let fields: [(Int, String)] = [(16, "data offset"), (24, "data size"), (32, "manifest offset"), (40, "manifest size")]
        var values: [Int] = []
        for (o, what) in fields {
            let v = le(o, 8)
            guard v <= UInt64(size) else {
                throw FormatError.malformed(path: path, offset: o, "\(what) \(v) exceeds the \(size)-byte file (truncated?)")
            }
            values.append(Int(v))
        }
        h.dataOffset = values[0]; h.dataSize = values[1]; h.manifestOffset = values[2]; h.manifestSize = values[3]
        h.manifestCRC32C = UInt32(le(48, 4))
        guard h.dataOffset >= VCMFormat.headerSize else {
            throw FormatError.malformed(path: path, offset: 16, "data offset \(h.dataOffset) overlaps the header")
        }
        guard h.dataSize <= size - h.dataOffset, h.dataOffset + h.dataSize <= h.manifestOffset else {
            throw FormatError.malformed(path: path, offset: 24, "data section [\(h.dataOffset), \(h.dataOffset + h.dataSize)) overlaps the manifest at \(h.manifestOffset) or the end of the \(size)-byte file")
        }
        guard h.manifestSize <= VCMFormat.maxManifestSize else {
            throw FormatError.malformed(path: path, offset: 40, "manifest size \(h.manifestSize) exceeds the \(VCMFormat.maxManifestSize)-byte limit")
        }
        guard h.manifestSize <= size - h.manifestOffset else {
            throw FormatError.malformed(path: path, offset: h.manifestOffset, "manifest [\(h.manifestOffset), \(h.manifestOffset + h.manifestSize)) extends past the end of the \(size)-byte file (truncated)")
        }
        guard h.manifestOffset + h.manifestSize == size else {
            throw FormatError.malformed(path: path, offset: h.manifestOffset + h.manifestSize, "\(size - h.manifestOffset - h.manifestSize) unexpected bytes after the manifest")
        }
        return h
    }

    /// Checks every record against the header and each other; returns the name index.
    static func validate(_ m: VCMManifest, header h: VCMHeader, path: String) throws -> [String: Int] {
        let a = m.alignment
        guard a >= 32, a <= 1 << 20, a & (a - 1) == 0 else {
            throw FormatError.malformed(path: path, offset: h.manifestOffset, "manifest: alignment \(a) is not a power of two in [32, 1 MiB]")
        }
        guard h.dataOffset % a == 0 else {
            throw FormatError.malformed(path: path, offset: 16, "data offset \(h.dataOffset) is not a multiple of the alignment \(a)")
        }
        guard m.vocabularySize <= VCMFormat.maxVocabularySize else {
            throw FormatError.malformed(path: path, offset: h.manifestOffset, "manifest: vocabulary of \(m.vocabularySize) bytes exceeds the limit")
        }
        var index: [String: Int] = [:]
        var previousEnd = 0
        var previousName = ""
        for (i, r) in m.tensors.enumerated() {
            let at = h.dataOffset &+ r.offset
            func bad(_ msg: String, offset: Int? = nil) -> FormatError {
                .malformed(path: path, offset: offset ?? h.manifestOffset, "tensor '\(r.name)': \(msg)")
            }
            guard !r.name.isEmpty else { throw FormatError.malformed(path: path, offset: h.manifestOffset, "tensor #\(i) has an empty name") }
            guard index[r.name] == nil else { throw bad("appears twice in the manifest") }
            index[r.name] = i
            guard let bytes = r.dtype.byteCount(shape: r.shape) else { throw bad("shape \(r.shape) overflows for \(r.dtype.rawValue)") }
            guard bytes == r.size else { throw bad("size \(r.size) does not match \(r.dtype.rawValue) \(r.shape) (\(bytes) bytes)") }
            switch r.compression {
            case .none: guard r.storedSize == r.size else { throw bad("uncompressed but stored size \(r.storedSize) != size \(r.size)") }
            case .zstd: guard r.storedSize > 0 || r.size == 0 else { throw bad("empty zstd frame") }
            }
            guard r.offset % a == 0 else { throw bad("offset \(r.offset) is not a multiple of the alignment \(a)") }
            guard r.offset <= h.dataSize, r.storedSize <= h.dataSize - r.offset else {
                throw bad("bytes [\(r.offset), \(r.offset &+ r.storedSize)) of the data section lie outside its \(h.dataSize) bytes",
                          offset: h.dataOffset + min(r.offset, h.dataSize))
            }
            guard r.offset >= previousEnd else {
                throw bad("bytes start at \(at), inside the previous tensor '\(previousName)' (records must be sorted and disjoint)", offset: at)
            }
            previousEnd = r.offset + r.storedSize
            previousName = r.name
        }
        return index
    }
}

func hex(_ v: UInt32) -> String {
    let s = String(v, radix: 16)
    return "0x" + String(repeating: "0", count: max(0, 8 - s.count)) + s
}
