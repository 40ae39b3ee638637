import VCTensor

// Format: PKWARE APPNOTE.TXT 6.3.x (sections 4.3 and 4.5: local file header, central directory,
// end of central directory, ZIP64 end record and locator, ZIP64 extended information extra field)
// and the layout PyTorch's writer produces (caffe2/serialize/inline_container.cc: stored entries,
// 64-byte aligned data via an "FB" padding extra field, data descriptors, always ZIP64).
// Own implementation.

/// One member of a zip archive, as described by the central directory, with its data offset
/// taken from the local header.
public struct ZipEntry: Sendable, Equatable {
    public var name: String
    public var flags: UInt16
    /// 0 = stored; anything else is compressed.
    public var method: UInt16
    public var crc32: UInt32
    public var compressedSize: Int
    public var size: Int
    public var localHeaderOffset: Int
    /// Absolute file offset of the entry's (stored) bytes.
    public var dataOffset: Int

    public var isEncrypted: Bool { flags & 1 != 0 }
    public var isStored: Bool { method == 0 && !isEncrypted && compressedSize == size }
}

/// A read-only zip archive over a memory-mapped file. Only the central directory and the local
/// headers are read when opening; every offset and size is bounds-checked against the file, and
/// entries may not overlap one another or the central directory. ZIP64 is supported. Data is
/// available only for stored (uncompressed, unencrypted) entries, as a window into the mapping.
public final class ZipArchive: @unchecked Sendable {
    public let path: String
    public let file: MappedFile
    /// Entries in central-directory order.
    public let entries: [ZipEntry]
    private let index: [String: Int]

    /// Limits on what the central directory may declare.
    public static let maxEntries = 1 << 20

    public convenience init(path: String) throws {
        let file: MappedFile
        do { file = try MappedFile(path: path) } catch let e as TensorError {
            if case .io(_, let m) = e { throw FormatError.io(path: path, m) }
            throw FormatError.io(path: path, e.description)
        }
        try self.init(file: file)
    }

    public init(file: MappedFile) throws {
        let path = file.path
        self.path = path
        self.file = file
        func bad(_ o: Int, _ m: String) -> FormatError { .malformed(path: path, offset: o, m) }
        let size = file.size

        // End of central directory: the last signature whose comment runs exactly to the end.
        guard size >= 22 else { throw bad(0, "file is \(size) bytes, too short for a zip archive (no end of central directory)") }
        let tailStart = max(0, size - 22 - 65535)
        let tail = try file.bytes(offset: tailStart, count: size - tailStart)
        var eocdAt: Int? = nil
        var k = tail.count - 22
        while k >= 0 {
            if ZipArchive.u32(tail, k) == 0x0605_4b50, k + 22 + Int(ZipArchive.u16(tail, k + 20)) == tail.count {
                eocdAt = k
                break
            }
            k -= 1
        }
        guard let e = eocdAt else {
            throw bad(size, "no end-of-central-directory record: not a zip archive, or truncated")
        }
        let eocd = tailStart + e
        var diskNumber = Int(ZipArchive.u16(tail, e + 4))
        var cdDisk = Int(ZipArchive.u16(tail, e + 6))
        var count = Int(ZipArchive.u16(tail, e + 10))
        var cdSize = Int(ZipArchive.u32(tail, e + 12))
        var cdOffset = Int(ZipArchive.u32(tail, e + 16))
        var cdLimit = eocd // the central directory must end before this

        // ZIP64 locator immediately before the EOCD record.
        if eocd >= 20, try file.readLE(offset: eocd - 20, width: 4) == 0x0706_4b50 {
            let loc = try file.bytes(offset: eocd - 20, count: 20)
            let recAt64 = ZipArchive.u64(loc, 8)
            guard recAt64 <= UInt64(eocd - 20), Int(recAt64) + 56 <= eocd - 20 else {
                throw bad(eocd - 20, "ZIP64 locator points to \(recAt64), outside the file before the locator")
            }
            let recAt = Int(recAt64)
            let rec = try file.bytes(offset: recAt, count: 56)
            guard ZipArchive.u32(rec, 0) == 0x0606_4b50 else {
                throw bad(recAt, "no ZIP64 end-of-central-directory record where the locator points")
            }
            diskNumber = Int(ZipArchive.u32(rec, 16))
            cdDisk = Int(ZipArchive.u32(rec, 20))
            let c64 = ZipArchive.u64(rec, 32), s64 = ZipArchive.u64(rec, 40), o64 = ZipArchive.u64(rec, 48)
            guard c64 <= UInt64(ZipArchive.maxEntries) else { throw bad(recAt, "ZIP64 record declares \(c64) entries (limit \(ZipArchive.maxEntries))") }
            guard s64 <= UInt64(size), o64 <= UInt64(size) else {
                throw bad(recAt, "ZIP64 record declares a central directory of \(s64) bytes at \(o64), beyond the \(size)-byte file")
            }
            count = Int(c64); cdSize = Int(s64); cdOffset = Int(o64)
            cdLimit = recAt
        } else if count == 0xFFFF || cdSize == 0xFFFF_FFFF || cdOffset == 0xFFFF_FFFF {
            throw bad(eocd, "end-of-central-directory fields need ZIP64 but there is no ZIP64 locator")
        }
        guard diskNumber == 0, cdDisk == 0 else {
            throw FormatError.unsupported(path: path, "multi-disk (split) zip archives are not supported")
        }
        guard cdOffset <= cdLimit, cdSize <= cdLimit - cdOffset else {
            throw bad(cdOffset, "central directory [\(cdOffset), \(cdOffset &+ cdSize)) runs past its end record at \(cdLimit)")
        }
        guard count <= cdSize / 46 else {
            throw bad(cdOffset, "\(count) entries declared, but a \(cdSize)-byte central directory holds at most \(cdSize / 46)")
        }

        // Central directory.
        let cd = try file.bytes(offset: cdOffset, count: cdSize)
        var entries: [ZipEntry] = []
        entries.reserveCapacity(count)
        var index: [String: Int] = [:]
        var p = 0
        for n in 0..<count {
            let at = cdOffset + p
            guard p + 46 <= cd.count, ZipArchive.u32(cd, p) == 0x0201_4b50 else {
                throw bad(at, "central directory entry \(n) of \(count): bad signature or truncated")
            }
            let flags = ZipArchive.u16(cd, p + 8)
            let method = ZipArchive.u16(cd, p + 10)
            let crc = ZipArchive.u32(cd, p + 16)
            var csize = UInt64(ZipArchive.u32(cd, p + 20))
            var usize = UInt64(ZipArchive.u32(cd, p + 24))
            let nameLen = Int(ZipArchive.u16(cd, p + 28))
            let extraLen = Int(ZipArchive.u16(cd, p + 30))
            let commentLen = Int(ZipArchive.u16(cd, p + 32))
            let disk = ZipArchive.u16(cd, p + 34)
            var local = UInt64(ZipArchive.u32(cd, p + 42))
            let recordLen = 46 + nameLen + extraLen + commentLen
            guard p + recordLen <= cd.count else {
                throw bad(at, "central directory entry \(n) runs past the end of the central directory")
            }
            let nameBytes = Array(cd[(p + 46)..<(p + 46 + nameLen)])
            let name = String(decoding: nameBytes, as: UTF8.self)
            // ZIP64 extended information: the 0xFFFFFFFF fields, in order.
            if csize == 0xFFFF_FFFF || usize == 0xFFFF_FFFF || local == 0xFFFF_FFFF {
                var x = p + 46 + nameLen
                let xEnd = x + extraLen
                var found = false
                while x + 4 <= xEnd {
                    let tag = ZipArchive.u16(cd, x), len = Int(ZipArchive.u16(cd, x + 2))
                    guard x + 4 + len <= xEnd else { break }
                    if tag == 0x0001 {
                        var f = x + 4
                        func next() throws -> UInt64 {
                            guard f + 8 <= x + 4 + len else {
                                throw bad(cdOffset + x, "entry '\(name)': ZIP64 extra field too short")
                            }
                            defer { f += 8 }
                            return ZipArchive.u64(cd, f)
                        }
                        if usize == 0xFFFF_FFFF { usize = try next() }
                        if csize == 0xFFFF_FFFF { csize = try next() }
                        if local == 0xFFFF_FFFF { local = try next() }
                        found = true
                        break
                    }
                    x += 4 + len
                }
                guard found else { throw bad(at, "entry '\(name)': sizes need a ZIP64 extra field, which is missing") }
            }
            guard disk == 0 || disk == 0xFFFF else {
                throw FormatError.unsupported(path: path, "entry '\(name)' is on disk \(disk): split archives are not supported")
            }
            guard csize <= UInt64(size), local <= UInt64(size) else {
                throw bad(at, "entry '\(name)': declares \(csize) bytes at \(local), beyond the \(size)-byte file")
            }
            guard usize <= UInt64(Int.max) else { throw bad(at, "entry '\(name)': declared size \(usize) overflows") }
            guard index[name] == nil else { throw bad(at, "duplicate entry name '\(name)'") }
            index[name] = entries.count
            entries.append(ZipEntry(name: name, flags: flags, method: method, crc32: crc, compressedSize: Int(csize),
                                    size: Int(usize), localHeaderOffset: Int(local), dataOffset: 0))
            p += recordLen
        }

        // Local headers: data offset = header + 30 + name + extra; data must end before the next
        // header and before the central directory.
        for i in entries.indices {
            let en = entries[i]
            let lh = en.localHeaderOffset
            guard lh + 30 <= cdOffset else {
                throw bad(lh, "entry '\(en.name)': local header at \(lh) is not before the central directory at \(cdOffset)")
            }
            let h = try file.bytes(offset: lh, count: 30)
            guard ZipArchive.u32(h, 0) == 0x0403_4b50 else { throw bad(lh, "entry '\(en.name)': no local file header at \(lh)") }
            let nl = Int(ZipArchive.u16(h, 26)), xl = Int(ZipArchive.u16(h, 28))
            let data = lh + 30 + nl + xl
            guard data <= cdOffset, en.compressedSize <= cdOffset - data else {
                throw bad(lh, "entry '\(en.name)': data [\(data), \(data + en.compressedSize)) runs into the central directory at \(cdOffset)")
            }
            let localName = try file.bytes(offset: lh + 30, count: nl)
            guard String(decoding: localName, as: UTF8.self) == en.name else {
                throw bad(lh + 30, "entry '\(en.name)': the local header names '\(String(decoding: localName, as: UTF8.self))'")
            }
            entries[i].dataOffset = data
        }
        let order = entries.indices.sorted { entries[$0].localHeaderOffset < entries[$1].localHeaderOffset }
        for (a, b) in zip(order, order.dropFirst()) {
            let ea = entries[a], eb = entries[b]
            guard ea.dataOffset + ea.compressedSize <= eb.localHeaderOffset else {
                throw bad(eb.localHeaderOffset, "entries '\(ea.name)' and '\(eb.name)' overlap")
            }
        }
        self.entries = entries
        self.index = index
    }

    public func entry(named name: String) -> ZipEntry? { index[name].map { entries[$0] } }

    /// The absolute file range of a stored entry's bytes; throws for compressed or encrypted ones.
    public func storedRange(_ e: ZipEntry) throws -> Range<Int> {
        if e.isEncrypted { throw FormatError.unsupported(path: path, "entry '\(e.name)' is encrypted") }
        guard e.method == 0 else {
            throw FormatError.unsupported(path: path, "entry '\(e.name)' is compressed (method \(e.method)); only stored (uncompressed) entries can be memory-mapped: re-save the checkpoint with torch.save")
        }
        guard e.compressedSize == e.size else {
            throw FormatError.malformed(path: path, offset: e.localHeaderOffset, "stored entry '\(e.name)' has size \(e.size) but \(e.compressedSize) stored bytes")
        }
        return e.dataOffset..<(e.dataOffset + e.size)
    }

    /// A window into the mapping holding a stored entry's bytes.
    public func storage(_ e: ZipEntry) throws -> Storage {
        let r = try storedRange(e)
        return try file.storage(offset: r.lowerBound, count: r.count)
    }

    /// A copy of a small stored entry's bytes, CRC-32 verified.
    public func bytes(_ e: ZipEntry) throws -> [UInt8] {
        let r = try storedRange(e)
        let b = try file.bytes(offset: r.lowerBound, count: r.count)
        let c = ZipArchive.crc32(b)
        guard c == e.crc32 else {
            throw FormatError.malformed(path: path, offset: r.lowerBound, "entry '\(e.name)': CRC-32 is \(String(c, radix: 16)), the central directory says \(String(e.crc32, radix: 16))")
        }
        return b
    }

    /// Whether a stored entry's bytes match its CRC-32 (reads the whole entry, in 1 MiB chunks,
    /// releasing the pages afterwards).
    public func verifyCRC(_ e: ZipEntry) throws -> Bool {
        let r = try storedRange(e)
        var c: UInt32 = 0xFFFF_FFFF
        var at = r.lowerBound
        while at < r.upperBound {
            let n = min(1 << 20, r.upperBound - at)
            for b in try file.bytes(offset: at, count: n) { c = ZipArchive.crcTable[Int((c ^ UInt32(b)) & 0xFF)] ^ (c >> 8) }
            file.dontNeed(offset: at, count: n)
            at += n
        }
        return c ^ 0xFFFF_FFFF == e.crc32
    }

    // MARK: little-endian readers over byte arrays (callers check bounds)

    static func u16(_ b: [UInt8], _ i: Int) -> UInt16 { UInt16(b[i]) | UInt16(b[i + 1]) << 8 }
    static func u32(_ b: [UInt8], _ i: Int) -> UInt32 {
        UInt32(b[i]) | UInt32(b[i + 1]) << 8 | UInt32(b[i + 2]) << 16 | UInt32(b[i + 3]) << 24
    }
    static func u64(_ b: [UInt8], _ i: Int) -> UInt64 { UInt64(u32(b, i)) | UInt64(u32(b, i + 4)) << 32 }

    /// CRC-32 (ISO-HDLC, zlib) of `bytes`.
    public static func crc32(_ bytes: [UInt8]) -> UInt32 {
        var c: UInt32 = 0xFFFF_FFFF
        for b in bytes { c = crcTable[Int((c ^ UInt32(b)) & 0xFF)] ^ (c >> 8) }
        return c ^ 0xFFFF_FFFF
    }

    static let crcTable: [UInt32] = (0..<256).map { n -> UInt32 in
        var c = UInt32(n)
        for _ in 0..<8 { c = c & 1 != 0 ? 0xEDB8_8320 ^ (c >> 1) : c >> 1 }
        return c
    }
}
