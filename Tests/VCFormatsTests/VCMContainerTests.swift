import Foundation
import Testing
import VCTensor
@testable import VCFormats

/// A fresh temporary folder, removed by `cleanup()`.
struct Scratch {
    let dir: String
    init() throws {
        dir = FileManager.default.temporaryDirectory.appendingPathComponent("vcm-test-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    }
    func path(_ name: String) -> String { dir + "/" + name }
    func files() -> [String] { ((try? FileManager.default.contentsOfDirectory(atPath: dir)) ?? []).sorted() }
    func cleanup() { try? FileManager.default.removeItem(atPath: dir) }
}

/// Deterministic pseudo-random floats (xorshift), so tests need no fixtures for small cases.
func pseudoRandom(_ n: Int, seed: UInt64 = 0x9E3779B97F4A7C15, scale: Float = 1) -> [Float] {
    var s = seed
    return (0..<n).map { _ in
        s ^= s << 13; s ^= s >> 7; s ^= s << 17
        return (Float(s % 2_000_001) / 1_000_000 - 1) * scale
    }
}

/// A small file with one tensor of every stored kind.
func sampleTensors() throws -> [(String, Tensor, VCMCompression)] {
    let w = try Tensor(shape: [8, 40], floats: pseudoRandom(320))
    return [
        ("a.f32", w, .none),
        ("b.f16", try w.converted(to: .f16), .none),
        ("c.bf16", try Tensor(shape: [8, 40], floats: (0..<320).map { Float($0 % 7) }).converted(to: .bf16), .zstd),
        ("d.q8", try w.converted(to: .q8_0), .none),
        ("e.conv", try Tensor(shape: [4, 3, 3, 3], floats: pseudoRandom(108, seed: 7)).converted(to: .q8_0), .zstd),
        ("f.zeros.zstd", Tensor(zeros: [1000]), .zstd),
        ("g.scalar", try Tensor(shape: [], floats: [4.25]), .none),
        ("h.i32", try Tensor(shape: [3], dtype: .i32, bytes: [1, 0, 0, 0, 255, 255, 255, 255, 7, 0, 0, 0]), .none),
    ]
}

func sampleManifest() -> VCMManifest {
    var m = VCMManifest()
    m.modelKind = "vc2"
    m.configJSON = "{\"kind\":\"vc2\"}"
    m.configYAML = "model:\n  target: x\n"
    m.textConfigJSON = "{}"
    m.preset = ""
    let vocab = Array("#version: 0.2\nh e\n".utf8)
    m.vocabularyZstd = (try? Zstd.compress(vocab)) ?? []
    m.vocabularySize = vocab.count
    m.vocabularyCRC32C = CRC32C.checksum(vocab)
    m.provenance.sourceName = "model.safetensors"
    m.provenance.sourceSize = 12345
    m.provenance.sourceSHA256 = Array(0..<32)
    m.provenance.sourceFormat = "safetensors"
    m.provenance.converter = "vcconv"
    m.provenance.converterVersion = "0.1.0"
    m.provenance.options = [VCMOption("type", "q8"), VCMOption("compress", "zstd")]
    m.provenance.createdUnix = 1_700_000_000
    return m
}

@discardableResult
func writeSample(_ path: String) throws -> [(String, Tensor, VCMCompression)] {
    let ts = try sampleTensors()
    let w = try VCMWriter(path: path)
    for (n, t, c) in ts { try w.add(n, t, compression: c) }
    try w.finish(sampleManifest())
    return ts
}

@Suite("VCM container: round trips")
struct VCMRoundTripTests {
    @Test func tensorsAndManifestRoundTrip() throws {
        let s = try Scratch(); defer { s.cleanup() }
        let ts = try writeSample(s.path("m.vcm"))
        let f = try VCMFile(path: s.path("m.vcm"))
        #expect(f.tensorNames == ts.map(\.0))
        for (name, t, c) in ts {
            let r = try #require(f.record(named: name))
            let back = try #require(try f.tensor(named: name))
            #expect(back.shape == t.shape && back.dtype == t.dtype)
            #expect(back.bytes() == t.bytes(), "bytes of \(name)")
            #expect(r.crc32c == t.crc32c())
            #expect((f.header.dataOffset + r.offset) % 64 == 0, "\(name) is aligned for in-place use")
            if c == .none {
                #expect(r.compression == .none && back.storage.isMapped, "\(name) is a zero-copy window")
            }
        }
        // The zero tensor compresses; zstd is recorded only where it pays off.
        #expect(f.record(named: "f.zeros.zstd")?.compression == .zstd)
        #expect((f.record(named: "f.zeros.zstd")?.storedSize ?? 0) < 100)
        var expected = sampleManifest()
        expected.tensors = f.manifest.tensors
        #expect(f.manifest == expected)
        #expect(String(decoding: try f.vocabulary(), as: UTF8.self) == "#version: 0.2\nh e\n")
        try f.verifyAll()
        // Nothing but the file itself is left in the folder.
        #expect(s.files() == ["m.vcm"])
    }

    @Test func headerLayoutIsAsSpecified() throws {
        let s = try Scratch(); defer { s.cleanup() }
        try writeSample(s.path("m.vcm"))
        let bytes = [UInt8](try Data(contentsOf: URL(fileURLWithPath: s.path("m.vcm"))))
        #expect(Array(bytes[0..<8]) == [0x89, 0x56, 0x43, 0x4D, 0x0D, 0x0A, 0x1A, 0x0A])
        func le(_ o: Int, _ w: Int) -> Int { (0..<w).reduce(0) { $0 | Int(bytes[o + $1]) << (8 * $1) } }
        #expect(le(8, 4) == 1)   // version
        #expect(le(12, 4) == 64) // header size
        #expect(le(16, 8) == 4096) // data offset: the first page after the header (default alignment)
        #expect(bytes[64..<4096].allSatisfy { $0 == 0 }) // zero padding up to it
        let dataSize = le(24, 8), mOff = le(32, 8), mSize = le(40, 8)
        #expect(4096 + dataSize == mOff && mOff + mSize == bytes.count)
        #expect(UInt32(le(48, 4)) == CRC32C.checksum(Array(bytes[mOff..<(mOff + mSize)])))
        #expect(UInt32(le(60, 4)) == CRC32C.checksum(Array(bytes[0..<60])))
    }

    @Test func crc32cKnownValue() {
        // RFC 3720 appendix B.4: CRC-32C of 32 zero bytes is 0x8A9136AA; of "123456789" 0xE3069283.
        #expect(CRC32C.checksum([UInt8](repeating: 0, count: 32)) == 0x8A91_36AA)
        #expect(CRC32C.checksum(Array("123456789".utf8)) == 0xE306_9283)
    }

    @Test func sha256MatchesFIPSVectors() throws {
        func hexDigest(_ b: [UInt8]) -> String { var h = SHA256(); h.update(b); return h.finalize().map { hex2($0) }.joined() }
        #expect(hexDigest([]) == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
        #expect(hexDigest(Array("abc".utf8)) == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
        #expect(hexDigest(Array("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq".utf8))
                == "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1")
        // One million 'a' fed in uneven pieces (exercises the partial-block path).
        var h = SHA256()
        var left = 1_000_000, step = 1
        while left > 0 { let n = min(step, left); h.update([UInt8](repeating: 0x61, count: n)); left -= n; step = step * 3 % 997 + 1 }
        #expect(h.finalize().map { hex2($0) }.joined() == "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0")
        // The SHA-NI and portable block functions agree at every length around the block size.
        if SHA256.hardware() {
            defer { SHA256.hardware(true) }
            for n in [0, 1, 3, 55, 56, 57, 63, 64, 65, 119, 120, 127, 128, 129, 1000, 65_537] {
                let data = pseudoRandom(n, seed: UInt64(n) + 1).map { UInt8(truncatingIfNeeded: Int(($0 + 1) * 127)) }
                var a = SHA256(); a.update(data)
                let hw = a.finalize()
                SHA256.hardware(false)
                var b = SHA256(); b.update(data)
                let sw = b.finalize()
                SHA256.hardware(true)
                #expect(hw == sw, "length \(n)")
            }
            SHA256.hardware(false)
            #expect(hexDigest(Array("abc".utf8)) == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
        }
        // The file helper agrees with the streaming one.
        let s = try Scratch(); defer { s.cleanup() }
        try Data("abc".utf8).write(to: URL(fileURLWithPath: s.path("abc")))
        #expect(try SHA256.file(MappedFile(path: s.path("abc"))).map { hex2($0) }.joined() == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
    }
}

@Suite("VCM container: atomic writes")
struct VCMAtomicWriteTests {
    @Test func refusesExistingOutputWithoutOverwrite() throws {
        let s = try Scratch(); defer { s.cleanup() }
        try Data("old".utf8).write(to: URL(fileURLWithPath: s.path("m.vcm")))
        #expect { try VCMWriter(path: s.path("m.vcm")) } throws: { "\($0)".contains("already exists") }
        #expect(try String(contentsOfFile: s.path("m.vcm"), encoding: .utf8) == "old")
        try writeSample(s.path("other.vcm"))
        // With overwrite the file is replaced, atomically.
        let w = try VCMWriter(path: s.path("m.vcm"), overwrite: true)
        try w.add("x", Tensor(zeros: [2]))
        #expect(try String(contentsOfFile: s.path("m.vcm"), encoding: .utf8) == "old", "untouched until finish")
        try w.finish(sampleManifest())
        #expect(try VCMFile(path: s.path("m.vcm")).tensorNames == ["x"])
        #expect(s.files() == ["m.vcm", "other.vcm"])
    }

    @Test func neverOverwritesAnInputEvenWithForce() throws {
        let s = try Scratch(); defer { s.cleanup() }
        try writeSample(s.path("in.vcm"))
        let before = try Data(contentsOf: URL(fileURLWithPath: s.path("in.vcm")))
        #expect { try VCMWriter(path: s.dir + "/./in.vcm", overwrite: true, protecting: [s.path("in.vcm")]) }
            throws: { "\($0)".contains("input") }
        #expect(try Data(contentsOf: URL(fileURLWithPath: s.path("in.vcm"))) == before)
        #expect(s.files() == ["in.vcm"])
    }

    @Test func cancelAndErrorsLeaveNothingBehind() throws {
        let s = try Scratch(); defer { s.cleanup() }
        let w = try VCMWriter(path: s.path("m.vcm"))
        try w.add("x", Tensor(zeros: [1 << 16]))
        #expect(s.files().count == 1 && s.files()[0].hasPrefix(".m.vcm.tmp-"), "a hidden temporary file while writing")
        #expect(PendingOutputs.shared.current.contains { $0.hasPrefix(s.dir) })
        #expect(throws: FormatError.self) { try w.add("x", Tensor(zeros: [1])) } // duplicate name
        w.cancel()
        #expect(s.files().isEmpty)
        #expect(!PendingOutputs.shared.current.contains { $0.hasPrefix(s.dir) })
        // A writer dropped without finish removes its temporary file too.
        do { let w2 = try VCMWriter(path: s.path("n.vcm")); try w2.add("y", Tensor(zeros: [3])) }
        #expect(s.files().isEmpty)
        // removeAll (what the CLI's signal handler calls) removes files still being written.
        let w3 = try VCMWriter(path: s.path("o.vcm"))
        #expect(s.files().count == 1)
        #expect(PendingOutputs.shared.removeAll { $0.hasPrefix(s.dir) } == 1) // tests run in parallel: only ours
        #expect(s.files().isEmpty)
        w3.cancel()
    }
}
