import Testing
import VCTensor
import VCModels
import VCTestSupport

/// OpenCLIP text tower against golden A (fixtures/vc2-tiny-a): the official
/// FrozenOpenCLIPEmbedder run by torch fp32 on CPU.
@Suite("OpenCLIP text encoder vs golden A")
struct TextEncoderTests {
    static let prefix = OpenCLIPTextEncoder.defaultPrefix
    /// README tolerances for text.out.
    static let outMaxAbs = 2e-5, outRelRMS = 5e-6
    /// README tolerance for intermediates.
    static let hiddenRelRMS = 1e-4

    static func ids() throws -> [[Int]] {
        let t = try TinyA.golden("tokenizer.ids")   // [13, 77] int32
        let v = t.floats().map { Int($0) }
        return (0..<t.shape[0]).map { Array(v[($0 * 77)..<(($0 + 1) * 77)]) }
    }

    static func encoder(_ source: any TensorSource) throws -> OpenCLIPTextEncoder {
        try OpenCLIPTextEncoder.load(from: source, config: TinyA.text)
    }

    @Test func outputMatchesGoldenForAllPrompts() throws {
        let ids = try Self.ids()
        #expect(ids.count == 13)
        let out = try Self.encoder(try Fixtures.tinyModel()).encode(tokens: ids)
        #expect(out.shape == [13, 77, 32])
        let c = Comparison(out.floats(), try TinyA.golden("text.out").floats())
        print("text.out: \(c)")
        #expect(c.maxAbs <= Self.outMaxAbs)
        #expect(c.relRMS <= Self.outRelRMS)
    }

    @Test func hiddenStatesMatchGolden() throws {
        let plain = try Self.ids()[1]   // golden text.hidden.* are for prompt "plain" alone
        var seen: [String: Tensor] = [:]
        let out = try Self.encoder(try Fixtures.tinyModel()).encode(tokens: [plain]) { seen[$0] = $1 }
        #expect(Set(seen.keys) == ["embed", "block0", "block1", "ln_final"])
        for (name, value) in seen.sorted(by: { $0.key < $1.key }) {
            let ref = try TinyA.golden("text.hidden.\(name)")
            #expect(value.shape == ref.shape)
            let c = Comparison(value.floats(), ref.floats())
            print("text.hidden.\(name): \(c)")
            #expect(c.relRMS <= Self.hiddenRelRMS, "text.hidden.\(name)")
        }
        // The last hidden state is the output, held to the output tolerance.
        let c = Comparison(out.floats(), try TinyA.golden("text.hidden.ln_final").floats())
        #expect(c.maxAbs <= Self.outMaxAbs && c.relRMS <= Self.outRelRMS)
    }

    /// All of text+VAE rounded to fp16, fp32 compute: the README's fp16_all run measured
    /// text_cond (prompt "plain") rel RMS 5.988e-4 vs the fp32 golden. Same rounded weights and
    /// fp32 arithmetic should land on that figure up to fp32 noise (~1e-6 relative to the output), so we
    /// assert it within 2 % (measured: 5.9885e-4): below (weights not really f16) or above (f16 path
    /// broken) both fail.
    @Test func float16WeightsMatchTheFp16Yardstick() throws {
        let src = WeightVariantSource(base: try Fixtures.tinyModel(), prefix: Self.prefix, dtype: .f16)
        let enc = try Self.encoder(src)
        let out = try enc.encode(tokens: [try Self.ids()[1]])
        var ref = try TinyA.golden("text.out").floats()
        ref = Array(ref[(77 * 32)..<(2 * 77 * 32)])
        let c = Comparison(out.floats(), ref)
        print("text f16 (plain): \(c); weight rel RMS \(try src.weightRelRMS())")
        #expect(abs(c.relRMS - 5.988e-4) <= 0.02 * 5.988e-4)
        // All prompts: the same order of magnitude.
        let all = Comparison(try enc.encode(tokens: try Self.ids()).floats(), try TinyA.golden("text.out").floats())
        print("text f16 (all prompts): \(all)")
        #expect(all.relRMS < 2e-3)
    }

    /// q8_0 weights (every matrix of the tower, embeddings included). There is no q8_0 text
    /// yardstick in the README; the fp16 run shows the output error of this tower is about 2.9x
    /// the weight rel RMS error (5.99e-4 / 2.08e-4). We assert the q8_0 output error stays below
    /// 6x its own weight error (twice that amplification) and above 0.5x (the quantised weights
    /// are really used).
    @Test func q8WeightsStayWithinTheWeightRoundingYardstick() throws {
        let src = WeightVariantSource(base: try Fixtures.tinyModel(), prefix: Self.prefix, dtype: .q8_0)
        let w = try src.weightRelRMS()
        let out = try Self.encoder(src).encode(tokens: try Self.ids())
        let c = Comparison(out.floats(), try TinyA.golden("text.out").floats())
        print("text q8_0 (all prompts): \(c); weight rel RMS \(w)")
        #expect(c.relRMS <= 6 * w)
        #expect(c.relRMS >= 0.5 * w)
    }

    @Test func strictBindingListsEveryProblem() throws {
        let base = try Fixtures.tinyModel()
        // The unused tensors (last block, projection, logit scale) are accepted as they are.
        _ = try Self.encoder(base)
        // (EditedSource is the UNet tests' helper; `extra` entries also replace tensors of `base`.)
        let edited = EditedSource(base: base, hidden: ["\(Self.prefix)transformer.resblocks.1.mlp.c_fc.bias"], extra: [
            "\(Self.prefix)ln_final.weight": Tensor(zeros: [33]),
            "\(Self.prefix)transformer.resblocks.3.ln_1.weight": Tensor(zeros: [32]),
        ])
        let error = try #require(throws: BindingError.self) { try Self.encoder(edited) }
        #expect(error.missing == ["\(Self.prefix)transformer.resblocks.1.mlp.c_fc.bias [128]"])
        #expect(error.misshapen == ["\(Self.prefix)ln_final.weight: expected [32], found [33]"])
        #expect(error.unexpected == ["\(Self.prefix)transformer.resblocks.3.ln_1.weight"])
        // With layer "last" block 2 is used, so nothing is missing.
        var last = TinyA.text
        last.layer = "last"
        _ = try OpenCLIPTextEncoder.load(from: base, config: last)
    }

    @Test func rejectsMalformedTokenInput() throws {
        let enc = try Self.encoder(try Fixtures.tinyModel())
        #expect(throws: TensorError.self) { try enc.encode(tokens: [[49406, 49407]]) }
        #expect(throws: TensorError.self) { try enc.encode(tokens: [Array(repeating: 49408, count: 77)]) }
        #expect(throws: TensorError.self) { try enc.encode(tokens: [[Int]]()) }
    }

    /// The shape table behind `RandomWeights` names exactly the tensors of the tiny checkpoint and
    /// of the full-size VC2 state dict.
    @Test func parameterShapesMatchCheckpoints() throws {
        #expect(OpenCLIPTextEncoder.parameterShapes(config: TinyA.text) == (try tinyKeyShapes(prefix: Self.prefix)))
        let full = OpenCLIPTextEncoder.parameterShapes(config: TextEncoderConfig())
        #expect(full == (try fullSizeKeyShapes(prefix: Self.prefix)))
        #expect(full.count == 294)
        // Random weights at those shapes bind strictly.
        _ = try OpenCLIPTextEncoder.load(from: RandomWeights(shapes: OpenCLIPTextEncoder.parameterShapes(config: TinyA.text)),
                                         config: TinyA.text)
    }
}
