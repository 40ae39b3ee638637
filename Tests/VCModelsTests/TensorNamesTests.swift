import Foundation
import Testing
import VCTensor
import VCFormats
import VCTestSupport
@testable import VCModels

/// The repository root (Tests/VCModelsTests/this file -> repo).
let repoRoot: URL = {
    var u = URL(fileURLWithPath: #filePath)
    for _ in 0..<3 { u.deleteLastPathComponent() }
    return u
}()

/// Rows of a tab-separated key list: name (column 0), shape (column 1: "1280x320", "scalar") and
/// column `extra`, one row per distinct name, in file order.
func readKeyList(_ relative: String, extra: Int = 2) throws -> [(name: String, shape: [Int], extra: String)] {
    let text = try String(contentsOf: repoRoot.appendingPathComponent(relative), encoding: .utf8)
    var seen = Set<String>()
    return text.split(separator: "\n").dropFirst().compactMap { line in
        let f = line.split(separator: "\t", omittingEmptySubsequences: false).map(String.init)
        guard seen.insert(f[0]).inserted else { return nil }
        let shape = f[1] == "scalar" ? [] : f[1].split(separator: "x").map { Int($0) ?? -1 }
        return (f[0], shape, f.count > extra ? f[extra] : "")
    }
}

/// The official VideoCrafter2 key list (fixtures copy; formats/tensor-names holds the same file).
let vc2KeyList = "fixtures/videocrafter2-state-dict-keys.tsv"

func tinyConfig() throws -> LoadedConfig {
    let yaml = try String(contentsOfFile: Fixtures.path("vc2-tiny-a/config.yaml"), encoding: .utf8)
    let json = try String(contentsOfFile: Fixtures.path("vc2-tiny-a/open_clip_config.json"), encoding: .utf8)
    return try LVDMConfig.parse(yaml: yaml, textConfigJSON: json)
}

@Suite("Canonical tensor names")
struct TensorNamesTests {
    @Test func vc2PresetMatchesTheOfficialKeyList() throws {
        let official = try readKeyList(vc2KeyList)
        #expect(official.count == 2039)
        // The documented copy in formats/ is the same data.
        #expect(try Data(contentsOf: repoRoot.appendingPathComponent(vc2KeyList))
                == Data(contentsOf: repoRoot.appendingPathComponent("formats/tensor-names/videocrafter2-state-dict-keys.tsv")))
        let ours = ModelTensors.expected(for: .vc2_512)
        // Same names, same shapes, same (state-dict) order.
        #expect(ours.map(\.name) == official.map(\.name))
        for (o, e) in zip(ours, official) where o.shape != e.shape {
            Issue.record("\(o.name): \(o.shape) vs official \(e.shape)")
        }
        // What inference uses: UNet, text blocks 0-22 + embeddings + ln_final, VAE decoder.
        let used = ours.filter(\.isUsedByInference)
        #expect(used.count == 2039 - 13 - 108 - 12 - 2)
        #expect(ours.filter { $0.use == .vaeEncoder }.count == 108)
        #expect(ours.filter { $0.use == .skippedTextBlock }.allSatisfy { $0.name.contains("resblocks.23.") })
        #expect(Set(ours.filter { $0.use == .textHead }.map(\.name)) == ["cond_stage_model.model.text_projection", "cond_stage_model.model.logit_scale"])
        // Parameter count from the spec (videocrafter2-spec.md 0.): 1,850,970,924 + 13,400 buffer floats.
        #expect(ours.filter { $0.component != .schedule }.reduce(0) { $0 + $1.shape.reduce(1, *) } == 1_850_970_924)
        #expect(ours.filter { $0.component == .schedule }.reduce(0) { $0 + $1.shape.reduce(1, *) } == 13_400)
        #expect(ours.filter { $0.component == .unet }.reduce(0) { $0 + $1.shape.reduce(1, *) } == 1_413_284_420)
    }

    @Test func tinyConfigMatchesTheTinyCheckpoint() throws {
        let c = try tinyConfig().config
        let model = try Fixtures.tinyModel()
        let ours = ModelTensors.expected(for: c)
        #expect(ours.count == 1717)
        let theirs = Dictionary(uniqueKeysWithValues: model.entries.map { ($0.name, $0.shape) })
        #expect(Set(ours.map(\.name)) == Set(theirs.keys))
        for o in ours where theirs[o.name] != o.shape {
            Issue.record("\(o.name): \(o.shape) vs checkpoint \(theirs[o.name] ?? [])")
        }
    }

    @Test func sd21TinyMatchesItsLDMKeyList() throws {
        let yaml = try String(contentsOfFile: Fixtures.path("sd21-tiny/sd21-tiny-ldm.yaml"), encoding: .utf8)
        let json = try String(contentsOfFile: Fixtures.path("sd21-tiny/open_clip_config.json"), encoding: .utf8)
        let loaded = try LVDMConfig.parse(yaml: yaml, textConfigJSON: json)
        #expect(loaded.config.kind == .sd21)
        // mapping.tsv: ldm_key, ldm_shape, ldm_rows, diffusers_file, diffusers_key, diffusers_shape,
        // transform, used_by_inference (several rows for the fused in_proj keys).
        let keys = try readKeyList("fixtures/sd21-tiny/mapping.tsv", extra: 7)
        #expect(keys.count == 930)
        let ours = ModelTensors.expectedByName(for: loaded.config)
        #expect(Set(ours.keys) == Set(keys.map(\.name)))
        for k in keys {
            guard let o = ours[k.name] else { continue }
            #expect(o.shape == k.shape, "\(k.name)")
            // 'yes' there means "the diffusers folder has it", which includes the VAE encoder.
            let expectedUse: Set<TensorUse> = k.extra == "yes" ? [.inference, .vaeEncoder] : k.extra == "derived" ? [.schedule] : [.skippedTextBlock, .textHead]
            #expect(expectedUse.contains(o.use), "\(k.name): \(o.use) vs \(k.extra)")
        }
        #expect(ours.values.filter { $0.use == .schedule }.count == 12)
        #expect(ours.values.filter { $0.use == .skippedTextBlock }.allSatisfy { $0.name.contains("resblocks.3.") })
    }

    @Test func presetDetectionByShapes() throws {
        let vc2 = Dictionary(uniqueKeysWithValues: try readKeyList(vc2KeyList).map { ($0.name, $0.shape) })
        #expect(ModelPreset.matching(vc2) == [.vc2_512])
        // Without the unused tensors (as a pruned file would be) it still matches.
        let pruned = vc2.filter { !$0.key.hasPrefix("first_stage_model.encoder.") && !$0.key.contains("resblocks.23.") }
        #expect(ModelPreset.matching(pruned) == [.vc2_512])
        // SD 2.1 base and 768-v have the same tensors: both match (the importer asks which).
        let sd = Dictionary(uniqueKeysWithValues: ModelTensors.expected(for: .sd21_512).map { ($0.name, $0.shape) })
        #expect(ModelPreset.matching(sd) == [.sd21_512, .sd21_768v])
        // One wrong shape, one missing used tensor, or one unexplained tensor: no preset.
        var bad = vc2; bad["model.diffusion_model.out.2.weight"] = [4, 320, 1, 1]
        #expect(ModelPreset.matching(bad).isEmpty)
        var missing = vc2; missing["model.diffusion_model.out.2.weight"] = nil
        #expect(ModelPreset.matching(missing).isEmpty)
        var extra = vc2; extra["model.diffusion_model.extra"] = [1]
        #expect(ModelPreset.matching(extra).isEmpty)
        // The tiny model is no preset.
        let tiny = Dictionary(uniqueKeysWithValues: try Fixtures.tinyModel().entries.map { ($0.name, $0.shape) })
        #expect(ModelPreset.matching(tiny).isEmpty)
    }

    @Test func knownSpellingsAgainstTheOfficialKeyList() throws {
        let official = try readKeyList(vc2KeyList).map(\.name)
        let all = Set(official)
        // Canonical names are fixed points.
        for n in official { #expect(KnownSpellings.canonical(n) == n, "\(n) must stay as it is") }
        // Each rule maps its alternate spelling of real keys back onto real keys.
        for rule in KnownSpellings.rules {
            let affected = official.filter { rule.isPrefix ? true : $0.split(separator: ".").contains(Substring(rule.canonical)) }
            #expect(!affected.isEmpty, "rule \(rule.alternate) -> \(rule.canonical) concerns some official key")
            for n in affected {
                let alt = rule.isPrefix ? rule.alternate + n : n.replacingSegment(rule.canonical, with: rule.alternate)
                #expect(alt != n)
                let back = KnownSpellings.canonical(alt)
                #expect(back == n && all.contains(back), "\(alt) -> \(back)")
            }
        }
        #expect(official.filter { $0.contains(".temopral_conv.") }.count == 352)
        #expect(KnownSpellings.canonical("model.diffusion_model.input_blocks.1.0.temporal_conv.conv1.2.weight")
                == "model.diffusion_model.input_blocks.1.0.temopral_conv.conv1.2.weight")
        // Only whole segments are rewritten.
        #expect(KnownSpellings.canonical("x.temporal_convolution.y") == "x.temporal_convolution.y")
        for n in KnownSpellings.ignorable { #expect(!all.contains(n)) }
    }
}

@Suite("LVDM / LDM configuration")
struct ConfigTests {
    /// configs/inference_t2v_512_v2.0.yaml as documented in shared/research/videocrafter2-spec.md 1.
    static let vc2YAML = """
    model:
      target: lvdm.models.ddpm3d.LatentDiffusion
      params:
        linear_start: 0.00085
        linear_end: 0.012
        num_timesteps_cond: 1
        timesteps: 1000
        first_stage_key: video
        cond_stage_key: caption
        cond_stage_trainable: false
        conditioning_key: crossattn
        image_size: [40, 64]
        channels: 4
        scale_by_std: false
        scale_factor: 0.18215
        use_ema: false
        uncond_type: empty_seq
        use_scale: true
        scale_b: 0.7
        unet_config:
          target: lvdm.modules.networks.openaimodel3d.UNetModel
          params:
            in_channels: 4
            out_channels: 4
            model_channels: 320
            attention_resolutions: [4, 2, 1]
            num_res_blocks: 2
            channel_mult: [1, 2, 4, 4]
            num_head_channels: 64
            transformer_depth: 1
            context_dim: 1024
            use_linear: true
            use_checkpoint: true
            temporal_conv: true
            temporal_attention: true
            temporal_selfatt_only: true
            use_relative_position: false
            use_causal_attention: false
            temporal_length: 16
            addition_attention: true
            fps_cond: true
        first_stage_config:
          target: lvdm.models.autoencoder.AutoencoderKL
          params:
            embed_dim: 4
            monitor: val/rec_loss
            ddconfig:
              double_z: true
              z_channels: 4
              resolution: 512
              in_channels: 3
              out_ch: 3
              ch: 128
              ch_mult: [1, 2, 4, 4]
              num_res_blocks: 2
              attn_resolutions: []
              dropout: 0.0
            lossconfig:
              target: torch.nn.Identity
        cond_stage_config:
          target: lvdm.modules.encoders.condition.FrozenOpenCLIPEmbedder
          params:
            freeze: true
            layer: penultimate
    """

    @Test func officialVC2ConfigIsThePreset() throws {
        let loaded = try LVDMConfig.parse(yaml: Self.vc2YAML)
        #expect(loaded.config == ModelConfig.vc2_512)
        #expect(loaded.warnings.isEmpty, "\(loaded.warnings)")
        #expect(loaded.textArch == "ViT-H-14")
        try loaded.config.validate()
    }

    @Test func tinyConfigValues() throws {
        let loaded = try tinyConfig()
        let c = loaded.config
        #expect(c.kind == .vc2)
        #expect(c.unet.modelChannels == 32 && c.unet.channelMult == [1, 1, 1, 2] && c.unet.numHeadChannels == 16)
        #expect(c.unet.temporalLength == 5 && c.unet.contextDim == 32 && c.unet.fpsCond && c.unet.additionAttention)
        #expect(c.text.width == 32 && c.text.heads == 2 && c.text.layers == 3 && c.text.embedDim == 32 && c.text.layer == "penultimate")
        #expect(c.vae.ch == 32 && c.vae.chMult == [1, 1, 2, 2] && c.vae.numResBlocks == 1 && c.vae.resolution == 128)
        #expect(c.diffusion.useScale && c.diffusion.scaleB == 0.7 && c.diffusion.channels == 4)
        #expect(loaded.textArch == "vc2-tiny-a-text")
        #expect(loaded.warnings.isEmpty, "\(loaded.warnings)")
        try c.validate()
    }

    @Test func omittedKeysMeanTheUpstreamDefaults() throws {
        // use_scale, layer, temporal flags omitted: LatentDiffusion/UNetModel/FrozenOpenCLIPEmbedder defaults.
        var y = Self.vc2YAML
        for line in ["    use_scale: true\n", "    scale_b: 0.7\n", "        layer: penultimate", "        use_relative_position: false\n",
                     "        temporal_conv: true\n"] {
            y = y.replacingOccurrences(of: line, with: "")
        }
        let c = try LVDMConfig.parse(yaml: y).config
        #expect(!c.diffusion.useScale && c.diffusion.scaleB == 0.3)
        #expect(c.text.layer == "last")
        #expect(c.unet.useRelativePosition && !c.unet.temporalConv)
        #expect(c.kind == .vc1)
        // The structure still derives (VideoCrafter1 relative-position tables appear) ...
        let names = ModelTensors.expected(for: c).map(\.name)
        #expect(names.contains("model.diffusion_model.input_blocks.1.2.transformer_blocks.0.attn1.relative_position_k.embeddings_table"))
        #expect(!names.contains { $0.contains("temopral_conv") })
        // ... but the runtime refuses it for now.
        #expect(throws: ConfigError.self) { try c.validate() }
    }

    @Test func errorsNameTheKey() {
        func message(_ yaml: String, json: String? = nil) -> String {
            do { _ = try LVDMConfig.parse(yaml: yaml, textConfigJSON: json); return "" } catch { return "\(error)" }
        }
        #expect(message(Self.vc2YAML.replacingOccurrences(of: "        model_channels: 320\n", with: ""))
                .contains("model.params.unet_config.params.model_channels is missing"))
        #expect(message(Self.vc2YAML.replacingOccurrences(of: "channel_mult: [1, 2, 4, 4]\n        num_head", with: "channel_mult: [1, two]\n        num_head"))
                .contains("channel_mult[1] must be an integer"))
        #expect(message(Self.vc2YAML.replacingOccurrences(of: "fps_cond: true", with: "fps_cond: true\n        use_image_attention: true"))
                .contains("use_image_attention is true"))
        #expect(message(Self.vc2YAML.replacingOccurrences(of: "layer: penultimate", with: "layer: penultimate\n        arch: my-tower"))
                .contains("arch 'my-tower' is not built in"))
        #expect(message(Self.vc2YAML.replacingOccurrences(of: "linear_end: 0.012", with: "linear_end: .nan"))
                .contains("linear_end must be a finite number"))
        #expect(message(Self.vc2YAML.replacingOccurrences(of: "scale_factor: 0.18215", with: "scale_factor: -.inf"))
                .contains("scale_factor must be a finite number"))
        #expect(message("model: [1, 2]").contains("model must be a mapping"))
        #expect(message(": : :\n  - ]").contains("YAML"))
        #expect(message(Self.vc2YAML.replacingOccurrences(of: "ddpm3d.LatentDiffusion", with: "ddpm3d.Other")).contains("model.target"))
        #expect(message(Self.vc2YAML, json: "{\"embed_dim\": 8, \"text_cfg\": {\"width\": 64, \"heads\": 2, \"layers\": 2, \"ls_init_value\": 0.1}}")
                .contains("ls_init_value"))
    }

    @Test func unknownKeysAreReported() throws {
        let y = Self.vc2YAML.replacingOccurrences(of: "fps_cond: true", with: "fps_cond: true\n        frobnicate: 3")
        let loaded = try LVDMConfig.parse(yaml: y)
        #expect(loaded.warnings == ["model.params.unet_config.params.frobnicate is not understood and was ignored"])
    }

    @Test func configJSONRoundTrips() throws {
        let c = try tinyConfig().config
        let data = try JSONEncoder().encode(c)
        #expect(try JSONDecoder().decode(ModelConfig.self, from: data) == c)
    }
}

@Suite("Schedule buffers")
struct ScheduleBufferTests {
    @Test func recomputedBuffersMatchTheCheckpoint() throws {
        let c = try tinyConfig().config
        let model = try Fixtures.tinyModel()
        let ours = ScheduleBuffers.compute(c.diffusion)
        #expect(Set(ours.keys) == Set(ModelTensors.scheduleBufferNames + ["scale_arr"]))
        for (name, values) in ours {
            let stored = try #require(try model.tensor(named: name)).floats()
            let dev = try #require(ScheduleBuffers.deviation(stored: stored, expected: values))
            #expect(dev.relative <= ScheduleBuffers.tolerance, "\(name): \(dev)")
        }
        // Spot values (videocrafter2-spec.md 3.1).
        let ac = try #require(ours["alphas_cumprod"])
        #expect(abs(ac[0] - 0.99915) < 1e-9 && abs(ac[1] - 0.998296) < 1e-6 && abs(ac[999] - 0.0046601) < 1e-7)
        #expect(ours["scale_arr"]?.count == 1400 && ours["scale_arr"]?[399] == 0.7 && ours["scale_arr"]?[0] == 1)
    }

    @Test func aWrongConfigIsDetected() throws {
        var d = try tinyConfig().config.diffusion
        d.linearEnd = 0.0121
        let stored = try #require(try Fixtures.tinyModel().tensor(named: "betas")).floats()
        let dev = try #require(ScheduleBuffers.deviation(stored: stored, expected: ScheduleBuffers.compute(d)["betas"] ?? []))
        #expect(dev.relative > 1e-3)
    }
}

@Suite("Quantization policy")
struct QuantizationPolicyTests {
    func spec(_ name: String) throws -> TensorSpec { try #require(ModelTensors.expectedByName(for: .vc2_512)[name]) }

    @Test func defaultTable() throws {
        let unetW = try spec("model.diffusion_model.input_blocks.1.0.temopral_conv.conv1.2.weight")
        let unetB = try spec("model.diffusion_model.input_blocks.1.0.temopral_conv.conv1.2.bias")
        let gn = try spec("model.diffusion_model.input_blocks.1.0.in_layers.0.weight")
        let textW = try spec("cond_stage_model.model.transformer.resblocks.0.attn.in_proj_weight")
        let tok = try spec("cond_stage_model.model.token_embedding.weight")
        let vaeW = try spec("first_stage_model.decoder.conv_in.weight")
        let cases: [(WeightType, [DType])] = [
            (.f32, [.f32, .f32, .f32, .f32, .f32, .f32]),
            (.f16, [.f16, .f32, .f32, .f16, .f32, .f16]),
            (.bf16, [.bf16, .f32, .f32, .bf16, .f32, .bf16]),
            (.q8, [.q8_0, .f32, .f32, .f16, .f16, .f16]),
        ]
        for (type, expected) in cases {
            let p = QuantizationPolicy(type: type)
            #expect([unetW, unetB, gn, textW, tok, vaeW].map { p.dtype(for: $0) } == expected, "\(type)")
        }
        // Under q8 the UNet matrices are q8_0 and nothing else is.
        let q8 = QuantizationPolicy(type: .q8)
        for s in ModelTensors.expected(for: .vc2_512) {
            #expect((q8.dtype(for: s) == .q8_0) == (s.component == .unet && s.role == .weight), "\(s.name)")
        }
    }

    @Test func overrides() throws {
        let p = QuantizationPolicy(type: .q8, overrides: [
            try QuantizationPolicy.parseOverride("cond_stage_model.*.mlp.*.weight=q8"),
            try QuantizationPolicy.parseOverride("*.out.2.weight=f32"),
        ])
        #expect(p.dtype(for: try spec("cond_stage_model.model.transformer.resblocks.3.mlp.c_fc.weight")) == .q8_0)
        #expect(p.dtype(for: try spec("cond_stage_model.model.transformer.resblocks.3.attn.out_proj.weight")) == .f16)
        #expect(p.dtype(for: try spec("model.diffusion_model.out.2.weight")) == .f32)
        try p.validate(ModelTensors.expected(for: .vc2_512))
        let typo = QuantizationPolicy(type: .q8, overrides: [try QuantizationPolicy.parseOverride("nothing.*=f16")])
        #expect(throws: ConfigError.self) { try typo.validate(ModelTensors.expected(for: .vc2_512)) }
        let vector = QuantizationPolicy(type: .f32, overrides: [try QuantizationPolicy.parseOverride("*.norm.bias=q8")])
        #expect(throws: ConfigError.self) { try vector.validate(ModelTensors.expected(for: .vc2_512)) }
        #expect(throws: ConfigError.self) { try QuantizationPolicy.parseOverride("x=int4") }
        #expect(throws: ConfigError.self) { try QuantizationPolicy.parseOverride("no-equals") }
    }

    @Test func globMatching() {
        #expect(Glob.matches("*", ""))
        #expect(Glob.matches("a.*.c", "a.b.x.c"))
        #expect(Glob.matches("a?c", "abc") && !Glob.matches("a?c", "ac"))
        #expect(!Glob.matches("*.weight", "x.bias"))
        #expect(Glob.matches("*a*b*", "xxaxxbxx") && !Glob.matches("*a*b", "xxaxxbxx"))
    }
}

@Suite("Bundled vocabulary")
struct BundledVocabularyTests {
    @Test func isTheOpenCLIPMergesText() throws {
        let text = try CLIPTokenizer.bundledMergesBytes()
        var h = SHA256()
        h.update(text)
        // fixtures/MANIFEST.md: sha256 of the truncated merges text.
        #expect(h.finalize().map { String(format: "%02x", $0) }.joined() == "685491abbdad36159d094ecdc23bebc0dd53f8d1df35c4d74ef6036db2ba7572")
        let lines = String(decoding: text, as: UTF8.self).split(separator: "\n", omittingEmptySubsequences: false)
        // The upstream file's first line really is `"bpe_simple_vocab_16e6.txt#version: 0.2` (open_clip skips it).
        #expect(lines.first?.hasSuffix("#version: 0.2") == true)
        #expect(lines.filter { !$0.isEmpty }.count == 48_895)
    }
}

@Suite("diffusers names and configuration")
struct DiffusersConfigTests {
    func text(_ rel: String) throws -> String { try String(contentsOfFile: Fixtures.path(rel), encoding: .utf8) }

    func diffusersConfig() throws -> LoadedConfig {
        try DiffusersConfig.parse(unet: text("sd21-tiny/diffusers/unet/config.json"), vae: text("sd21-tiny/diffusers/vae/config.json"),
                                  textEncoder: text("sd21-tiny/diffusers/text_encoder/config.json"),
                                  scheduler: text("sd21-tiny/diffusers/scheduler/scheduler_config.json"))
    }

    @Test func configEqualsTheLDMYAMLConfig() throws {
        let fromYAML = try LVDMConfig.parse(yaml: text("sd21-tiny/sd21-tiny-ldm.yaml"), textConfigJSON: text("sd21-tiny/open_clip_config.json")).config
        let fromDiffusers = try diffusersConfig()
        #expect(fromDiffusers.config == fromYAML)
        #expect(fromDiffusers.warnings.isEmpty, "\(fromDiffusers.warnings)")
    }

    @Test func mappingMatchesEveryRowOfTheFixture() throws {
        // The canonical tensors a diffusers folder holds: those of the table with diffusers sources.
        let table = try ModelTensorNames(config: try diffusersConfig().config)
        let mapping = Dictionary(uniqueKeysWithValues: table.tensors.filter { !$0.sources.isEmpty }.map { ($0.name, $0) })
        let text = try String(contentsOfFile: Fixtures.path("sd21-tiny/mapping.tsv"), encoding: .utf8)
        var rowsByKey: [String: [[String]]] = [:]
        for line in text.split(separator: "\n").dropFirst() {
            let f = line.split(separator: "\t", omittingEmptySubsequences: false).map(String.init)
            rowsByKey[f[0], default: []].append(f)
        }
        var mapped = 0
        for (key, rows) in rowsByKey {
            let fromFolder = rows.filter { $0[3] != "-" }
            guard !fromFolder.isEmpty else {
                #expect(mapping[key] == nil, "\(key) has no diffusers source")
                continue
            }
            let s = try #require(mapping[key], "\(key)")
            mapped += 1
            // rows are listed in ldm_rows order (0:32, 32:64, 64:96 for q, k, v).
            let ordered = fromFolder.sorted { Int($0[2].split(separator: ":").first ?? "0") ?? 0 < Int($1[2].split(separator: ":").first ?? "0") ?? 0 }
            let expectedParts = ordered.map { String($0[3].split(separator: "/").first ?? "") + "/" + $0[4] }
            #expect(s.sources.map(\.folderName) == expectedParts, "\(key)")
            switch fromFolder[0][6] {
            case "copy": #expect(s.sources.map(\.transform) == [.copy], "\(key)")
            case "reshape":
                #expect(s.sources.map(\.transform) == [.reshape], "\(key)")
                #expect(s.shape == fromFolder[0][1].split(separator: "x").compactMap { Int($0) }, "\(key)")
            case "rows":
                let w = s.shape[0] / 3
                #expect(s.sources.map(\.transform) == [.rows(0..<w), .rows(w..<2 * w), .rows(2 * w..<3 * w)], "\(key)")
            default: Issue.record("unknown transform \(fromFolder[0][6])")
            }
        }
        #expect(mapped == 904 && mapping.count == 904)
    }

    @Test func unsupportedDiffusersConfigsAreRefused() throws {
        let unet = try text("sd21-tiny/diffusers/unet/config.json")
        func msg(_ u: String) -> String {
            do {
                _ = try DiffusersConfig.parse(unet: u, vae: text("sd21-tiny/diffusers/vae/config.json"),
                                              textEncoder: text("sd21-tiny/diffusers/text_encoder/config.json"),
                                              scheduler: text("sd21-tiny/diffusers/scheduler/scheduler_config.json"))
                return ""
            } catch { return "\(error)" }
        }
        #expect(msg(unet.replacingOccurrences(of: "\"class_embed_type\": null", with: "\"class_embed_type\": \"timestep\"")).contains("class_embed_type"))
        #expect(msg(unet.replacingOccurrences(of: "\"attention_head_dim\": [\n    2,", with: "\"attention_head_dim\": [\n    4,")).contains("head width"))
        #expect(msg("[1]").contains("not a JSON object"))
    }
}
