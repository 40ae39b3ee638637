import Foundation
import Testing
import VCFormats
import VCModels
import VCTensor
import VCTestSupport

/// Configurations of the two tiny fixtures, parsed from their YAML + open_clip config files.
enum TinyConfigs {
    static func load(_ yaml: String, _ textJSON: String) throws -> ModelConfig {
        try LVDMConfig.parse(yaml: String(contentsOfFile: Fixtures.path(yaml), encoding: .utf8),
                             textConfigJSON: String(contentsOfFile: Fixtures.path(textJSON), encoding: .utf8)).config
    }

    /// fixtures/sd21-tiny (sd21-tiny-ldm.yaml: SD 2.1, no temporal parts).
    static func sd21() throws -> ModelConfig { try load("sd21-tiny/sd21-tiny-ldm.yaml", "sd21-tiny/open_clip_config.json") }

    /// fixtures/vc2-tiny-a/config.yaml + open_clip_config.json.
    static func vc2() throws -> ModelConfig { try load("vc2-tiny-a/config.yaml", "vc2-tiny-a/open_clip_config.json") }
}

private func shapeString(_ s: [Int]) -> String {
    return s.isEmpty ? "scalar" : s.map(String.init).joined(separator: "x")
}

@Suite struct CanonicalNamesTests {
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
            expected.insert([f[0], f[1], f[2], f[3], f[4], f[5], transform].joined(separator: "\t"))
        }
        #expect(expected.count == 942)

        let names = try ModelTensorNames(config: try TinyConfigs.sd21())
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
        let names = try ModelTensorNames(config: try TinyConfigs.vc2())
        let enumerated = Dictionary(uniqueKeysWithValues: names.tensors.map { ($0.name, $0.shape) })
        var fileShapes: [String: [Int]] = [:]
        for e in model.entries { fileShapes[e.name] = e.shape }
        #expect(Set(enumerated.keys) == Set(fileShapes.keys),
                "only enumerated: \(Set(enumerated.keys).subtracting(fileShapes.keys).sorted().prefix(8)); only in file: \(Set(fileShapes.keys).subtracting(enumerated.keys).sorted().prefix(8))")
        for (name, shape) in enumerated {
            guard let actual = fileShapes[name] else { continue }
            #expect(shape == actual, "\(name): enumerated \(shape), file \(actual)")
        }

        let prefix = ModelTensors.unetPrefix
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
        var c = try TinyConfigs.sd21()
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
            ours[t.name] = shapeString(t.shape)
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
