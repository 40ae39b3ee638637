import Foundation
import Testing
import VCTensor
@testable import VCFormats

/// Byte surgery on a valid sample file: each case breaks one rule of formats/vcm.md and must be
/// rejected with a FormatError that names the file and the byte offset (and the tensor where there
/// is one), without crashing.
struct Mutant {
    var bytes: [UInt8]
    var le: (Int, Int) -> Int { { o, w in (0..<w).reduce(0) { $0 | Int(self.bytes[o + $1]) << (8 * $1) } } }
    var manifestOffset: Int { le(32, 8) }
    var manifestSize: Int { le(40, 8) }
    var manifest: [UInt8] { Array(bytes[manifestOffset..<(manifestOffset + manifestSize)]) }

    mutating func put(_ v: Int, at o: Int, width: Int) {
        for i in 0..<width { bytes[o + i] = UInt8(truncatingIfNeeded: v >> (8 * i)) }
    }
    /// Recomputes the header checksum (so that a test reaches the check after it).
    mutating func resealHeader() { put(Int(CRC32C.checksum(Array(bytes[0..<60]))), at: 60, width: 4) }
    /// Replaces the manifest, fixing size and both checksums.
    mutating func replaceManifest(_ m: [UInt8]) {
        let o = manifestOffset
        bytes = Array(bytes[0..<o]) + m
        put(m.count, at: 40, width: 8)
        put(Int(CRC32C.checksum(m)), at: 48, width: 4)
        resealHeader()
    }
    mutating func replaceManifest(_ edit: (inout VCMManifest) -> Void) throws {
        var m = try ManifestCodec.decode(manifest, path: "t", offset: 0)
        edit(&m)
        replaceManifest(try ManifestCodec.encode(m))
    }
}

@Suite("VCM container: malformed files are rejected")
final class VCMMalformedTests {
    let s: Scratch
    let good: [UInt8]

    init() throws {
        s = try Scratch()
        try writeSample(s.path("good.vcm"))
        good = [UInt8](try Data(contentsOf: URL(fileURLWithPath: s.path("good.vcm"))))
    }

    deinit { s.cleanup() }

    /// Writes the mutant, opens it and returns the error text (nil if it opened).
    func openError(_ m: Mutant, verify: Bool = true, name: String = "bad.vcm") -> String? {
        let p = s.path(name)
        _ = FileManager.default.createFile(atPath: p, contents: Data(m.bytes))
        do { _ = try VCMFile(path: p, verify: verify); return nil } catch let e as FormatError {
            #expect(e.description.hasPrefix(p), "the message names the file: \(e)")
            return e.description
        } catch {
            Issue.record("not a FormatError: \(error)")
            return "\(error)"
        }
    }

    func expectRejected(_ m: Mutant, _ fragments: String..., sourceLocation: SourceLocation = #_sourceLocation) {
        guard let msg = openError(m) else {
            Issue.record("accepted a malformed file", sourceLocation: sourceLocation)
            return
        }
        for f in fragments {
            #expect(msg.contains(f), "'\(f)' in: \(msg)", sourceLocation: sourceLocation)
        }
    }

    /// Found while writing the vcm fuzz target: a zstd record may declare any size (with a shape
    /// to match), and reading it allocated that many bytes first; a 1 TiB claim from a 300-byte
    /// frame must be refused at open.
    @Test func zstdSizeBeyondWhatTheFrameCanHold() throws {
        var m = Mutant(bytes: good)
        try m.replaceManifest { man in
            guard let i = man.tensors.firstIndex(where: { $0.name == "c.bf16" }) else { return }
            man.tensors[i].shape = [1 << 39]
            man.tensors[i].size = 1 << 40
        }
        expectRejected(m, "tensor 'c.bf16'", "cannot come from a", "zstd frame")
    }

    @Test func badMagic() {
        var m = Mutant(bytes: good); m.bytes[1] = 0x57
        expectRejected(m, "at byte 0", "not a .vcm file")
    }

    @Test func shorterThanTheHeader() {
        expectRejected(Mutant(bytes: Array(good[0..<40])), "at byte 0", "shorter than the 64-byte")
    }

    @Test func emptyFile() {
        expectRejected(Mutant(bytes: []), "at byte 0", "file is 0 bytes")
    }

    @Test func unsupportedVersion() {
        var m = Mutant(bytes: good); m.put(2, at: 8, width: 4); m.resealHeader()
        expectRejected(m, "at byte 8", "format version 2 is not supported")
    }

    @Test func headerChecksum() {
        var m = Mutant(bytes: good); m.bytes[20] ^= 1
        expectRejected(m, "at byte 60", "header checksum")
    }

    @Test func truncatedFile() {
        // Cut in the middle of the manifest: the header points past the end.
        let m = Mutant(bytes: Array(good[0..<(good.count - 7)]))
        expectRejected(m, "at byte \(m.manifestOffset)", "extends past the end", "truncated")
    }

    @Test func truncatedDataSection() {
        // Cut inside the tensor data: every header field now exceeds the file.
        let m = Mutant(bytes: Array(good[0..<100]))
        expectRejected(m, "exceeds the 100-byte file")
    }

    @Test func truncatedManifestWithConsistentHeader() {
        // A manifest cut short (size and checksums updated as a buggy writer would): the protobuf
        // decoder sees a field running past the end.
        var m = Mutant(bytes: good)
        let cut = Array(m.manifest.dropLast(5))
        m.replaceManifest(cut)
        expectRejected(m, "at byte \(m.manifestOffset)", "manifest")
    }

    @Test func manifestChecksum() {
        var m = Mutant(bytes: good); m.bytes[m.manifestOffset + 3] ^= 0x40
        expectRejected(m, "at byte \(m.manifestOffset)", "manifest checksum mismatch")
    }

    @Test func trailingGarbage() {
        var m = Mutant(bytes: good); m.bytes += [1, 2, 3]
        expectRejected(m, "3 unexpected bytes after the manifest")
    }

    @Test func dataSectionOverlapsManifest() {
        var m = Mutant(bytes: good); m.put(m.le(24, 8) + 8, at: 24, width: 8); m.resealHeader()
        expectRejected(m, "at byte 24", "overlaps")
    }

    @Test func tensorOffsetOutOfRange() throws {
        var m = Mutant(bytes: good)
        try m.replaceManifest { $0.tensors[7].offset = 1 << 40 }
        expectRejected(m, "tensor 'h.i32'", "outside")
    }

    @Test func tensorSizeOutOfRange() throws {
        var m = Mutant(bytes: good)
        try m.replaceManifest { $0.tensors[7].shape = [1 << 30]; $0.tensors[7].size = 4 << 30; $0.tensors[7].storedSize = 4 << 30 }
        expectRejected(m, "tensor 'h.i32'", "outside")
    }

    @Test func sizeDisagreesWithShape() throws {
        var m = Mutant(bytes: good)
        try m.replaceManifest { $0.tensors[0].size += 4; $0.tensors[0].storedSize += 4 }
        expectRejected(m, "tensor 'a.f32'", "does not match f32 [8, 40]")
    }

    @Test func shapeOverflow() throws {
        var m = Mutant(bytes: good)
        try m.replaceManifest { $0.tensors[0].shape = [Int.max / 2, 4] }
        expectRejected(m, "tensor 'a.f32'", "overflows")
    }

    @Test func overlappingTensors() throws {
        var m = Mutant(bytes: good)
        try m.replaceManifest { $0.tensors[1].offset = $0.tensors[0].offset }
        expectRejected(m, "tensor 'b.f16'", "inside the previous tensor 'a.f32'")
    }

    @Test func misalignedOffset() throws {
        var m = Mutant(bytes: good)
        try m.replaceManifest { $0.tensors[1].offset += 4 }
        expectRejected(m, "tensor 'b.f16'", "not a multiple of the alignment \(VCMFormat.defaultAlignment)")
    }

    @Test func badAlignment() throws {
        var m = Mutant(bytes: good)
        try m.replaceManifest { $0.alignment = 48 }
        expectRejected(m, "alignment 48")
    }

    @Test func duplicateName() throws {
        var m = Mutant(bytes: good)
        try m.replaceManifest { $0.tensors[1].name = "a.f32" }
        expectRejected(m, "tensor 'a.f32'", "appears twice")
    }

    @Test func unknownDtype() throws {
        // Patch the dtype varint of tensor 'b.f16' (field 2 right after the name) from 2 to 99.
        var m = Mutant(bytes: good)
        var man = m.manifest
        let pattern: [UInt8] = [0x0A, 5] + Array("b.f16".utf8) + [0x10, 0x02]
        let at = try #require(find(pattern, in: man))
        man[at + pattern.count - 1] = 99
        m.replaceManifest(man)
        expectRejected(m, "tensor 'b.f16'", "unknown dtype code 99")
    }

    @Test func unknownCompression() throws {
        // Patch the compression varint (field 6, tag 0x30) of the zstd record 'c.bf16' from 1 to 7.
        var m = Mutant(bytes: good)
        var man = m.manifest
        let name = Array("c.bf16".utf8)
        let at = try #require(find([0x0A, UInt8(name.count)] + name, in: man))
        let c = try #require(find([0x30, 0x01], in: Array(man[at...])))
        man[at + c + 1] = 7
        m.replaceManifest(man)
        expectRejected(m, "tensor 'c.bf16'", "unknown compression code 7")
    }

    @Test func notProtobuf() {
        var m = Mutant(bytes: good)
        m.replaceManifest([0xFF, 0xFF, 0xFF, 0xFF, 0x0F, 0x01, 0x02])
        expectRejected(m, "at byte \(m.manifestOffset)", "manifest")
    }

    @Test func checksumMismatchOnRead() throws {
        var m = Mutant(bytes: good)
        let f0 = try VCMFile(path: s.path("good.vcm"))
        let r = try #require(f0.record(named: "d.q8"))
        m.bytes[f0.header.dataOffset + r.offset + 5] ^= 0x10
        let p = s.path("flipped.vcm")
        _ = FileManager.default.createFile(atPath: p, contents: Data(m.bytes))
        let f = try VCMFile(path: p) // the manifest is intact; the data is checked on use
        let at = f0.header.dataOffset + r.offset
        #expect { try f.tensor(named: "d.q8") } throws: {
            let d = "\($0)"
            return d.hasPrefix(p) && d.contains("at byte \(at)") && d.contains("tensor 'd.q8'") && d.contains("checksum mismatch")
        }
        #expect { try f.verifyAll() } throws: { "\($0)".contains("tensor 'd.q8'") }
        // Other tensors still read, and verify: false is the escape hatch.
        #expect(try f.tensor(named: "a.f32") != nil)
        #expect(try VCMFile(path: p, verify: false).tensor(named: "d.q8") != nil)
    }

    @Test func corruptZstdFrame() throws {
        var m = Mutant(bytes: good)
        let f0 = try VCMFile(path: s.path("good.vcm"))
        let r = try #require(f0.record(named: "c.bf16"))
        #expect(r.compression == .zstd)
        for i in 0..<4 { m.bytes[f0.header.dataOffset + r.offset + i] = 0 } // zstd magic gone
        let p = s.path("z.vcm")
        _ = FileManager.default.createFile(atPath: p, contents: Data(m.bytes))
        let f = try VCMFile(path: p, verify: false)
        #expect { try f.tensor(named: "c.bf16") } throws: {
            "\($0)".contains("tensor 'c.bf16'") && "\($0)".contains("at byte \(f0.header.dataOffset + r.offset)")
        }
    }

    /// Every single-byte corruption of the manifest (with checksums recomputed so that the decoder
    /// itself sees it) and every truncation is either rejected with a FormatError or yields a
    /// file whose tensors read or fail cleanly. Nothing crashes.
    @Test func exhaustiveManifestCorruption() throws {
        let base = Mutant(bytes: good)
        let man = base.manifest
        var rejected = 0, accepted = 0
        func attempt(_ m: Mutant) {
            let p = s.path("fuzz.vcm")
            _ = FileManager.default.createFile(atPath: p, contents: Data(m.bytes))
            do {
                let f = try VCMFile(path: p)
                accepted += 1
                for n in f.tensorNames { _ = try? f.tensor(named: n) }
                _ = try? f.vocabulary()
            } catch is FormatError {
                rejected += 1
            } catch {
                Issue.record("unexpected error type \(type(of: error)): \(error)")
            }
        }
        let flips: [UInt8] = [0x01, 0x80, 0xFF]
        for i in 0..<man.count {
            var m = base
            var mm = man
            mm[i] ^= flips[i % 3] // a low bit, the varint continuation bit, or the whole byte
            m.replaceManifest(mm)
            attempt(m)
        }
        for n in stride(from: 0, to: man.count, by: 3) {
            var m = base
            m.replaceManifest(Array(man[0..<n]))
            attempt(m)
        }
        #expect(rejected > man.count / 2, "most corruptions are caught (rejected \(rejected), accepted \(accepted))")
    }
}

func find(_ pattern: [UInt8], in bytes: [UInt8]) -> Int? {
    guard pattern.count <= bytes.count else { return nil }
    for i in 0...(bytes.count - pattern.count) where Array(bytes[i..<(i + pattern.count)]) == pattern { return i }
    return nil
}
