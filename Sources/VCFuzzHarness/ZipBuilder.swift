import VCFormats

/// A minimal zip writer (stored entries, no ZIP64, no data descriptors) for the pickle fuzz
/// target, which wraps each input into an otherwise valid checkpoint. Format: PKWARE APPNOTE.TXT
/// 6.3.x sections 4.3.7 (local file header), 4.3.12 (central directory header) and 4.3.16 (end of
/// central directory record). Own implementation.
struct ZipBuilder {
    private var out: [UInt8] = []
    private var central: [UInt8] = []
    private var count = 0

    private static func le(_ v: UInt64, _ n: Int, into b: inout [UInt8]) {
        for i in 0..<n { b.append(UInt8(truncatingIfNeeded: v >> (8 * UInt64(i)))) }
    }

    mutating func add(_ name: String, _ data: [UInt8]) {
        let n = Array(name.utf8)
        let crc = UInt64(ZipArchive.crc32(data))
        let offset = UInt64(out.count)
        // local file header
        ZipBuilder.le(0x0403_4b50, 4, into: &out)
        ZipBuilder.le(20, 2, into: &out)      // version needed
        ZipBuilder.le(0, 2, into: &out)       // flags
        ZipBuilder.le(0, 2, into: &out)       // method: stored
        ZipBuilder.le(0, 4, into: &out)       // time, date
        ZipBuilder.le(crc, 4, into: &out)
        ZipBuilder.le(UInt64(data.count), 4, into: &out)
        ZipBuilder.le(UInt64(data.count), 4, into: &out)
        ZipBuilder.le(UInt64(n.count), 2, into: &out)
        ZipBuilder.le(0, 2, into: &out)       // extra length
        out += n
        out += data
        // central directory header
        ZipBuilder.le(0x0201_4b50, 4, into: &central)
        ZipBuilder.le(20, 2, into: &central)  // version made by
        ZipBuilder.le(20, 2, into: &central)  // version needed
        ZipBuilder.le(0, 2, into: &central)
        ZipBuilder.le(0, 2, into: &central)
        ZipBuilder.le(0, 4, into: &central)
        ZipBuilder.le(crc, 4, into: &central)
        ZipBuilder.le(UInt64(data.count), 4, into: &central)
        ZipBuilder.le(UInt64(data.count), 4, into: &central)
        ZipBuilder.le(UInt64(n.count), 2, into: &central)
        ZipBuilder.le(0, 2, into: &central)   // extra
        ZipBuilder.le(0, 2, into: &central)   // comment
        ZipBuilder.le(0, 2, into: &central)   // disk
        ZipBuilder.le(0, 2, into: &central)   // internal attributes
        ZipBuilder.le(0, 4, into: &central)   // external attributes
        ZipBuilder.le(offset, 4, into: &central)
        central += n
        count += 1
    }

    func finish() -> [UInt8] {
        var b = out
        let cdOffset = UInt64(b.count)
        b += central
        ZipBuilder.le(0x0605_4b50, 4, into: &b)
        ZipBuilder.le(0, 2, into: &b)
        ZipBuilder.le(0, 2, into: &b)
        ZipBuilder.le(UInt64(count), 2, into: &b)
        ZipBuilder.le(UInt64(count), 2, into: &b)
        ZipBuilder.le(UInt64(central.count), 4, into: &b)
        ZipBuilder.le(cdOffset, 4, into: &b)
        ZipBuilder.le(0, 2, into: &b)
        return b
    }
}
