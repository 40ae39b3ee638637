import Foundation
import Testing
import VCFormats
import VCModels
import VCTensor
import VCTestSupport

/// Configurations of the two tiny fixtures, written out from their YAML files.
enum TinyConfigs {
    /// fixtures/sd21-tiny (shared/golden/sd21-tiny/sd21-tiny-ldm.yaml + open_clip_config.json).
    static var sd21: ModelConfig {
        var u = UNetConfig()
        u.modelChannels = 32; u.channelMult = [1, 2, 2, 2]; u.numHeadChannels = 16; u.contextDim = 32
        u.temporalConv = false; u.temporalAttention = false; u.additionAttention = false; u.fpsCond = false
        var t = TextEncoderConfig()
        t.width = 32; t.heads = 2; t.layers = 4
        var v = VAEConfig()
        v.ch = 32; v.chMult = [1, 1, 2, 2]; v.numResBlocks = 1; v.resolution = 64
        var d = DiffusionConfig()
        d.useScale = false
        return ModelConfig(kind: .sd21, unet: u, text: t, vae: v, diffusion: d)
    }

    /// fixtures/vc2-tiny-a/config.yaml + open_clip_config.json.
    static var vc2: ModelConfig {
        var u = UNetConfig()
        u.modelChannels = 32; u.channelMult = [1, 1, 1, 2]; u.numHeadChannels = 16; u.contextDim = 32
        u.temporalLength = 5
        var t = TextEncoderConfig()
        t.width = 32; t.heads = 2; t.layers = 3
        var v = VAEConfig()
        v.ch = 32; v.chMult = [1, 1, 2, 2]; v.numResBlocks = 1; v.resolution = 128
        return ModelConfig(kind: .vc2, unet: u, text: t, vae: v, diffusion: DiffusionConfig())
    }
}

private func shapeString(_ s: [Int]?) -> String {
    guard let s else { return "?" }
    return s.isEmpty ? "scalar" : s.map(String.init).joined(separator: "x")
}

@Suite struct DiffusersNamesTests {
    /// Every row of the sd21-tiny mapping.tsv (LDM key, shapes, diffusers file/key, transform,
    /// row slice) is produced by the enumeration, and nothing else is.
    @Test func sd21TinyMappingReproducesEveryRow() throws {
        let text = try String(contentsOfFile: Fixtures.path("sd21-tiny/mapping.tsv"), encoding: .utf8)
        var expected = Set<String>()
        var lines = text.split(separator: "\n").map(String.init)
        #expect(lines.removeFirst().hasPrefix("ldm_key\tldm_shape"))
        for line in lines {
            let f = line.split(separator: "\t", omittingEmptySubsequences: false).map(String.init)
            try #require(f.count == 8, "row \(line)")
            // Keep every column except used_by_inference (a property of the fixture, derived below).
            let transform = f[6].hasPrefix("ldm_only") ? "-" : f[6]
            let ldmShape = f[0] == "cond_stage_model.model.text_projection" ? "?" : f[1]
            expected.insert([f[0], ldmShape, f[2], f[3], f[4], f[5], transform].joined(separator: "\t"))
        }
        #expect(expected.count == 942)

        let names = try ModelTensorNames(config: TinyConfigs.sd21)
        var produced = Set<String>()
        for t in names.tensors {
            if t.sources.isEmpty {
                produced.insert([t.name, shapeString(t.shape), "all", "-", "-", "-", "-"].joined(separator: "\t"))
            }
            for s in t.sources {
                let rows: String, kind: String
                switch s.transform {
                case .copy: rows = "all"; kind = "copy"
                case .reshape: rows = "all"; kind = "reshape"
                case .rows(let r): rows = "\(r.lowerBound):\(r.upperBound)"; kind = "rows"
                }
                produced.insert([t.name, shapeString(t.shape), rows, s.component.weightsFile, s.key, shapeString(s.shape), kind]
                    .joined(separator: "\t"))
            }
        }
        let missing = expected.subtracting(produced).sorted()
        let extra = produced.subtracting(expected).sorted()
        #expect(missing.isEmpty, "missing rows: \(missing.prefix(10))")
        #expect(extra.isEmpty, "unexpected rows: \(extra.prefix(10))")

        // Origins of the LDM-only keys match the fixture's categories.
        for line in lines {
            let f = line.split(separator: "\t", omittingEmptySubsequences: false).map(String.init)
            let origin = names.origin(of: f[0])
            switch f[6] {
            case "ldm_only_skipped_layer": #expect(origin == .skippedLayer, "\(f[0])")
            case "ldm_only_unused": #expect(origin == .unused, "\(f[0])")
            case "ldm_only_schedule_buffer": #expect(origin == .scheduleBuffer, "\(f[0])")
            default: #expect(origin == .spatial, "\(f[0])")
            }
        }
        // SD 2.1 indices: no VideoCrafter shift.
        #expect(names.canonical(component: .unet, key: "mid_block.resnets.1.conv1.weight")?.tensor.name
                == "model.diffusion_model.middle_block.2.in_layers.2.weight")
        #expect(names.canonical(component: .unet, key: "up_blocks.1.upsamplers.0.conv.weight")?.tensor.name
                == "model.diffusion_model.output_blocks.5.2.conv.weight")
    }

    /// The VC2 enumeration yields exactly the tiny model's tensors with their shapes, including
    /// the temporal modules, and the SD -> VC2 index shifts.
    @Test func vc2TinyEnumerationMatchesTheCheckpoint() throws {
        let model = try Fixtures.tinyModel()
        let names = try ModelTensorNames(config: TinyConfigs.vc2)
        let enumerated = Dictionary(uniqueKeysWithValues: names.tensors.map { ($0.name, $0.shape) })
        var fileShapes: [String: [Int]] = [:]
        for e in model.entries { fileShapes[e.name] = e.shape }
        #expect(Set(enumerated.keys) == Set(fileShapes.keys),
                "only enumerated: \(Set(enumerated.keys).subtracting(fileShapes.keys).sorted().prefix(8)); only in file: \(Set(fileShapes.keys).subtracting(enumerated.keys).sorted().prefix(8))")
        for (name, shape) in enumerated {
            guard let shape, let actual = fileShapes[name] else { continue }
            #expect(shape == actual, "\(name): enumerated \(shape), file \(actual)")
        }

        let prefix = ModelTensorNames.unetPrefix
        func ldm(_ key: String) -> String? { names.canonical(component: .unet, key: key)?.tensor.name }
        #expect(ldm("mid_block.resnets.1.conv2.weight") == prefix + "middle_block.3.out_layers.3.weight")
        #expect(ldm("up_blocks.1.upsamplers.0.conv.weight") == prefix + "output_blocks.5.3.conv.weight")
        #expect(ldm("up_blocks.2.upsamplers.0.conv.weight") == prefix + "output_blocks.8.3.conv.weight")
        #expect(ldm("up_blocks.0.upsamplers.0.conv.weight") == prefix + "output_blocks.2.1.conv.weight")
        #expect(ldm("down_blocks.2.downsamplers.0.conv.weight") == prefix + "input_blocks.9.0.op.weight")

        // Temporal classification.
        #expect(names.origin(of: prefix + "init_attn.0.proj_in.weight") == .temporal)
        #expect(names.origin(of: prefix + "input_blocks.1.2.transformer_blocks.0.attn1.to_q.weight") == .temporal)
        #expect(names.origin(of: prefix + "middle_block.2.proj_out.weight") == .temporal)
        #expect(names.origin(of: prefix + "output_blocks.11.2.norm.bias") == .temporal)
        #expect(names.origin(of: prefix + "output_blocks.3.0.temopral_conv.conv4.3.weight") == .temporal)
        #expect(names.origin(of: prefix + "fps_embedding.2.weight") == .videoConditioning)
        #expect(names.origin(of: prefix + "output_blocks.5.3.conv.weight") == .spatial)
        #expect(names.origin(of: prefix + "middle_block.3.in_layers.2.weight") == .spatial)
        // Every temporal / video-only tensor has no diffusers source, every spatial UNet one has.
        for t in names.tensors where t.name.hasPrefix(prefix) {
            #expect(t.origin.isVideoOnly == t.sources.isEmpty, "\(t.name)")
        }
    }

    @Test func sd21KindRejectsTemporalSwitches() throws {
        var c = TinyConfigs.sd21
        #expect(throws: Never.self) { _ = try ModelTensorNames(config: c) }
        c.unet.temporalConv = true
        #expect(throws: ConfigError.self) { _ = try ModelTensorNames(config: c) }
    }
}

@Suite struct FullSizeNamesTests {
    /// The full-size VC2 configuration enumerates exactly the 2,039 keys (and shapes) of the
    /// official checkpoint (fixtures/videocrafter2-state-dict-keys.tsv).
    @Test func vc2_512EnumerationMatchesTheOfficialKeyList() throws {
        let text = try String(contentsOfFile: Fixtures.path("videocrafter2-state-dict-keys.tsv"), encoding: .utf8)
        var official: [String: String] = [:]
        for line in text.split(separator: "\n").dropFirst() {
            let f = line.split(separator: "\t").map(String.init)
            official[f[0]] = f[1]
        }
        #expect(official.count == 2039)
        let names = try ModelTensorNames(config: .vc2_512)
        var ours: [String: String] = [:]
        for t in names.tensors {
            ours[t.name] = t.shape.map { $0.isEmpty ? "scalar" : $0.map(String.init).joined(separator: "x") } ?? official[t.name]
        }
        #expect(Set(ours.keys) == Set(official.keys),
                "only ours: \(Set(ours.keys).subtracting(official.keys).sorted().prefix(5)); only official: \(Set(official.keys).subtracting(ours.keys).sorted().prefix(5))")
        let wrong = ours.filter { official[$0.key] != nil && official[$0.key] != $0.value }.keys.sorted()
        #expect(wrong.isEmpty, "shapes differ: \(wrong.prefix(5))")
        #expect(names.origin(of: "cond_stage_model.model.transformer.resblocks.23.attn.in_proj_weight") == .skippedLayer)
        #expect(names.canonical(component: .textEncoder, key: "text_model.encoder.layers.22.self_attn.v_proj.weight")?.source.transform
                == .rows(2048..<3072))
    }
}

@Suite struct DiffusersCanonicalSourceTests {
    /// Splitting the tiny model into diffusers-named tensors (the mapping read backwards) and
    /// serving them through DiffusersCanonicalSource gives back every SD-counterpart tensor
    /// byte for byte.
    @Test func roundTripThroughDiffusersNames() throws {
        let model = try Fixtures.tinyModel()
        let names = try ModelTensorNames(config: TinyConfigs.vc2)
        var parts: [DiffusersComponent: [String: Tensor]] = [:]
        for t in names.tensors {
            guard let x = try model.tensor(named: t.name) else { continue }
            for s in t.sources {
                switch s.transform {
                case .copy: parts[s.component, default: [:]][s.key] = x
                case .reshape: parts[s.component, default: [:]][s.key] = try x.reshaped(s.shape)
                case .rows(let r): parts[s.component, default: [:]][s.key] = try x.rows(r.lowerBound, r.count)
                }
            }
        }
        parts[.textEncoder]?["text_model.embeddings.position_ids"] = Tensor(zeros: [1, 77], dtype: .i64)
        let source = DiffusersCanonicalSource(names: names, components: parts.mapValues { DictionarySource($0) })
        let expected = names.tensors.filter { !$0.sources.isEmpty }.map(\.name)
        #expect(source.tensorNames == expected)
        #expect(source.unusedDiffusersTensors == ["text_encoder/text_model.embeddings.position_ids"])
        for name in expected {
            let got = try #require(try source.tensor(named: name)), want = try #require(try model.tensor(named: name))
            #expect(got.shape == want.shape && got.bytes() == want.bytes(), "\(name)")
        }
        // Temporal tensors are not served.
        #expect(try source.tensor(named: "model.diffusion_model.init_attn.0.norm.weight") == nil)
        // A wrongly shaped diffusers tensor is reported by name.
        var bad = parts
        bad[.unet]?["conv_in.weight"] = Tensor(zeros: [32, 4, 1, 1])
        let badSource = DiffusersCanonicalSource(names: names, components: bad.mapValues { DictionarySource($0) })
        #expect(throws: TensorError.self) { try badSource.tensor(named: "model.diffusion_model.input_blocks.0.0.weight") }
    }
}

@Suite struct SD21DiffusersFolderTests {
    /// The sd21-tiny diffusers folder: all 916 diffusers tensors feed the 904 canonical tensors
    /// inference uses (README acceptance rule), each assembled with the mapping's shape.
    @Test func sd21TinyFolderAssemblesEveryInferenceTensor() throws {
        let folder = try DiffusersFolder(path: Fixtures.path("sd21-tiny/diffusers"))
        var components: [DiffusersComponent: any TensorSource] = [:]
        for c in DiffusersComponent.allCases {
            let s: any TensorSource = try #require(folder.source(c.rawValue), "component \(c.rawValue)")
            components[c] = s
        }
        let names = try ModelTensorNames(config: TinyConfigs.sd21)
        let source = DiffusersCanonicalSource(names: names, components: components)
        #expect(components.values.reduce(0) { $0 + $1.tensorNames.count } == 916)
        #expect(source.unusedDiffusersTensors.isEmpty, "\(source.unusedDiffusersTensors.prefix(5))")
        #expect(source.tensorNames.count == 904)
        for name in source.tensorNames {
            let t = try #require(try source.tensor(named: name))
            #expect(t.shape == names.tensor(named: name)?.shape, "\(name)")
        }
        // The fused in_proj holds q, k, v in that order.
        let fused = try #require(try source.tensor(named: "cond_stage_model.model.transformer.resblocks.2.attn.in_proj_weight"))
        let k = try #require(try components[.textEncoder]?.tensor(named: "text_model.encoder.layers.2.self_attn.k_proj.weight"))
        #expect(try fused.rows(32, 32).bytes() == k.bytes())
    }
}
