import Foundation
import Testing
import VCTensor
import VCFormats
import VCModels
import VCTestSupport
@testable import VideoCrafter

/// Options for the tiny golden model (its YAML and open_clip config).
func tinyOptions(_ output: String, type: WeightType = .f32) -> ImportOptions {
    var o = ImportOptions(output: output)
    o.configPath = Fixtures.path("vc2-tiny-a/config.yaml")
    o.textConfigPath = Fixtures.path("vc2-tiny-a/open_clip_config.json")
    o.type = type
    return o
}

func tinyConfig() throws -> ModelConfig {
    try LVDMConfig.parse(yaml: String(contentsOfFile: Fixtures.path("vc2-tiny-a/config.yaml"), encoding: .utf8),
                         textConfigJSON: String(contentsOfFile: Fixtures.path("vc2-tiny-a/open_clip_config.json"), encoding: .utf8)).config
}

/// Rewrites the tiny model into `path` with `edit` applied to the (name, tensor) list.
func writeModifiedTiny(_ path: String, _ edit: (inout [(String, Tensor)]) throws -> Void) throws {
    let src = try Fixtures.tinyModel()
    var list: [(String, Tensor)] = []
    for e in src.entries { if let t = try src.tensor(named: e.name) { list.append((e.name, t)) } }
    try edit(&list)
    try SafetensorsWriter.write(path: path, tensors: list.map { (name: $0.0, tensor: $0.1) })
}

/// Float32 -> binary16 bits, round to nearest even: Swift's own Float16 conversion (independent of
/// the C kernels under test).
func f16Bits(_ x: Float) -> UInt16 { Float16(x).bitPattern }

/// Float32 -> bfloat16 bits, round to nearest even, written out from the definition.
func bf16Bits(_ x: Float) -> UInt16 {
    let u = x.bitPattern
    if x.isNaN { return UInt16(u >> 16) | 0x40 } // quiet NaN, sign and payload top kept
    let lower = u & 0xFFFF
    var upper = u >> 16
    if lower > 0x8000 || (lower == 0x8000 && (upper & 1) == 1) { upper += 1 }
    return UInt16(upper)
}

func uint16s(_ bytes: [UInt8]) -> [UInt16] {
    stride(from: 0, to: bytes.count, by: 2).map { UInt16(bytes[$0]) | UInt16(bytes[$0 + 1]) << 8 }
}

@Suite("vcconv import / export (job API)")
final class ImportExportTests {
    let tmp: TempDir
    init() throws { tmp = try TempDir() }
    deinit { tmp.remove() }

    @Test func f32ImportKeepsEveryUsedTensorBitForBit() throws {
        var progress: [JobProgress] = []
        let report = try ImportJob(source: Fixtures.path("vc2-tiny-a/model.safetensors"), options: tinyOptions(tmp.path("a.vcm")))
            .run { progress.append($0) }
        let src = try Fixtures.tinyModel()
        let vcm = try VCMFile(path: tmp.path("a.vcm"))
        let config = try tinyConfig()
        let specs = ModelTensors.expected(for: config)
        let used = specs.filter(\.isUsedByInference)
        #expect(report.tensorsWritten == used.count && vcm.tensorNames == used.map(\.name), "canonical order, used tensors only")
        #expect(report.dropped == ["schedule": 13, "vaeEncoder": 74, "skippedTextBlock": 12, "textHead": 2])
        for s in used {
            let a = try #require(try vcm.tensor(named: s.name)), b = try #require(try src.tensor(named: s.name))
            #expect(a.dtype == .f32 && a.shape == b.shape && Data(a.bytes()) == Data(b.bytes()), "\(s.name)")
            #expect(a.storage.isMapped)
        }
        // The manifest makes the file self-contained.
        let m = vcm.manifest
        #expect(m.modelKind == "vc2")
        #expect(try JSONDecoder().decode(ModelConfig.self, from: Data(m.configJSON.utf8)) == config)
        #expect(m.configYAML == (try String(contentsOfFile: Fixtures.path("vc2-tiny-a/config.yaml"), encoding: .utf8)))
        #expect(Data(try vcm.vocabulary()) == Data(try CLIPTokenizer.bundledMergesBytes()))
        // ... and it is enough to tokenize: the golden ids of a prompt from the stored vocabulary.
        let tok = try CLIPTokenizer(mergesText: String(decoding: try vcm.vocabulary(), as: UTF8.self))
        let ids = try #require(try Fixtures.golden().tensor(named: "tokenizer.ids")).floats().map { Int32($0) } // [13, 77]
        let prompts = try #require(Fixtures.goldenJSON()["prompts"] as? [[String: Any]])
        for i in [1, 4] { // "plain" and a unicode prompt
            let text = try #require(prompts[i]["text"] as? String)
            #expect(tok.tokenize(text) == Array(ids[(77 * i)..<(77 * i + 77)]), "prompt \(i)")
        }
        #expect(m.provenance.sourceSHA256Hex == "4462435b824224eb6580883e90c69c6c3214aa6b8e7c24eaa1ebb5399b35c0e7", "fixtures/MANIFEST.md")
        #expect(m.provenance.sourceSize == 22_924_328 && m.provenance.sourceFormat == "safetensors")
        #expect(m.provenance.options.contains(VCMOption("type", "f32")))
        // Progress went through hashing and converting up to the totals.
        #expect(progress.contains { $0.phase == "hashing" && $0.done == $0.total })
        #expect(progress.last.map { $0.phase == "converting" && $0.done == $0.total } == true)
        #expect(tmp.files() == ["a.vcm"])
    }

    @Test func ckptAndSafetensorsImportToIdenticalTensors() throws {
        // Golden A: model.ckpt (torch.save zip + pickle) and model.safetensors hold the same weights.
        for type in [WeightType.f32, .q8] {
            _ = try ImportJob(source: Fixtures.path("vc2-tiny-a/model.ckpt"), options: tinyOptions(tmp.path("c-\(type).vcm"), type: type)).run()
            _ = try ImportJob(source: Fixtures.path("vc2-tiny-a/model.safetensors"), options: tinyOptions(tmp.path("s-\(type).vcm"), type: type)).run()
            let c = try VCMFile(path: tmp.path("c-\(type).vcm")), s = try VCMFile(path: tmp.path("s-\(type).vcm"))
            #expect(c.tensorNames == s.tensorNames && c.tensorNames.count == 1616)
            // Same records (dtype, shape, offset, size, checksum) and the same bytes.
            #expect(c.manifest.tensors == s.manifest.tensors)
            for n in c.tensorNames {
                #expect(try c.tensor(named: n).map { Data($0.bytes()) } == (try s.tensor(named: n).map { Data($0.bytes()) }), "\(n)")
            }
            #expect(c.manifest.provenance.sourceFormat == "ckpt" && c.manifest.configJSON == s.manifest.configJSON)
            #expect(c.manifest.provenance.sourceSHA256Hex == "1b62ca244689041a384a9aaa898c291c62836121780574e0fc7ac32ca2908f79")
        }
    }

    @Test func f32ImportThenExportIsBitExact() throws {
        _ = try ImportJob(source: Fixtures.path("vc2-tiny-a/model.safetensors"), options: tinyOptions(tmp.path("a.vcm"))).run()
        let r = try ExportJob.run(path: tmp.path("a.vcm"), options: ExportOptions(output: tmp.path("a.safetensors")))
        let out = try SafetensorsFile(path: tmp.path("a.safetensors"))
        let src = try Fixtures.tinyModel()
        #expect(r.tensors == out.entries.count)
        for e in out.entries {
            let a = try #require(try out.tensor(named: e.name)), b = try #require(try src.tensor(named: e.name))
            #expect(a.dtype == b.dtype && a.shape == b.shape && Data(a.bytes()) == Data(b.bytes()), "\(e.name)")
        }
        #expect(out.metadata["vcm_model_kind"] == "vc2")
    }

    @Test func zstdImportHoldsTheSameTensors() throws {
        _ = try ImportJob(source: Fixtures.path("vc2-tiny-a/model.safetensors"), options: tinyOptions(tmp.path("plain.vcm"))).run()
        var o = tinyOptions(tmp.path("z.vcm"))
        o.compression = .zstd
        _ = try ImportJob(source: Fixtures.path("vc2-tiny-a/model.safetensors"), options: o).run()
        let a = try VCMFile(path: tmp.path("plain.vcm")), b = try VCMFile(path: tmp.path("z.vcm"))
        #expect(a.tensorNames == b.tensorNames)
        for n in a.tensorNames { #expect(try a.tensor(named: n).map { Data($0.bytes()) } == (try b.tensor(named: n).map { Data($0.bytes()) }), "\(n)") }
        #expect(b.manifest.tensors.contains { $0.compression == .zstd })
    }

    @Test func f16AndBF16RoundToNearestEvenExactly() throws {
        // The tiny weights plus one tensor of awkward values: ties in both formats, subnormals,
        // overflow, signed zeros, infinities, NaN.
        let tiesF16: [Float] = [1 + 1.0 / 2048, 1 + 3.0 / 2048, 1.0009765625 + 1.0 / 2048, 65504, 65520, 65519.99, 1e-8, 6.0e-8, 3.0e-8,
                                -2.98e-8, 5.9604645e-8, 2.9802322e-8]
        let tiesBF16: [Float] = [Float(bitPattern: 0x3F80_8000), Float(bitPattern: 0x3F81_8000), Float(bitPattern: 0x3F80_8001),
                                 Float(bitPattern: 0x7F7F_FFFF), Float(bitPattern: 0x0000_8000), Float(bitPattern: 0x8001_8000)]
        let specials: [Float] = [0, -0.0, .infinity, -.infinity, .nan, 1e30, -1e-30, .leastNonzeroMagnitude]
        let name = "model.diffusion_model.input_blocks.1.0.in_layers.2.weight" // [32, 32, 3, 3]
        try writeModifiedTiny(tmp.path("edge.safetensors")) { list in
            let i = try #require(list.firstIndex { $0.0 == name })
            var v = list[i].1.floats()
            let edge = tiesF16 + tiesBF16 + specials
            for (k, x) in edge.enumerated() { v[k] = x }
            list[i].1 = try Tensor(shape: list[i].1.shape, floats: v)
        }
        let src = try SafetensorsFile(path: tmp.path("edge.safetensors"))
        for type in [WeightType.f16, .bf16] {
            let out = tmp.path("\(type).vcm")
            _ = try ImportJob(source: tmp.path("edge.safetensors"), options: tinyOptions(out, type: type)).run()
            let vcm = try VCMFile(path: out)
            var checked = 0
            for r in vcm.manifest.tensors where r.dtype != .f32 {
                #expect(r.dtype == (type == .f16 ? .f16 : .bf16))
                // Every value of the awkward tensor; the first 512 of every other one (debug builds
                // are slow at element loops, and the conversion kernel has no per-tensor state).
                let limit = r.name == name ? Int.max : 512
                let stored = Array(uint16s(try #require(try vcm.tensor(named: r.name)).bytes()).prefix(limit))
                let ref = Array(try #require(try src.tensor(named: r.name)).floats().prefix(limit))
                let expected = ref.map { type == .f16 ? f16Bits($0) : bf16Bits($0) }
                for (k, (a, e)) in zip(stored, expected).enumerated() where a != e {
                    // NaN payloads may differ; any NaN encoding is a NaN.
                    let isNaN = type == .f16 ? (a & 0x7C00 == 0x7C00 && a & 0x03FF != 0) : (a & 0x7F80 == 0x7F80 && a & 0x007F != 0)
                    if ref[k].isNaN && isNaN { continue }
                    Issue.record("\(type) \(r.name)[\(k)]: \(ref[k]) stored \(String(a, radix: 16)), expected \(String(e, radix: 16))")
                    break
                }
                checked += stored.count
            }
            #expect(checked > 250_000, "values compared: \(checked)")
            // Norms and biases stay f32.
            #expect(vcm.record(named: "model.diffusion_model.input_blocks.1.0.in_layers.0.weight")?.dtype == .f32)
            #expect(vcm.record(named: "model.diffusion_model.input_blocks.1.0.in_layers.2.bias")?.dtype == .f32)
        }
    }

    @Test func q8UNetWeightsWithinTheErrorBudget() throws {
        _ = try ImportJob(source: Fixtures.path("vc2-tiny-a/model.safetensors"), options: tinyOptions(tmp.path("q8.vcm"), type: .q8)).run()
        let vcm = try VCMFile(path: tmp.path("q8.vcm"))
        let src = try Fixtures.tinyModel()
        var se = 0.0, sr = 0.0, worst = 0.0, count = 0
        for r in vcm.manifest.tensors {
            let isUNetMatrix = r.name.hasPrefix(ModelTensors.unetPrefix) && r.shape.count >= 2
            #expect((r.dtype == .q8_0) == isUNetMatrix, "\(r.name) \(r.dtype)")
            guard r.dtype == .q8_0 else { continue }
            let q = try #require(try vcm.tensor(named: r.name)).floats()
            let ref = try #require(try src.tensor(named: r.name)).floats()
            var e = 0.0, s = 0.0
            for (a, b) in zip(q, ref) { e += Double(a - b) * Double(a - b); s += Double(b) * Double(b) }
            se += e; sr += s
            worst = max(worst, (e / s).squareRoot())
            count += 1
        }
        let rel = (se / sr).squareRoot()
        #expect(count == 575)
        // Issue budget: <= 0.6% (ggml q8_0 gives 0.54% on these weights: golden README, q8_0_unet).
        #expect(rel <= 0.006, "relative RMS \(rel)")
        #expect(rel > 0.004, "a real quantization happened (\(rel))")
        #expect(worst < 0.012, "worst single tensor \(worst)")
        // Text and VAE matrices are f16, embeddings f16, vectors f32.
        #expect(vcm.record(named: "cond_stage_model.model.transformer.resblocks.0.attn.in_proj_weight")?.dtype == .f16)
        #expect(vcm.record(named: "cond_stage_model.model.token_embedding.weight")?.dtype == .f16)
        #expect(vcm.record(named: "first_stage_model.decoder.conv_in.weight")?.dtype == .f16)
        #expect(vcm.record(named: "first_stage_model.decoder.conv_in.bias")?.dtype == .f32)
        // The dequantizing export gives f32 back with the same values the runtime sees.
        _ = try ExportJob.run(path: tmp.path("q8.vcm"), options: ExportOptions(output: tmp.path("q8.safetensors")))
        let ex = try SafetensorsFile(path: tmp.path("q8.safetensors"))
        let n = "model.diffusion_model.out.2.weight"
        #expect(try ex.tensor(named: n)?.dtype == .f32)
        #expect(try ex.tensor(named: n)?.floats() == (try vcm.tensor(named: n)?.floats()))
    }

    @Test func everyMismatchIsListedByNameInOneError() throws {
        try writeModifiedTiny(tmp.path("broken.safetensors")) { list in
            // missing: drop a used tensor; misshapen: transpose a matrix; unexpected: add one;
            // unusable: an integer tensor where a weight belongs.
            list.removeAll { $0.0 == "model.diffusion_model.out.2.bias" }
            let i = try #require(list.firstIndex { $0.0 == "model.diffusion_model.time_embed.0.weight" })
            list[i].1 = try list[i].1.reshaped([32, 128])
            list.append(("model.diffusion_model.extra.weight", Tensor(zeros: [3])))
            let j = try #require(list.firstIndex { $0.0 == "model.diffusion_model.out.0.bias" })
            list[j].1 = try Tensor(shape: [32], dtype: .i32, bytes: [UInt8](repeating: 0, count: 128))
        }
        let out = tmp.path("broken.vcm")
        #expect {
            try ImportJob(source: self.tmp.path("broken.safetensors"), options: tinyOptions(out)).run()
        } throws: { error in
            guard let e = error as? ImportCheckError else { return false }
            let d = e.description
            return e.missing == ["model.diffusion_model.out.2.bias [4]"]
                && e.unexpected == ["model.diffusion_model.extra.weight"]
                && e.misshapen == ["model.diffusion_model.time_embed.0.weight: expected [128, 32], found [32, 128]"]
                && e.unusable.count == 1 && e.unusable[0].hasPrefix("model.diffusion_model.out.0.bias: i32")
                && d.hasPrefix(self.tmp.path("broken.safetensors")) && d.contains("config.yaml")
        }
        #expect(tmp.files() == ["broken.safetensors"], "no output left behind")
    }

    @Test func alternateSpellingsAreCanonicalized() throws {
        try writeModifiedTiny(tmp.path("alt.safetensors")) { list in
            for i in list.indices { list[i].0 = "_forward_module." + list[i].0.replacingOccurrences(of: ".temopral_conv.", with: ".temporal_conv.") }
        }
        _ = try ImportJob(source: tmp.path("alt.safetensors"), options: tinyOptions(tmp.path("alt.vcm"))).run()
        let names = try VCMFile(path: tmp.path("alt.vcm")).tensorNames
        #expect(names.contains("model.diffusion_model.input_blocks.1.0.temopral_conv.conv1.2.weight"))
        #expect(!names.contains { $0.contains("temporal_conv") || $0.hasPrefix("_forward_module.") })
        // Both spellings at once is an error naming the duplicate.
        try writeModifiedTiny(tmp.path("both.safetensors")) { list in
            let i = try #require(list.firstIndex { $0.0.contains(".temopral_conv.") })
            list.append((list[i].0.replacingOccurrences(of: ".temopral_conv.", with: ".temporal_conv."), list[i].1))
        }
        #expect {
            try ImportJob(source: self.tmp.path("both.safetensors"), options: tinyOptions(self.tmp.path("both.vcm"))).run()
        } throws: { ($0 as? ImportCheckError)?.unexpected.first?.contains("another spelling of") == true }
    }

    @Test func scheduleBuffersMustAgreeWithTheConfig() throws {
        let yaml = try String(contentsOfFile: Fixtures.path("vc2-tiny-a/config.yaml"), encoding: .utf8)
            .replacingOccurrences(of: "linear_end: 0.012", with: "linear_end: 0.013")
        try yaml.write(toFile: tmp.path("wrong.yaml"), atomically: true, encoding: .utf8)
        var o = tinyOptions(tmp.path("s.vcm"))
        o.configPath = tmp.path("wrong.yaml")
        #expect {
            try ImportJob(source: Fixtures.path("vc2-tiny-a/model.safetensors"), options: o).run()
        } throws: { error in
            guard let e = error as? ImportCheckError else { return false }
            return e.missing.isEmpty && e.misshapen.isEmpty && e.schedule.contains { $0.hasPrefix("betas:") && $0.contains("linear_end") }
                && !e.schedule.contains { $0.hasPrefix("scale_arr") }
        }
        #expect(!tmp.files().contains("s.vcm"))
    }

    @Test func withoutAConfigTheShapesMustMatchAPreset() throws {
        #expect {
            try ImportJob(source: Fixtures.path("vc2-tiny-a/model.safetensors"), options: ImportOptions(output: self.tmp.path("p.vcm"))).run()
        } throws: { "\($0)".contains("no built-in preset matches") && "\($0)".contains("closest") }
        var o = ImportOptions(output: tmp.path("p.vcm"))
        o.preset = .vc2_512
        #expect {
            try ImportJob(source: Fixtures.path("vc2-tiny-a/model.safetensors"), options: o).run()
        } throws: { ($0 as? ImportCheckError)?.misshapen.isEmpty == false }
        #expect(tmp.files().isEmpty)
    }

    @Test func outputRules() throws {
        let src = Fixtures.path("vc2-tiny-a/model.safetensors")
        _ = FileManager.default.createFile(atPath: tmp.path("exists.vcm"), contents: Data("keep".utf8))
        #expect { try ImportJob(source: src, options: tinyOptions(self.tmp.path("exists.vcm"))).run() } throws: { "\($0)".contains("already exists") }
        #expect(try String(contentsOfFile: tmp.path("exists.vcm"), encoding: .utf8) == "keep")
        var o = tinyOptions(tmp.path("exists.vcm"))
        o.force = true
        o.hashSource = false
        _ = try ImportJob(source: src, options: o).run()
        #expect(try VCMFile(path: tmp.path("exists.vcm")).manifest.provenance.sourceSHA256.isEmpty)
        // The input is never the output, even with force.
        try FileManager.default.copyItem(atPath: src, toPath: tmp.path("in.safetensors"))
        var same = tinyOptions(tmp.path("in.safetensors"))
        same.force = true
        #expect { try ImportJob(source: self.tmp.path("in.safetensors"), options: same).run() } throws: { "\($0)".contains("input") }
        #expect(try SafetensorsFile(path: tmp.path("in.safetensors")).entries.count == 1717)
        // Export refuses to overwrite too.
        #expect { try ExportJob.run(path: self.tmp.path("exists.vcm"), options: ExportOptions(output: self.tmp.path("in.safetensors"))) }
            throws: { "\($0)".contains("already exists") }
        #expect(tmp.files() == ["exists.vcm", "in.safetensors"])
    }

    @Test func keepUnusedStoresEverything() throws {
        var o = tinyOptions(tmp.path("all.vcm"))
        o.keepUnused = true
        let r = try ImportJob(source: Fixtures.path("vc2-tiny-a/model.safetensors"), options: o).run()
        #expect(r.tensorsWritten == 1717 && r.dropped.isEmpty)
        #expect(try VCMFile(path: tmp.path("all.vcm")).tensor(named: "betas")?.count == 1000)
    }

    @Test func inspectReportsMetadataTensorsAndStats() throws {
        _ = try ImportJob(source: Fixtures.path("vc2-tiny-a/model.safetensors"), options: tinyOptions(tmp.path("a.vcm"), type: .q8)).run()
        var o = InspectOptions()
        o.stats = true
        o.verify = true
        let r = try InspectJob.run(path: tmp.path("a.vcm"), options: o)
        #expect(r.format == "vcm" && r.tensors.count == 1616)
        #expect(r.metadata.contains(["model kind", "vc2"]) && r.metadata.contains(["checksums", "all 1616 verified"]))
        let vcm = try VCMFile(path: tmp.path("a.vcm"))
        let row = try #require(r.tensors.first { $0.name == "model.diffusion_model.time_embed.0.weight" })
        let rec = try #require(vcm.record(named: row.name))
        #expect(row.dtype == "q8_0" && row.shape == [128, 32] && row.bytes == 128 * 34 && row.offset == vcm.header.dataOffset + rec.offset)
        // Stats against a direct computation.
        let v = try #require(try vcm.tensor(named: row.name)).floats().map(Double.init)
        let mean = v.reduce(0, +) / Double(v.count)
        let std = (v.map { ($0 - mean) * ($0 - mean) }.reduce(0, +) / Double(v.count)).squareRoot()
        let s = try #require(row.stats)
        #expect(s.min == v.min() && s.max == v.max() && abs(s.mean - mean) < 1e-9 && abs(s.std - std) < 1e-7)
        // JSON for scripts.
        let json = try JSONEncoder().encode(r)
        #expect(try JSONDecoder().decode(InspectReport.self, from: json) == r)
        // safetensors inspection.
        let st = try InspectJob.run(path: Fixtures.path("vc2-tiny-a/model.safetensors"))
        #expect(st.format == "safetensors" && st.tensors.count == 1717 && st.metadata.contains(["metadata oracle_bundle", "vc2-tiny-a"]))
        let ck = try InspectJob.run(path: Fixtures.path("vc2-tiny-a/model.ckpt"), options: o)
        #expect(ck.format == "ckpt" && ck.tensors.count == 1717 && ck.metadata.contains(["wrapper", "state_dict"]))
        // The same tensor has the same statistics in both files.
        let a = try #require(ck.tensors.first { $0.name == "model.diffusion_model.out.2.weight" })
        let b = try #require(try InspectJob.run(path: Fixtures.path("vc2-tiny-a/model.safetensors"), options: o).tensors.first { $0.name == a.name })
        #expect(a.stats == b.stats && a.stats != nil && a.shape == [4, 32, 3, 3] && a.dtype == "f32")
    }
}

@Suite("vcconv import of a diffusers folder")
final class DiffusersImportTests {
    let tmp: TempDir
    init() throws { tmp = try TempDir() }
    deinit { tmp.remove() }

    @Test func sd21TinyFolderImportsToTheLDMTensors() throws {
        let folder = Fixtures.path("sd21-tiny/diffusers")
        let r = try ImportJob(source: folder, options: ImportOptions(output: tmp.path("sd.vcm"))).run()
        #expect(r.kind == .sd21 && r.tensorsWritten == 904 - 74, "used tensors: all but the 74 VAE-encoder ones")
        var o = ImportOptions(output: tmp.path("all.vcm"))
        o.keepUnused = true
        let all = try ImportJob(source: folder, options: o).run()
        #expect(all.tensorsWritten == 904 && all.dropped.isEmpty)
        let vcm = try VCMFile(path: tmp.path("all.vcm"))
        let yamlConfig = try LVDMConfig.parse(yaml: String(contentsOfFile: Fixtures.path("sd21-tiny/sd21-tiny-ldm.yaml"), encoding: .utf8),
                                              textConfigJSON: String(contentsOfFile: Fixtures.path("sd21-tiny/open_clip_config.json"), encoding: .utf8)).config
        #expect(try JSONDecoder().decode(ModelConfig.self, from: Data(vcm.manifest.configJSON.utf8)) == yamlConfig)
        #expect(vcm.manifest.provenance.sourceFormat == "diffusers")
        // Every tensor against the fixture's mapping.tsv, read straight from the diffusers files.
        let text = try String(contentsOfFile: Fixtures.path("sd21-tiny/mapping.tsv"), encoding: .utf8)
        var files: [String: SafetensorsFile] = [:]
        var checked = 0
        for line in text.split(separator: "\n").dropFirst() {
            let f = line.split(separator: "\t", omittingEmptySubsequences: false).map(String.init)
            guard f[3] != "-" else { #expect(vcm.record(named: f[0]) == nil); continue }
            let file = try files[f[3]] ?? SafetensorsFile(path: folder + "/" + f[3])
            files[f[3]] = file
            let src = try #require(try file.tensor(named: f[4]))
            let ours = try #require(try vcm.tensor(named: f[0]), "\(f[0])")
            var expected = Data(src.bytes())
            var actual = Data(ours.bytes())
            if f[2] != "all" {
                let bounds = f[2].split(separator: ":").compactMap { Int($0) }
                let rowBytes = ours.byteCount / (ours.shape.first ?? 1)
                actual = actual.subdata(in: (bounds[0] * rowBytes)..<(bounds[1] * rowBytes))
            } else {
                expected = Data(src.bytes())
            }
            #expect(actual == expected, "\(f[0]) <- \(f[4]) (\(f[6]))")
            #expect(ours.shape == f[1].split(separator: "x").compactMap { Int($0) })
            checked += 1
        }
        #expect(checked == 916)
    }

    @Test func aMissingOrExtraFolderTensorIsNamed() throws {
        // A copy of the folder whose text encoder lacks one k_proj and has an extra tensor.
        let folder = tmp.path("sd")
        try FileManager.default.copyItem(atPath: Fixtures.path("sd21-tiny/diffusers"), toPath: folder)
        let te = folder + "/text_encoder/model.safetensors"
        let src = try SafetensorsFile(path: Fixtures.path("sd21-tiny/diffusers/text_encoder/model.safetensors"))
        var list: [(name: String, tensor: Tensor)] = []
        for e in src.entries where e.name != "text_model.encoder.layers.1.self_attn.k_proj.bias" {
            list.append((e.name, try #require(try src.tensor(named: e.name))))
        }
        list.append(("text_model.extra", Tensor(zeros: [2])))
        try FileManager.default.removeItem(atPath: te)
        try SafetensorsWriter.write(path: te, tensors: list)
        #expect {
            try ImportJob(source: folder, options: ImportOptions(output: self.tmp.path("x.vcm"))).run()
        } throws: { error in
            guard let e = error as? ImportCheckError else { return false }
            return e.unexpected == ["text_encoder/text_model.extra"]
                && e.missing == ["cond_stage_model.model.transformer.resblocks.1.attn.in_proj_bias [96]"]
                && e.unusable.contains { $0.contains("self_attn.k_proj.bias") }
        }
        #expect(!tmp.files().contains("x.vcm"))
    }
}
