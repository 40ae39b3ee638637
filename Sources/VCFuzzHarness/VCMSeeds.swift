import VCFormats
import VCTensor

/// The seed .vcm files of the `vcm` fuzz target (Fuzz/corpus/vcm/), written with `VCMWriter`.
/// Regenerate with `VC_WRITE_FUZZ_SEEDS=1 swift test --skip-build --disable-xctest --filter
/// FuzzCorpusTests/writeVCMSeeds` (docs/fuzzing.md); the files are committed.
public enum VCMSeeds {
    static func floats(_ n: Int, _ seed: UInt32) -> [Float] {
        var s = seed
        return (0..<n).map { _ in
            s = s &* 1_664_525 &+ 1_013_904_223
            return Float(Int32(bitPattern: s) >> 8) / Float(1 << 23)
        }
    }

    static func manifest(vocabulary: String?) throws -> VCMManifest {
        var m = VCMManifest()
        m.modelKind = "vc2"
        m.configJSON = "{\"kind\":\"vc2\"}"
        m.configYAML = "model:\n  target: lvdm.models.ddpm3d.LatentDiffusion\n"
        m.textConfigJSON = "{}"
        if let vocabulary {
            let v = Array(vocabulary.utf8)
            m.vocabularyZstd = try Zstd.compress(v)
            m.vocabularySize = v.count
            m.vocabularyCRC32C = CRC32C.checksum(v)
        }
        m.provenance.sourceName = "model.ckpt"
        m.provenance.sourceSize = 4096
        m.provenance.sourceSHA256 = (0..<32).map { UInt8($0) }
        m.provenance.sourceFormat = "ckpt"
        m.provenance.converter = "vcconv"
        m.provenance.converterVersion = "0.1.0"
        m.provenance.options = [VCMOption("type", "q8")]
        m.provenance.createdUnix = 1_700_000_000
        return m
    }

    /// Writes the seeds into `dir` (which must exist): name -> file.
    public static func write(to dir: String) throws {
        let w = try Tensor(shape: [2, 32], floats: floats(64, 1))
        let sets: [(String, [(String, Tensor, VCMCompression)], String?)] = [
            ("empty.vcm", [], nil),
            ("f32.vcm", [("model.w", w, .none)], "#version: 0.2\nh e\n"),
            ("mixed.vcm", [
                ("a.f32", w, .none),
                ("b.f16", try w.converted(to: .f16), .none),
                ("c.bf16.zstd", try Tensor(shape: [2, 32], floats: (0..<64).map { Float($0 % 5) }).converted(to: .bf16), .zstd),
                ("d.q8", try w.converted(to: .q8_0), .none),
                ("e.zeros.zstd", Tensor(zeros: [256]), .zstd),
                ("f.scalar", try Tensor(shape: [], floats: [0.5]), .none),
                ("g.i32", try Tensor(shape: [2], dtype: .i32, bytes: [1, 0, 0, 0, 255, 255, 255, 255]), .none),
            ], "#version: 0.2\nh e\nt h\n"),
            ("zstd-only.vcm", [("z", Tensor(zeros: [4, 64]), .zstd)], nil),
        ]
        for (name, tensors, vocab) in sets {
            // Alignment 64 keeps the seeds far below the fuzzer's 8 KB input limit.
            let v = try VCMWriter(path: dir + "/" + name, overwrite: true, alignment: 64)
            for (n, t, c) in tensors { try v.add(n, t, compression: c) }
            try v.finish(manifest(vocabulary: vocab))
        }
    }
}
