import Foundation
import Testing
import VCFormats
import VCModels
import VCTensor
import VCTestSupport
@testable import VideoCrafter

private func loraPath(_ name: String) -> String { Fixtures.path("vc2-tiny-a/lora/\(name)") }

/// Overrides some tensors of a base source.
private struct Overlay: TensorSource {
    var base: any TensorSource
    var overrides: [String: Tensor]
    var tensorNames: [String] { base.tensorNames }
    func tensor(named name: String) throws -> Tensor? { try overrides[name] ?? base.tensor(named: name) }
}

/// Writes a minimal safetensors file (f32 tensors, sorted names) for generated LoRAs.
private func writeSafetensors(_ tensors: [String: Tensor], metadata: [String: String] = [:], to path: String) throws {
    var header: [String: Any] = [:]
    var data: [UInt8] = []
    for name in tensors.keys.sorted() {
        let t = try tensors[name]!.converted(to: .f32)
        header[name] = ["dtype": "F32", "shape": t.shape, "data_offsets": [data.count, data.count + t.byteCount]]
        data += t.bytes()
    }
    if !metadata.isEmpty { header["__metadata__"] = metadata }
    let json = try JSONSerialization.data(withJSONObject: header, options: [.sortedKeys])
    var out = withUnsafeBytes(of: UInt64(json.count).littleEndian) { Array($0) }
    out += json
    out += data
    try Data(out).write(to: URL(fileURLWithPath: path))
}

@Suite struct MergeLoRAJobTests {
    /// kohya at 0.7 and PEFT in one pass: every changed tensor equals its expected_merged_*
    /// tensor (atol 1e-6), every other tensor is written byte-identical, in the base's order.
    @Test func twoLoRAsInOnePassReproduceTheExpectedMerges() throws {
        let base = try Fixtures.tinyModel()
        let job = MergeLoRAJob(base: base, config: try tinyConfig(),
                               loras: [LoRASpec(path: loraPath("kohya.safetensors"), multiplier: 0.7),
                                       try LoRASpec(parsing: loraPath("peft.safetensors"))])
        let sink = MemoryTensorSink()
        var calls = 0
        let report = try job.run(into: sink) { done, total in calls += 1; #expect(done <= total) }
        #expect(calls == base.tensorNames.count)
        #expect(sink.tensorNames == base.tensorNames)

        var expected: [String: Tensor] = [:]
        for file in ["expected_merged_kohya_m0.7.safetensors", "expected_merged_peft.safetensors"] {
            let f = try SafetensorsFile(path: loraPath(file))
            for n in f.tensorNames { expected[n] = try f.tensor(named: n) }
        }
        #expect(expected.count == 45)
        #expect(report.changedTensors == expected.keys.sorted())
        for name in base.tensorNames {
            let got = try #require(try sink.tensor(named: name))
            if let want = expected[name] {
                let c = Comparison(got.floats(), want.floats())
                #expect(c.maxAbs <= 1e-6, "\(name): \(c)")
            } else {
                #expect(got.bytes() == (try base.tensor(named: name))?.bytes(), "\(name) changed")
            }
        }

        #expect(report.files.map(\.name) == ["kohya.safetensors", "peft.safetensors"])
        #expect(report.files.map(\.sha256) == ["932614241c65e3960b43c59a50c150e1ff9a7f747a1ec2c132b34ffa3829b492",
                                              "379d363891a84a7b28f69955e78d4004591e42b1e1beb7190fb5cc40f0e9d558"])
        #expect(report.files.map(\.multiplier) == [0.7, 1.0])
        #expect(report.files.map(\.scheme) == ["kohya", "peft"])
        #expect(report.files[0].matched.count == 40 && report.files[1].matched.count == 7)
        #expect(report.files.allSatisfy { $0.unmatched.isEmpty && $0.skippedTemporal.isEmpty })
        let q = try #require(report.files[0].matched.first { $0.module == "lora_te_text_model_encoder_layers_0_self_attn_v_proj" })
        #expect(q.rows == "64:96" && q.rank == 4 && q.alpha == 2 && abs(q.scale - 0.35) < 1e-15)
        #expect(report.files[1].matched.allSatisfy { $0.scale == 2 })
        #expect(report.problems.isEmpty && report.warnings.isEmpty)
        let text = report.text()
        #expect(text.contains("kohya.safetensors (kohya, multiplier 0.7, sha256 9326"))
        #expect(text.contains("40 modules matched, 0 skipped (temporal), 0 unmatched"))
        #expect(text.contains("45 tensors change"))
        let decoded = try JSONDecoder().decode(MergeLoRAReport.self, from: Data(try report.json().utf8))
        #expect(decoded == report)
    }

    /// A LoRA touching a temporal module: by default its spatial part is merged and the temporal
    /// delta is skipped (reported, with a warning), the temporal tensor written unchanged;
    /// --include-temporal merges it.
    @Test func temporalDeltasAreSkippedUnlessIncluded() throws {
        let tmp = try TempDir(prefix: "vc-merge-lora")
        defer { tmp.remove() }
        let dir = tmp.dir
        let path = dir + "/temporal.safetensors"
        let down = try Tensor(shape: [2, 32], floats: (0..<64).map { Float($0 % 7) * 0.01 })
        let up = try Tensor(shape: [32, 2], floats: (0..<64).map { Float($0 % 5) * -0.02 })
        try writeSafetensors(["lora_unet_init_attn_0_transformer_blocks_0_attn1_to_q.lora_down.weight": try Tensor(shape: [2, 128], floats: [Float](repeating: 0.01, count: 256)),
                              "lora_unet_init_attn_0_transformer_blocks_0_attn1_to_q.lora_up.weight": try Tensor(shape: [128, 2], floats: [Float](repeating: 0.02, count: 256)),
                              "lora_unet_down_blocks_0_attentions_0_proj_in.lora_down.weight": down,
                              "lora_unet_down_blocks_0_attentions_0_proj_in.lora_up.weight": up], to: path)
        let base = try Fixtures.tinyModel()
        let name = "model.diffusion_model.init_attn.0.transformer_blocks.0.attn1.to_q.weight"
        var job = MergeLoRAJob(base: base, config: try tinyConfig(), loras: [LoRASpec(path: path)])
        let plan = try job.plan()
        #expect(plan.report.files[0].skippedTemporal.map(\.tensor) == [name])
        #expect(plan.report.files[0].matched.map(\.tensor) == ["model.diffusion_model.input_blocks.1.1.proj_in.weight"])
        #expect(plan.report.problems.isEmpty)
        #expect(plan.report.warnings.count == 1 && plan.report.warnings[0].contains("--include-temporal"))
        #expect(plan.report.text().contains("1 modules matched, 1 skipped (temporal), 0 unmatched"))

        var sink = MemoryTensorSink()
        var report = try job.run(into: sink)
        #expect(report.changedTensors == ["model.diffusion_model.input_blocks.1.1.proj_in.weight"])
        #expect(try sink.tensor(named: name)?.bytes() == base.tensor(named: name)?.bytes())

        job.options.includeTemporal = true
        sink = MemoryTensorSink()
        report = try job.run(into: sink)
        #expect(report.changedTensors.count == 2 && report.files[0].skippedTemporal.isEmpty && report.warnings.isEmpty)
        let w = try #require(try base.tensor(named: name)).floats()
        let got = try #require(try sink.tensor(named: name)).floats()
        // delta = up @ down = 2 * (0.02 * 0.01) everywhere, scale alpha/r = 1.
        #expect(Comparison(got, w.map { $0 + 0.0004 }).maxAbs <= 1e-6)
    }

    /// Unmatched modules: the plan lists them as a problem, the run refuses before writing,
    /// --allow-unmatched merges the rest.
    @Test func unmatchedModulesAreAnErrorUnlessAllowed() throws {
        let tmp = try TempDir(prefix: "vc-merge-lora")
        defer { tmp.remove() }
        let dir = tmp.dir
        let path = dir + "/extra.safetensors"
        let down = try Tensor(shape: [2, 32], floats: (0..<64).map { Float($0 % 7) * 0.01 })
        let up = try Tensor(shape: [32, 2], floats: (0..<64).map { Float($0 % 5) * -0.02 })
        try writeSafetensors(["lora_unet_down_blocks_0_attentions_0_proj_in.lora_down.weight": down,
                              "lora_unet_down_blocks_0_attentions_0_proj_in.lora_up.weight": up,
                              "lora_te_text_model_encoder_layers_7_mlp_fc1.lora_down.weight": down,
                              "lora_te_text_model_encoder_layers_7_mlp_fc1.lora_up.weight": try Tensor(shape: [128, 2], floats: [Float](repeating: 0.01, count: 256))],
                             to: path)
        var job = MergeLoRAJob(base: try Fixtures.tinyModel(), config: try tinyConfig(), loras: [LoRASpec(path: path)])
        let plan = try job.plan()
        #expect(plan.report.files[0].unmatched == ["lora_te_text_model_encoder_layers_7_mlp_fc1"])
        #expect(plan.report.problems.count == 1 && plan.report.problems[0].contains("--allow-unmatched"))
        let sink = MemoryTensorSink()
        #expect(throws: LoRAError.unmatched(file: "extra.safetensors", modules: ["lora_te_text_model_encoder_layers_7_mlp_fc1"])) {
            try job.run(into: sink)
        }
        #expect(sink.tensorNames.isEmpty)
        job.options.allowUnmatched = true
        #expect(try job.run(into: sink).changedTensors == ["model.diffusion_model.input_blocks.1.1.proj_in.weight"])
    }

    /// A q8_0 base is refused unless requantizing; requantized, touched rows are re-quantized
    /// from the f32 merge and untouched rows keep their bytes.
    @Test func quantizedBaseNeedsRequantize() throws {
        let tiny = try Fixtures.tinyModel()
        let name = "cond_stage_model.model.transformer.resblocks.1.attn.in_proj_weight" // kohya touches k rows only
        let q8 = try #require(try tiny.tensor(named: name)).converted(to: .q8_0)
        let base = Overlay(base: tiny, overrides: [name: q8])
        var job = MergeLoRAJob(base: base, config: try tinyConfig(), loras: [LoRASpec(path: loraPath("kohya.safetensors"))])
        let sink = MemoryTensorSink()
        let e = #expect(throws: LoRAError.self) { try job.run(into: sink) }
        #expect(e == .quantizedBase(tensor: name, dtype: "q8_0"))
        #expect(e?.description.contains("--requantize") == true)

        job.options.requantize = true
        let report = try job.run(into: sink)
        #expect(report.warnings.count == 1 && report.warnings[0].contains(name))
        let got = try #require(try sink.tensor(named: name))
        #expect(got.dtype == .q8_0)
        #expect(try got.rows(0, 32).bytes() == q8.rows(0, 32).bytes())
        #expect(try got.rows(64, 32).bytes() == q8.rows(64, 32).bytes())
        let want = try #require(try SafetensorsFile(path: loraPath("expected_merged_kohya_m1.0.safetensors")).tensor(named: name))
        let c = Comparison(try got.rows(32, 32).floats(), try want.rows(32, 32).floats())
        #expect(c.relRMS < 0.01, "\(c)") // q8_0 round trip of the merged rows
        #expect(try got.rows(32, 32).bytes() != q8.rows(32, 32).bytes())
    }

    /// Malformed generated LoRA files are refused with a message naming the key.
    @Test func malformedFilesAreRefusedNamingTheKey() throws {
        let tmp = try TempDir(prefix: "vc-merge-lora")
        defer { tmp.remove() }
        let dir = tmp.dir
        let k = "lora_unet_mid_block_attentions_0_proj_out"
        let down = try Tensor(shape: [4, 64], floats: (0..<256).map { Float($0 % 9) * 0.01 })
        let up = try Tensor(shape: [64, 4], floats: (0..<256).map { Float($0 % 4) * 0.01 })
        var nan = down.floats(); nan[3] = .nan
        let cases: [(String, [String: Tensor], String, String)] = [
            ("shape", ["\(k).lora_down.weight": try Tensor(shape: [4, 65], floats: [Float](repeating: 0, count: 260)), "\(k).lora_up.weight": up],
             "\(k).lora_down.weight", "shape mismatch"),
            ("rank", ["\(k).lora_down.weight": down, "\(k).lora_up.weight": try Tensor(shape: [64, 5], floats: [Float](repeating: 0, count: 320))],
             "\(k).lora_up.weight", "rank mismatch"),
            ("nan", ["\(k).lora_down.weight": try Tensor(shape: [4, 64], floats: nan), "\(k).lora_up.weight": up],
             "\(k).lora_down.weight", "not finite"),
            ("unknown", ["\(k).lora_down.weight": down, "\(k).lora_up.weight": up, "vae.encoder.conv_in.weight": up],
             "vae.encoder.conv_in.weight", "fits no known LoRA scheme"),
        ]
        for (tag, tensors, key, text) in cases {
            let path = "\(dir)/\(tag).safetensors"
            try writeSafetensors(tensors, to: path)
            let job = MergeLoRAJob(base: try Fixtures.tinyModel(), config: try tinyConfig(), loras: [LoRASpec(path: path)])
            let sink = MemoryTensorSink()
            let e = #expect(throws: LoRAError.self, "\(tag)") { try job.run(into: sink) }
            #expect(e?.description.contains("'\(key)'") == true, "\(tag): \(String(describing: e))")
            #expect(e?.description.contains(text) == true, "\(tag): \(String(describing: e))")
            #expect(e?.description.hasPrefix("\(tag).safetensors:") == true, "\(tag): \(String(describing: e))")
            #expect(sink.tensorNames.isEmpty)
        }
        // Not a LoRA file: a diffusers folder, a missing file, a text file.
        for (path, text) in [(Fixtures.path("sd21-tiny/diffusers"), "not a LoRA file"), ("\(dir)/missing.safetensors", "no such file"),
                             (Fixtures.path("vc2-tiny-a/config.yaml"), "not a safetensors file")] {
            let job = MergeLoRAJob(base: try Fixtures.tinyModel(), config: try tinyConfig(), loras: [LoRASpec(path: path)])
            do {
                _ = try job.plan()
                Issue.record("\(path) accepted as a LoRA")
            } catch {
                #expect("\(error)".contains(path) && "\(error)".contains(text), "\(error)")
            }
        }
    }

    @Test func loraSpecParsing() throws {
        #expect(try LoRASpec(parsing: "style.safetensors") == LoRASpec(path: "style.safetensors", multiplier: 1))
        #expect(try LoRASpec(parsing: "style.safetensors:0.8") == LoRASpec(path: "style.safetensors", multiplier: 0.8))
        #expect(try LoRASpec(parsing: "/a:b/style.safetensors:-0.5") == LoRASpec(path: "/a:b/style.safetensors", multiplier: -0.5))
        #expect(try LoRASpec(parsing: "/a:b/style.safetensors") == LoRASpec(path: "/a:b/style.safetensors", multiplier: 1))
        #expect(throws: MergeLoRAError.self) { try LoRASpec(parsing: ":0.5") }
        #expect(throws: MergeLoRAError.self) { try LoRASpec(parsing: "x.safetensors:inf") }
        #expect(throws: MergeLoRAError.self) { try LoRASpec(parsing: "") }
    }
}

@Suite struct MergeLoRAVCMTests {
    let tmp: TempDir
    init() throws { tmp = try TempDir() }

    func importTiny(_ name: String, type: WeightType = .f32, loras: [LoRASpec] = []) throws -> String {
        var o = tinyOptions(tmp.path(name), type: type)
        o.loras = loras
        _ = try ImportJob(source: Fixtures.path("vc2-tiny-a/model.safetensors"), options: o).run()
        return tmp.path(name)
    }

    /// merge-lora on .vcm: merged tensors as expected, the rest byte-identical, configuration and
    /// vocabulary kept, each LoRA recorded (name, sha256, multiplier); a dry run writes nothing.
    @Test func mergeIntoVCM() throws {
        defer { tmp.remove() }
        let base = try importTiny("base.vcm")
        var o = MergeLoRAOptions()
        o.output = tmp.path("merged.vcm")
        o.dryRun = true
        let dry = try MergeLoRAFiles.run(base: base, loras: [LoRASpec(path: loraPath("kohya.safetensors"), multiplier: 0.7)], options: o)
        #expect(dry.dryRun && dry.changedTensors.count == 38)
        #expect(!FileManager.default.fileExists(atPath: tmp.path("merged.vcm")))

        o.dryRun = false
        let report = try MergeLoRAFiles.run(base: base, loras: [LoRASpec(path: loraPath("kohya.safetensors"), multiplier: 0.7)], options: o)
        #expect(!report.dryRun && report.changedTensors.count == 38)
        let a = try VCMFile(path: base), b = try VCMFile(path: tmp.path("merged.vcm"))
        try b.verifyAll()
        #expect(b.tensorNames == a.tensorNames)
        let expected = try SafetensorsFile(path: loraPath("expected_merged_kohya_m0.7.safetensors"))
        for name in a.tensorNames {
            let got = try #require(try b.tensor(named: name))
            if let want = try expected.tensor(named: name) {
                #expect(Comparison(got.floats(), want.floats()).maxAbs <= 1e-6, "\(name)")
            } else {
                #expect(got.bytes() == (try a.tensor(named: name))?.bytes(), "\(name)")
            }
        }
        #expect(b.manifest.configJSON == a.manifest.configJSON)
        #expect(b.manifest.vocabularyZstd == a.manifest.vocabularyZstd)
        #expect(b.manifest.provenance.sourceSHA256 == a.manifest.provenance.sourceSHA256)
        let opts = b.manifest.provenance.options
        #expect(opts.contains(VCMOption("lora", "kohya.safetensors sha256=932614241c65e3960b43c59a50c150e1ff9a7f747a1ec2c132b34ffa3829b492 multiplier=0.7")))
        #expect(opts.contains(VCMOption("lora-base", "base.vcm")))

        // The output exists now: refused without force, and a .safetensors base is refused.
        #expect(throws: (any Error).self) { try MergeLoRAFiles.run(base: base, loras: [LoRASpec(path: loraPath("peft.safetensors"))], options: o) }
        var p = MergeLoRAOptions()
        p.output = tmp.path("x.vcm")
        do {
            _ = try MergeLoRAFiles.run(base: Fixtures.path("vc2-tiny-a/model.safetensors"), loras: [LoRASpec(path: loraPath("peft.safetensors"))], options: p)
            Issue.record("a safetensors base was accepted")
        } catch {
            #expect("\(error)".contains("import the checkpoint first"))
        }
        #expect(!FileManager.default.fileExists(atPath: tmp.path("x.vcm")))
    }

    /// import --lora --type q8 in one pass equals import f32, merge-lora --type q8 (bit for bit):
    /// both merge in f32 and quantize afterwards.
    @Test func importWithLoRAEqualsImportThenMerge() throws {
        defer { tmp.remove() }
        let lora = LoRASpec(path: loraPath("kohya.safetensors"), multiplier: 1.0)
        let onePass = try importTiny("one.vcm", type: .q8, loras: [lora])
        let base = try importTiny("f32.vcm")
        var o = MergeLoRAOptions()
        o.output = tmp.path("two.vcm")
        o.type = .q8
        _ = try MergeLoRAFiles.run(base: base, loras: [lora], options: o)
        let a = try VCMFile(path: onePass), b = try VCMFile(path: tmp.path("two.vcm"))
        #expect(a.tensorNames == b.tensorNames)
        var q8 = 0
        for name in a.tensorNames {
            let x = try #require(try a.tensor(named: name)), y = try #require(try b.tensor(named: name))
            #expect(x.dtype == y.dtype && x.bytes() == y.bytes(), "\(name)")
            if x.dtype == .q8_0 { q8 += 1 }
        }
        #expect(q8 > 100)
        #expect(a.manifest.provenance.options.contains { $0.key == "lora" && $0.value.hasPrefix("kohya.safetensors sha256=9326") })
        #expect(b.manifest.provenance.options.contains(VCMOption("type", "q8")))

        // The q8 .vcm as a base: refused unless --requantize; never re-typed to a wider type.
        var q = MergeLoRAOptions()
        q.output = tmp.path("q.vcm")
        let e = #expect(throws: LoRAError.self) { try MergeLoRAFiles.run(base: onePass, loras: [LoRASpec(path: loraPath("peft.safetensors"))], options: q) }
        if case .quantizedBase? = e {} else { Issue.record("expected a quantized-base refusal, got \(String(describing: e))") }
        q.lora.requantize = true
        let r = try MergeLoRAFiles.run(base: onePass, loras: [LoRASpec(path: loraPath("peft.safetensors"))], options: q)
        #expect(r.warnings.count == 7)
        q.output = tmp.path("q16.vcm")
        q.type = .f16
        #expect(throws: FormatError.self) { try MergeLoRAFiles.run(base: onePass, loras: [LoRASpec(path: loraPath("peft.safetensors"))], options: q) }
    }
}
