import Foundation
import Testing
import VCFormats
import VCModels
import VCTensor
import VCTestSupport

/// Shared pieces of the LoRA tests: the tiny VC2 model, its name table, and small helpers.
enum LoRAFixture {
    static func base() throws -> SafetensorsFile { try Fixtures.tinyModel() }
    static func names() throws -> ModelTensorNames { try ModelTensorNames(config: try TinyConfigs.vc2()) }
    static func file(_ name: String) throws -> SafetensorsFile {
        try SafetensorsFile(path: Fixtures.path("vc2-tiny-a/lora/\(name)"))
    }

    /// Loads a LoRA source against the tiny model.
    static func load(_ source: any TensorSource, metadata: [String: String] = [:], name: String = "test.safetensors",
                     base: (any TensorSource)? = nil) throws -> LoRAFile {
        try LoRAFile.load(source, metadata: metadata, name: name, names: names(), base: base ?? self.base())
    }

    /// Deterministic small values.
    static func values(_ n: Int, seed: Int) -> [Float] {
        (0..<n).map { i in Float(((i * 7919 + seed * 104_729) % 2001) - 1000) / 4000 }
    }

    static func tensor(_ shape: [Int], seed: Int) throws -> Tensor {
        try Tensor(shape: shape, floats: values(shape.reduce(1, *), seed: seed))
    }

    /// Plain triple loop: a [m, k] @ b [k, n].
    static func matmul(_ a: [Float], _ b: [Float], m: Int, k: Int, n: Int) -> [Float] {
        var y = [Float](repeating: 0, count: m * n)
        for i in 0..<m { for j in 0..<n { var s: Float = 0; for t in 0..<k { s += a[i * k + t] * b[t * n + j] }; y[i * n + j] = s } }
        return y
    }

    static func merged(_ base: any TensorSource, _ files: [(LoRAFile, Double)], options: LoRAOptions = LoRAOptions()) throws -> LoRAMergedSource {
        let plan = LoRAMergedSource.plan(try files.map { (try $0.0.check(options: options), $0.1) })
        return LoRAMergedSource(base: base, plan: plan)
    }
}

/// Overrides some tensors of a base source.
struct OverlaySource: TensorSource {
    var base: any TensorSource
    var overrides: [String: Tensor]
    var tensorNames: [String] { base.tensorNames }
    func tensor(named name: String) throws -> Tensor? { try overrides[name] ?? base.tensor(named: name) }
}

@Suite struct LoRATests {
    // MARK: golden merges

    /// kohya at 1.0 / 0.7 and PEFT reproduce expected_merged_* (atol 1e-6); all other tensors are
    /// bit-identical to the base; no temporal tensor changes.
    @Test(arguments: [("kohya.safetensors", 1.0, "expected_merged_kohya_m1.0.safetensors"),
                      ("kohya.safetensors", 0.7, "expected_merged_kohya_m0.7.safetensors"),
                      ("peft.safetensors", 1.0, "expected_merged_peft.safetensors")])
    func goldenMerge(lora: String, multiplier: Double, expectedFile: String) throws {
        let base = try LoRAFixture.base()
        let source = try LoRAFixture.file(lora)
        let file = try LoRAFixture.load(source, metadata: source.metadata, name: lora, base: base)
        #expect(file.unmatched.isEmpty)
        #expect(file.temporal.isEmpty)
        #expect(file.scheme == (lora.hasPrefix("kohya") ? .kohya : .peft))
        let merged = try LoRAFixture.merged(base, [(file, multiplier)])
        let expected = try LoRAFixture.file(expectedFile)
        let names = try LoRAFixture.names()

        #expect(Set(merged.plan.keys) == Set(expected.tensorNames))
        for name in expected.tensorNames {
            let want = try #require(try expected.tensor(named: name))
            let got = try #require(try merged.tensor(named: name))
            #expect(got.shape == want.shape && got.dtype == .f32, "\(name)")
            let cmp = Comparison(got.floats(), want.floats())
            #expect(cmp.maxAbs <= 1e-6, "\(name): \(cmp)")
            // The merge changed the tensor (the comparison is not vacuous).
            let before = try #require(try base.tensor(named: name))
            #expect(Comparison(before.floats(), want.floats()).maxAbs > 1e-4, "\(name) should change")
            #expect(names.origin(of: name) == .spatial, "\(name) is not spatial")
        }
        var identical = 0
        for name in base.tensorNames where !expected.tensorNames.contains(name) {
            let a = try #require(try base.tensor(named: name)), b = try #require(try merged.tensor(named: name))
            #expect(a.bytes() == b.bytes(), "\(name) changed")
            identical += 1
        }
        #expect(identical == 1717 - expected.tensorNames.count)
    }

    /// The fused in_proj: rows a text LoRA does not cover are bit-identical.
    @Test func fusedInProjRowsOutsideTheDeltaAreUntouched() throws {
        let base = try LoRAFixture.base()
        let source = try LoRAFixture.file("kohya.safetensors")
        let file = try LoRAFixture.load(source, metadata: source.metadata, base: base)
        let merged = try LoRAFixture.merged(base, [(file, 1.0)])
        let name = "cond_stage_model.model.transformer.resblocks.1.attn.in_proj_weight" // only k (rows 32:64)
        let before = try #require(try base.tensor(named: name)), after = try #require(try merged.tensor(named: name))
        #expect(try before.rows(0, 32).bytes() == after.rows(0, 32).bytes())
        #expect(try before.rows(64, 32).bytes() == after.rows(64, 32).bytes())
        #expect(try before.rows(32, 32).bytes() != after.rows(32, 32).bytes())
        let k = try #require(file.deltas.first { $0.module == "lora_te_text_model_encoder_layers_1_self_attn_k_proj" })
        #expect(k.target == LoRATarget(tensor: name, rows: 32..<64, origin: .spatial))
    }

    // MARK: formats

    /// The same module in every supported naming scheme resolves to the same target; kohya names
    /// of LDM paths work too.
    @Test func namingSchemesResolve() throws {
        let down = try LoRAFixture.tensor([2, 32], seed: 1), up = try LoRAFixture.tensor([32, 2], seed: 2)
        let path = "down_blocks.0.attentions.0.transformer_blocks.0.attn2.to_q"
        let ldm = "model.diffusion_model.input_blocks.1.1.transformer_blocks.0.attn2.to_q.weight"
        let variants: [(String, String, LoRAScheme)] = [
            ("lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn2_to_q.lora_down.weight",
             "lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn2_to_q.lora_up.weight", .kohya),
            ("lora_unet_input_blocks_1_1_transformer_blocks_0_attn2_to_q.lora_down.weight",
             "lora_unet_input_blocks_1_1_transformer_blocks_0_attn2_to_q.lora_up.weight", .kohya),
            ("unet.\(path).lora_A.weight", "unet.\(path).lora_B.weight", .peft),
            ("\(path).lora_A.weight", "\(path).lora_B.weight", .peft),
            ("unet.\(path).lora.down.weight", "unet.\(path).lora.up.weight", .diffusers),
            ("down_blocks.0.attentions.0.transformer_blocks.0.attn2.processor.to_q_lora.down.weight",
             "down_blocks.0.attentions.0.transformer_blocks.0.attn2.processor.to_q_lora.up.weight", .diffusersAttnProcessor),
            ("model.diffusion_model.input_blocks.1.1.transformer_blocks.0.attn2.to_q.lora_down.weight",
             "model.diffusion_model.input_blocks.1.1.transformer_blocks.0.attn2.to_q.lora_up.weight", .dotted),
        ]
        for (dk, uk, scheme) in variants {
            let file = try LoRAFixture.load(DictionarySource([dk: down, uk: up]))
            #expect(file.scheme == scheme, "\(dk)")
            #expect(file.deltas.count == 1 && file.deltas.first?.target.tensor == ldm, "\(dk)")
        }
        // Text encoder: old processor names and the interim lora_linear_layer names.
        let te: [(String, String)] = [
            ("text_encoder.text_model.encoder.layers.0.self_attn.to_v_lora.down.weight",
             "text_encoder.text_model.encoder.layers.0.self_attn.to_v_lora.up.weight"),
            ("text_encoder.text_model.encoder.layers.0.self_attn.v_proj.lora_linear_layer.down.weight",
             "text_encoder.text_model.encoder.layers.0.self_attn.v_proj.lora_linear_layer.up.weight"),
        ]
        for (dk, uk) in te {
            let file = try LoRAFixture.load(DictionarySource([dk: down, uk: up]))
            #expect(file.deltas.first?.target == LoRATarget(tensor: "cond_stage_model.model.transformer.resblocks.0.attn.in_proj_weight",
                                                            rows: 64..<96, origin: .spatial), "\(dk)")
        }
    }

    /// kohya alpha: missing -> alpha = r (scale 1); PEFT: metadata alpha, alpha_pattern, rank_pattern
    /// and rsLoRA (alpha / sqrt r).
    @Test func alphaAndScaling() throws {
        let k = "lora_unet_down_blocks_0_attentions_0_proj_in"
        let down = try LoRAFixture.tensor([4, 32], seed: 3), up = try LoRAFixture.tensor([32, 4], seed: 4)
        let noAlpha = try LoRAFixture.load(DictionarySource(["\(k).lora_down.weight": down, "\(k).lora_up.weight": up]))
        #expect(noAlpha.deltas[0].alpha == 4 && noAlpha.deltas[0].scale(multiplier: 0.5) == 0.5)
        let zeroAlpha = try LoRAFixture.load(DictionarySource(["\(k).lora_down.weight": down, "\(k).lora_up.weight": up,
                                                               "\(k).alpha": try Tensor(shape: [], floats: [0])]))
        #expect(zeroAlpha.deltas[0].scale(multiplier: 1) == 1)

        let p = "down_blocks.0.attentions.0.proj_in", q = "down_blocks.0.attentions.0.proj_out"
        let src = DictionarySource(["unet.\(p).lora_A.weight": down, "unet.\(p).lora_B.weight": up,
                                    "unet.\(q).lora_A.weight": down, "unet.\(q).lora_B.weight": up])
        func meta(_ extra: String) -> [String: String] {
            ["lora_adapter_metadata": "{\"unet.r\": 4, \"unet.lora_alpha\": 8, \"unet.peft_type\": \"LORA\"\(extra)}"]
        }
        let plain = try LoRAFixture.load(src, metadata: meta(""))
        #expect(plain.deltas.allSatisfy { $0.scale(multiplier: 1) == 2 })
        let rs = try LoRAFixture.load(src, metadata: meta(", \"unet.use_rslora\": true"))
        #expect(rs.deltas.allSatisfy { $0.scale(multiplier: 1) == 4 }) // 8 / sqrt(4)
        let pattern = try LoRAFixture.load(src, metadata: meta(", \"unet.alpha_pattern\": {\"proj_out\": 2}"))
        #expect(pattern.deltas.first { $0.module == q }?.scale(multiplier: 1) == 0.5)
        #expect(pattern.deltas.first { $0.module == p }?.scale(multiplier: 1) == 2)
        #expect(throws: LoRAError.self) { try LoRAFixture.load(src, metadata: meta(", \"unet.rank_pattern\": {\"proj_out\": 8}")) }
        // Network alphas as tensors (kohya converted to diffusers) win over the default.
        let netAlpha = try LoRAFixture.load(DictionarySource(["unet.\(p).lora_A.weight": down, "unet.\(p).lora_B.weight": up,
                                                              "unet.\(p).alpha": try Tensor(shape: [], floats: [1])]))
        #expect(netAlpha.deltas[0].scale(multiplier: 1) == 0.25)
    }

    // MARK: LoCon / Tucker / LoHa / LoKr arithmetic against plain loops

    @Test func loconTuckerLohaLokrMatchPlainLoops() throws {
        let base = try LoRAFixture.base()
        let conv = "model.diffusion_model.input_blocks.4.0.in_layers.2.weight" // [32, 32, 3, 3]
        let w = try #require(try base.tensor(named: conv)).floats()
        let m = "lora_unet_down_blocks_1_resnets_0_conv1"
        let (out, cin, taps) = (32, 32, 9)

        // LoCon 3x3: down [r, in, 3, 3], up [out, r, 1, 1].
        let r = 3
        let down = LoRAFixture.values(r * cin * taps, seed: 5), up = LoRAFixture.values(out * r, seed: 6)
        var file = try LoRAFixture.load(DictionarySource([
            "\(m).lora_down.weight": try Tensor(shape: [r, cin, 3, 3], floats: down),
            "\(m).lora_up.weight": try Tensor(shape: [out, r, 1, 1], floats: up),
            "\(m).alpha": try Tensor(shape: [], floats: [1.5])]), base: base)
        #expect(file.deltas[0].kind == "LoCon")
        var want = LoRAFixture.matmul(up, down, m: out, k: r, n: cin * taps)
        try expectMerged(base, file, conv, w, want, scale: Float(1.5 / 3.0))

        // Tucker: down [r, in, 1, 1], mid [r2, r, 3, 3], up [out, r2, 1, 1].
        let r2 = 2
        let d1 = LoRAFixture.values(r * cin, seed: 7), mid = LoRAFixture.values(r2 * r * taps, seed: 8), u1 = LoRAFixture.values(out * r2, seed: 9)
        file = try LoRAFixture.load(DictionarySource([
            "\(m).lora_down.weight": try Tensor(shape: [r, cin, 1, 1], floats: d1),
            "\(m).lora_mid.weight": try Tensor(shape: [r2, r, 3, 3], floats: mid),
            "\(m).lora_up.weight": try Tensor(shape: [out, r2, 1, 1], floats: u1)]), base: base)
        #expect(file.deltas[0].kind == "LoCon (Tucker)")
        want = [Float](repeating: 0, count: out * cin * taps)
        for o in 0..<out { for i in 0..<cin { for t in 0..<taps {
            var s: Float = 0
            for a in 0..<r2 { for b in 0..<r { s += u1[o * r2 + a] * mid[(a * r + b) * taps + t] * d1[b * cin + i] } }
            want[(o * cin + i) * taps + t] = s
        } } }
        try expectMerged(base, file, conv, w, want, scale: 1) // alpha = r

        // LoHa: (w1a @ w1b) * (w2a @ w2b), r = 2.
        let w1a = LoRAFixture.values(out * 2, seed: 10), w1b = LoRAFixture.values(2 * cin * taps, seed: 11)
        let w2a = LoRAFixture.values(out * 2, seed: 12), w2b = LoRAFixture.values(2 * cin * taps, seed: 13)
        file = try LoRAFixture.load(DictionarySource([
            "\(m).hada_w1_a": try Tensor(shape: [out, 2], floats: w1a), "\(m).hada_w1_b": try Tensor(shape: [2, cin * taps], floats: w1b),
            "\(m).hada_w2_a": try Tensor(shape: [out, 2], floats: w2a), "\(m).hada_w2_b": try Tensor(shape: [2, cin * taps], floats: w2b),
            "\(m).alpha": try Tensor(shape: [], floats: [1])]), base: base)
        let p1 = LoRAFixture.matmul(w1a, w1b, m: out, k: 2, n: cin * taps), p2 = LoRAFixture.matmul(w2a, w2b, m: out, k: 2, n: cin * taps)
        try expectMerged(base, file, conv, w, zip(p1, p2).map { $0 * $1 }, scale: 0.5)

        // LoKr: kron(w1 [4, 8], w2a [8, 2] @ w2b [2, 4, 3, 3]) -> [32, 32, 3, 3], r = 2.
        let k1 = LoRAFixture.values(4 * 8, seed: 14), k2a = LoRAFixture.values(8 * 2, seed: 15), k2b = LoRAFixture.values(2 * 4 * taps, seed: 16)
        file = try LoRAFixture.load(DictionarySource([
            "\(m).lokr_w1": try Tensor(shape: [4, 8], floats: k1),
            "\(m).lokr_w2_a": try Tensor(shape: [8, 2], floats: k2a), "\(m).lokr_w2_b": try Tensor(shape: [2, 4, 3, 3], floats: k2b),
            "\(m).alpha": try Tensor(shape: [], floats: [3])]), base: base)
        let w2 = LoRAFixture.matmul(k2a, k2b, m: 8, k: 2, n: 4 * taps) // [8, 4*9]
        want = [Float](repeating: 0, count: out * cin * taps)
        for i in 0..<4 { for j in 0..<8 { for kk in 0..<8 { for l in 0..<(4 * taps) {
            // row i*8+kk, column j*(4*9)+l of the [32, 32*9] view
            want[(i * 8 + kk) * (cin * taps) + j * (4 * taps) + l] = k1[i * 8 + j] * w2[kk * (4 * taps) + l]
        } } } }
        try expectMerged(base, file, conv, w, want, scale: 1.5)
    }

    private func expectMerged(_ base: any TensorSource, _ file: LoRAFile, _ name: String, _ w: [Float], _ delta: [Float],
                              scale: Float, sourceLocation: SourceLocation = #_sourceLocation) throws {
        let merged = try LoRAFixture.merged(base, [(file, 1.0)])
        let got = try #require(try merged.tensor(named: name)).floats()
        let want = zip(w, delta).map { $0 + scale * $1 }
        let cmp = Comparison(got, want)
        #expect(cmp.maxAbs <= 1e-6, "\(cmp)", sourceLocation: sourceLocation)
        #expect(Comparison(w, want).maxAbs > 1e-3, sourceLocation: sourceLocation)
    }

    // MARK: stored precision

    /// An f16 base is merged in f32 and stored back as f16; untouched rows keep their bytes.
    @Test func f16BaseIsMergedInF32AndStoredAsF16() throws {
        let tiny = try LoRAFixture.base()
        let name = "cond_stage_model.model.transformer.resblocks.0.attn.in_proj_weight"
        let w16 = try #require(try tiny.tensor(named: name)).converted(to: .f16)
        let base = OverlaySource(base: tiny, overrides: [name: w16])
        let m = "lora_te_text_model_encoder_layers_0_self_attn_q_proj"
        let down = try LoRAFixture.tensor([4, 32], seed: 17), up = try LoRAFixture.tensor([32, 4], seed: 18)
        let file = try LoRAFixture.load(DictionarySource(["\(m).lora_down.weight": down, "\(m).lora_up.weight": up]), base: base)
        let got = try #require(try LoRAFixture.merged(base, [(file, 0.7)]).tensor(named: name))
        #expect(got.dtype == .f16)
        #expect(try got.rows(32, 64).bytes() == w16.rows(32, 64).bytes())
        let delta = LoRAFixture.matmul(up.floats(), down.floats(), m: 32, k: 4, n: 32)
        let w = try w16.rows(0, 32).floats()
        let s = Float(0.7 * 4.0 / 4.0)
        let want = zip(w, delta).map { $0 + s * $1 }
        // f16 keeps ~11 bits: the merged rows are the f32 result rounded once.
        #expect(Comparison(try got.rows(0, 32).floats(), want).maxAbs <= 1e-3)
        #expect(Comparison(w, want).maxAbs > 1e-2)
    }

    // MARK: refusals

    @Test func malformedFilesAreRefusedNamingTheKey() throws {
        let k = "lora_unet_down_blocks_0_attentions_0_proj_in"
        let good = ["\(k).lora_down.weight": try LoRAFixture.tensor([4, 32], seed: 1),
                    "\(k).lora_up.weight": try LoRAFixture.tensor([32, 4], seed: 2)]
        func refused(_ tensors: [String: Tensor], naming key: String, _ text: String, metadata: [String: String] = [:],
                     sourceLocation: SourceLocation = #_sourceLocation) {
            do {
                _ = try LoRAFixture.load(DictionarySource(tensors), metadata: metadata)
                Issue.record("accepted a LoRA that should be refused (\(text))", sourceLocation: sourceLocation)
            } catch let e as LoRAError {
                #expect(e.description.contains("'\(key)'"), "\(e)", sourceLocation: sourceLocation)
                #expect(e.description.contains(text), "\(e)", sourceLocation: sourceLocation)
            } catch {
                Issue.record("unexpected error \(error)", sourceLocation: sourceLocation)
            }
        }
        // Shape mismatch: the delta is [32, 48] for a [32, 32] weight.
        var t = good; t["\(k).lora_down.weight"] = try LoRAFixture.tensor([4, 48], seed: 1)
        refused(t, naming: "\(k).lora_down.weight", "shape mismatch")
        // Rank mismatch between up and down.
        t = good; t["\(k).lora_up.weight"] = try LoRAFixture.tensor([32, 3], seed: 2)
        refused(t, naming: "\(k).lora_up.weight", "rank mismatch")
        // NaN and Inf.
        var v = LoRAFixture.values(128, seed: 3); v[77] = .nan
        t = good; t["\(k).lora_down.weight"] = try Tensor(shape: [4, 32], floats: v)
        refused(t, naming: "\(k).lora_down.weight", "element 77 is not finite")
        v = LoRAFixture.values(128, seed: 3); v[5] = -.infinity
        t = good; t["\(k).lora_up.weight"] = try Tensor(shape: [32, 4], floats: v)
        refused(t, naming: "\(k).lora_up.weight", "not finite")
        t = good; t["\(k).alpha"] = try Tensor(shape: [], floats: [.infinity])
        refused(t, naming: "\(k).alpha", "not finite")
        // Unknown key scheme.
        t = good; t["some_model.layer.weight"] = try LoRAFixture.tensor([4, 4], seed: 4)
        refused(t, naming: "some_model.layer.weight", "fits no known LoRA scheme")
        t = good; t["\(k).lora_sideways.weight"] = try LoRAFixture.tensor([4, 4], seed: 4)
        refused(t, naming: "\(k).lora_sideways.weight", "fits no known LoRA scheme")
        // A missing half.
        refused(["\(k).lora_down.weight": good["\(k).lora_down.weight"]!], naming: "\(k).lora_down.weight", "no up tensor")
        // DoRA, PEFT DoRA, Tucker LoHa.
        t = good; t["\(k).dora_scale"] = try LoRAFixture.tensor([32, 1], seed: 5)
        refused(t, naming: "\(k).dora_scale", "DoRA")
        refused(["unet.down_blocks.0.attentions.0.proj_in.lora_A.weight": good["\(k).lora_down.weight"]!,
                 "unet.down_blocks.0.attentions.0.proj_in.lora_B.weight": good["\(k).lora_up.weight"]!,
                 "unet.down_blocks.0.attentions.0.proj_in.lora_magnitude_vector": try LoRAFixture.tensor([32], seed: 6)],
                naming: "unet.down_blocks.0.attentions.0.proj_in.lora_magnitude_vector", "DoRA")
        refused(good, naming: "__metadata__.lora_adapter_metadata", "DoRA",
                metadata: ["lora_adapter_metadata": "{\"unet.use_dora\": true, \"unet.r\": 4, \"unet.lora_alpha\": 4}"])
        t = good; t["\(k).hada_t1"] = try LoRAFixture.tensor([2, 2, 3, 3], seed: 7)
        refused(t, naming: "\(k).hada_t1", "Tucker")
        // SDXL.
        refused(["lora_te1_text_model_encoder_layers_0_mlp_fc1.lora_down.weight": good["\(k).lora_down.weight"]!],
                naming: "lora_te1_text_model_encoder_layers_0_mlp_fc1.lora_down.weight", "SDXL")
    }

    /// An SD 1.x LoRA is recognised from its 768-wide cross-attention (or its metadata) and refused.
    @Test func sd1LoRAIsRefused() throws {
        let k = "lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn2_to_k"
        let src = DictionarySource(["\(k).lora_down.weight": try LoRAFixture.tensor([4, 768], seed: 1),
                                    "\(k).lora_up.weight": try LoRAFixture.tensor([32, 4], seed: 2)])
        let e1 = #expect(throws: LoRAError.self) { try LoRAFixture.load(src) }
        if case .sd1(_, let key, _)? = e1 {
            #expect(key == "\(k).lora_down.weight")
        } else {
            Issue.record("expected an SD 1.x refusal, got \(String(describing: e1))")
        }
        #expect(e1?.description.contains("Stable Diffusion 1.x") == true)
        let ok = DictionarySource(["\(k).lora_down.weight": try LoRAFixture.tensor([4, 32], seed: 1),
                                   "\(k).lora_up.weight": try LoRAFixture.tensor([32, 4], seed: 2)])
        let e2 = #expect(throws: LoRAError.self) { try LoRAFixture.load(ok, metadata: ["ss_base_model_version": "sd_v1", "ss_v2": "False"]) }
        if case .sd1? = e2 {} else { Issue.record("expected an SD 1.x refusal, got \(String(describing: e2))") }
        #expect(throws: Never.self) { try LoRAFixture.load(ok, metadata: ["ss_base_model_version": "sd_v2", "ss_v2": "True"]) }
    }

    /// Deltas on temporal modules are left out unless included (spatial only by default);
    /// included, they merge.
    @Test func temporalTargetsNeedIncludeTemporal() throws {
        let base = try LoRAFixture.base()
        let m = "lora_unet_input_blocks_1_2_transformer_blocks_0_attn1_to_q" // a TemporalTransformer (LDM name)
        let down = try LoRAFixture.tensor([2, 32], seed: 1), up = try LoRAFixture.tensor([32, 2], seed: 2)
        let tc = "model.diffusion_model.input_blocks.1.0.temopral_conv.conv1.2" // Conv3d [32, 32, 3, 1, 1]
        let tdown = try LoRAFixture.tensor([2, 32, 3, 1, 1], seed: 3), tup = try LoRAFixture.tensor([32, 2, 1, 1, 1], seed: 4)
        let spatial = "lora_unet_down_blocks_0_attentions_0_proj_in"
        let file = try LoRAFixture.load(DictionarySource([
            "\(m).lora_down.weight": down, "\(m).lora_up.weight": up,
            "\(tc).lora_down.weight": tdown, "\(tc).lora_up.weight": tup,
            "\(spatial).lora_down.weight": down, "\(spatial).lora_up.weight": up]), base: base)
        #expect(file.temporal.count == 2 && file.deltas.count == 1)
        #expect(Set(file.temporal.map(\.target.tensor)) == ["model.diffusion_model.input_blocks.1.2.transformer_blocks.0.attn1.to_q.weight", "\(tc).weight"])
        #expect(file.temporal.allSatisfy { $0.target.origin == .temporal })

        // Default: only the spatial delta is merged; the temporal tensors keep their bytes.
        let spatialOnly = try file.check(options: LoRAOptions())
        #expect(spatialOnly.map(\.target.tensor) == ["model.diffusion_model.input_blocks.1.1.proj_in.weight"])
        let plain = try LoRAFixture.merged(base, [(file, 1.0)])
        #expect(Set(plain.plan.keys) == ["model.diffusion_model.input_blocks.1.1.proj_in.weight"])
        for t in file.temporal.map(\.target.tensor) {
            #expect(try plain.tensor(named: t)?.bytes() == base.tensor(named: t)?.bytes())
        }

        var options = LoRAOptions(); options.includeTemporal = true
        let merged = try LoRAFixture.merged(base, [(file, 1.0)], options: options)
        let name = "\(tc).weight"
        let w = try #require(try base.tensor(named: name)).floats()
        let delta = LoRAFixture.matmul(tup.floats(), tdown.floats(), m: 32, k: 2, n: 32 * 3)
        let got = try #require(try merged.tensor(named: name)).floats()
        #expect(Comparison(got, zip(w, delta).map { $0 + $1 }).maxAbs <= 1e-6)
        #expect(merged.plan.count == 3)
    }

    /// Modules the model does not have are an error unless allowed, then reported.
    @Test func unmatchedModules() throws {
        let down = try LoRAFixture.tensor([2, 32], seed: 1), up = try LoRAFixture.tensor([32, 2], seed: 2)
        let bogus = "lora_unet_down_blocks_7_attentions_0_proj_in"
        let file = try LoRAFixture.load(DictionarySource([
            "\(bogus).lora_down.weight": down, "\(bogus).lora_up.weight": up,
            "lora_unet_down_blocks_0_attentions_0_proj_in.lora_down.weight": down,
            "lora_unet_down_blocks_0_attentions_0_proj_in.lora_up.weight": up]))
        #expect(file.unmatched == [bogus])
        #expect(throws: LoRAError.unmatched(file: "test.safetensors", modules: [bogus])) { try file.check(options: LoRAOptions()) }
        var o = LoRAOptions(); o.allowUnmatched = true
        #expect(try file.check(options: o).count == 1)
    }
}

/// The merged weights drive the real UNet and text encoder to the reference outputs
/// (lora/expected_outputs).
@Suite struct LoRAMergedModelTests {
    @Test(arguments: [("kohya.safetensors", 1.0, "kohya_m1.0"), ("kohya.safetensors", 0.7, "kohya_m0.7"),
                      ("peft.safetensors", 1.0, "peft")])
    func mergedUNetEpsMatchesExpectedOutputs(lora: String, multiplier: Double, tag: String) throws {
        let base = try LoRAFixture.base()
        let source = try LoRAFixture.file(lora)
        let file = try LoRAFixture.load(source, metadata: source.metadata, name: lora, base: base)
        let merged = try LoRAFixture.merged(base, [(file, multiplier)])
        let golden = try Fixtures.golden()
        let expected = try LoRAFixture.file("expected_outputs.safetensors")

        let x = try Ops.channelsLast(try #require(try golden.tensor(named: "unet.x"))).reshaped([5, 8, 16, 4]) // [1,4,T,h,w] -> [T,h,w,4]
        let context = try #require(try golden.tensor(named: "unet.context"))                                   // [1, 77, 32]
        let unet = try UNet3D(config: TinyConfigs.vc2().unet, weights: merged)
        let eps = try unet(x: x, timesteps: [981], context: context, fps: [28], frames: 5)
        let want = try Ops.channelsLast(try #require(try expected.tensor(named: "\(tag).unet_eps_t981"))).floats()
        let c = Comparison(eps.floats(), want)
        print("merged UNet eps \(tag): \(c)")
        #expect(c.maxAbs <= 5e-5 && c.relRMS <= 2e-5, "\(tag): \(c)")
        // The LoRA moved eps far more than the tolerance (README: rel. RMS change 0.14-0.20).
        let plain = try Ops.channelsLast(try #require(try golden.tensor(named: "unet.t981.eps"))).floats()
        #expect(Comparison(plain, want).relRMS > 0.1)
    }

    /// The text encoder with the kohya-merged text weights (fused in_proj row slices included)
    /// encodes the UNet prompt ("upper_punct", golden tokenizer.ids row 2) to text_out.
    @Test(arguments: [(1.0, "kohya_m1.0"), (0.7, "kohya_m0.7")])
    func mergedTextEncoderMatchesExpectedOutputs(multiplier: Double, tag: String) throws {
        let base = try LoRAFixture.base()
        let source = try LoRAFixture.file("kohya.safetensors")
        let file = try LoRAFixture.load(source, metadata: source.metadata, name: "kohya.safetensors", base: base)
        let merged = try LoRAFixture.merged(base, [(file, multiplier)])
        let golden = try Fixtures.golden()
        let ids = try #require(try golden.tensor(named: "tokenizer.ids"))          // [13, 77] int32
        let row = try ids.rows(2, 1).floats().map { Int($0) }
        let encoder = try OpenCLIPTextEncoder.load(from: merged, config: TinyConfigs.vc2().text)
        let out = try encoder.encode(tokens: [row])                                // [1, 77, 32]
        let want = try #require(try LoRAFixture.file("expected_outputs.safetensors").tensor(named: "\(tag).text_out"))
        let c = Comparison(out.floats(), want.floats())
        print("merged text encoder \(tag): \(c)")
        #expect(c.maxAbs <= 2e-5 && c.relRMS <= 5e-6, "\(tag): \(c)")
        // Without the LoRA the output is the golden text.out row, far from the merged one.
        let plain = try #require(try golden.tensor(named: "text.out")).rows(2, 1).floats()
        #expect(Comparison(plain, want.floats()).maxAbs > 1e-2)
    }
}
