import Foundation
import Testing
import VCFormats
import VCModels
import VCTensor
import VCTestSupport

/// The vc2-tiny-a UNet hyperparameters (fixtures/vc2-tiny-a/config.yaml, unet_config.params).
func tinyUNetConfig() -> UNetConfig {
    var c = UNetConfig()
    c.inChannels = 4
    c.outChannels = 4
    c.modelChannels = 32
    c.attentionResolutions = [4, 2, 1]
    c.numResBlocks = 2
    c.channelMult = [1, 1, 1, 2]
    c.numHeadChannels = 16
    c.transformerDepth = 1
    c.contextDim = 32
    c.useLinear = true
    c.temporalConv = true
    c.temporalAttention = true
    c.temporalSelfAttOnly = true
    c.useRelativePosition = false
    c.useCausalAttention = false
    c.temporalLength = 5
    c.additionAttention = true
    c.fpsCond = true
    return c
}

/// Serves the UNet tensors of another source converted to a weight type, the way the golden
/// bundle's quantisation yardsticks were made: `allParameters` converts every UNet tensor
/// (fp16_all / bf16_all: biases and norms are rounded too, then widened back by the binder);
/// otherwise only Linear/Conv weights (rank >= 2) are converted (q8_0_unet).
struct ConvertedSource: TensorSource {
    let base: any TensorSource
    let target: DType
    let allParameters: Bool

    var tensorNames: [String] { base.tensorNames }

    func tensor(named name: String) throws -> Tensor? {
        guard let t = try base.tensor(named: name) else { return nil }
        guard name.hasPrefix(UNet3D.prefix) else { return t }
        if allParameters || (name.hasSuffix(".weight") && t.rank >= 2) { return try t.converted(to: target) }
        return t
    }
}

/// Hides or adds tensors (binding-error tests).
struct EditedSource: TensorSource {
    let base: any TensorSource
    let hidden: Set<String>
    let extra: [String: Tensor]

    var tensorNames: [String] { base.tensorNames.filter { !hidden.contains($0) } + extra.keys.sorted() }

    func tensor(named name: String) throws -> Tensor? {
        if hidden.contains(name) { return nil }
        return try extra[name] ?? base.tensor(named: name)
    }
}

@Suite("VideoCrafter2 UNet against the official reference (vc2-tiny-a)")
struct UNetTests {
    static let frames = 5
    static let fps = 28

    let golden: SafetensorsFile
    let model: SafetensorsFile

    init() throws {
        golden = try Fixtures.golden()
        model = try Fixtures.tinyModel()
    }

    func goldenTensor(_ name: String) throws -> Tensor {
        try #require(try golden.tensor(named: name), "golden tensor \(name)")
    }

    /// A golden tensor in our channels-last layout, flattened: [B*T, C, H, W] -> [B*T, H, W, C],
    /// [B, C, T, H, W] -> [B, T, H, W, C] (= our [B*T, H, W, C] rows); rank-2 tensors as they are.
    func goldenChannelsLast(_ name: String) throws -> [Float] {
        let t = try goldenTensor(name)
        return t.rank >= 3 ? try Ops.channelsLast(t).floats() : t.floats()
    }

    /// unet.x as channels-last latents [T, h, w, 4].
    func latents() throws -> Tensor {
        let x = try Ops.channelsLast(goldenTensor("unet.x"))          // [1, 4, T, h, w] -> [1, T, h, w, 4]
        return try x.reshaped([Self.frames, 8, 16, 4])
    }

    func context() throws -> Tensor { try goldenTensor("unet.context") }   // [1, 77, 32]

    func unet(_ source: (any TensorSource)? = nil) throws -> UNet3D {
        try UNet3D(config: tinyUNetConfig(), weights: source ?? model)
    }

    func epsRows(_ eps: Tensor) -> [Float] { eps.floats() }   // [T, h, w, 4] = golden [1, T, h, w, 4]

    @Test func everyHookAtT981MatchesTheReference() throws {
        nonisolated(unsafe) var hooks: [String: Tensor] = [:]
        let eps = try unet()(x: latents(), timesteps: [981], context: context(), fps: [Self.fps], frames: Self.frames,
                             observer: { name, t in hooks[name] = t })
        let names = golden.tensorNames.filter { $0.hasPrefix("unet.t981.") && $0 != "unet.t981.eps" }.sorted()
        #expect(names.count >= 60)
        var worst = 0.0
        for name in names {
            let hook = String(name.dropFirst("unet.t981.".count))
            guard let ours = hooks[hook] else {
                Issue.record("hook \(hook) was not emitted")
                continue
            }
            let expected = try goldenChannelsLast(name)
            guard ours.count == expected.count else {
                Issue.record("hook \(hook): \(ours.shape) vs golden \(try goldenTensor(name).shape)")
                continue
            }
            let c = Comparison(ours.floats(), expected)
            worst = max(worst, c.relRMS)
            print("unet hook \(hook): \(c)")
            #expect(c.relRMS <= 1e-4, "hook \(hook): \(c)")
        }
        print("unet hooks: worst rel RMS \(worst) over \(names.count) hooks")
        // The final hook is the returned eps.
        #expect(hooks["out"].map { $0.floats() == eps.floats() } == true)
    }

    @Test(arguments: [981, 1])
    func epsMatchesTheReference(t: Int) throws {
        nonisolated(unsafe) var hooks: [String: Tensor] = [:]
        let eps = try unet()(x: latents(), timesteps: [t], context: context(), fps: [Self.fps], frames: Self.frames,
                             observer: { name, x in hooks[name] = x })
        #expect(eps.shape == [Self.frames, 8, 16, 4])
        let c = Comparison(epsRows(eps), try goldenChannelsLast("unet.t\(t).eps"))
        print("unet.t\(t).eps: \(c)")
        #expect(c.maxAbs <= 5e-5, "unet.t\(t).eps: \(c)")
        #expect(c.relRMS <= 2e-5, "unet.t\(t).eps: \(c)")
        // The embedding hooks exist for both timesteps.
        for hook in ["time_sinusoid", "time_embed", "fps_sinusoid", "fps_embed", "emb"] {
            let h = try #require(hooks[hook])
            let e = Comparison(h.floats(), try goldenChannelsLast("unet.t\(t).\(hook)"))
            #expect(e.relRMS <= 1e-4, "t=\(t) \(hook): \(e)")
        }
    }

    @Test func batchOfTwoEqualsTwoSingleCalls() throws {
        let net = try unet()
        let x0 = try latents()
        // A second, different item: the latent mirrored in value and another context.
        let x1 = try Tensor(shape: x0.shape, floats: x0.floats().map { 0.5 - 0.8 * $0 })
        let c0 = try context()
        let c1 = try Tensor(shape: c0.shape, floats: c0.floats().reversed().map { $0 * 0.7 })
        let single0 = try net(x: x0, timesteps: [981], context: c0, fps: [28], frames: Self.frames)
        let single1 = try net(x: x1, timesteps: [501], context: c1, fps: [16], frames: Self.frames)
        let xb = try Tensor(shape: [2 * Self.frames, 8, 16, 4], floats: x0.floats() + x1.floats())
        let cb = try Tensor(shape: [2, 77, 32], floats: c0.floats() + c1.floats())
        let both = try net(x: xb, timesteps: [981, 501], context: cb, fps: [28, 16], frames: Self.frames)
        #expect(both.shape == [2 * Self.frames, 8, 16, 4])
        let bf = both.floats(), n = single0.count
        let c0cmp = Comparison(Array(bf[0..<n]), single0.floats())
        let c1cmp = Comparison(Array(bf[n...]), single1.floats())
        print("batch 2 vs single: item 0 \(c0cmp); item 1 \(c1cmp)")
        // Same kernels on the same rows; only BLAS blocking over a taller M may reorder sums.
        #expect(c0cmp.maxAbs <= 1e-5 && c1cmp.maxAbs <= 1e-5)
        // The items really differ (so the check above is not vacuous).
        #expect(Comparison(single0.floats(), single1.floats()).relRMS > 0.1)
    }

    @Test func latentSizeNotDivisibleByEightThrows() throws {
        let net = try unet()
        let x = Tensor(zeros: [Self.frames, 12, 16, 4])
        #expect(throws: UNetError.latentSizeNotDivisible(height: 12, width: 16, factor: 8)) {
            _ = try net(x: x, timesteps: [981], context: try context(), fps: [28], frames: Self.frames)
        }
        let y = Tensor(zeros: [Self.frames, 8, 20, 4])
        do {
            _ = try net(x: y, timesteps: [981], context: try context(), fps: [28], frames: Self.frames)
            Issue.record("8x20 latent accepted")
        } catch let e as UNetError {
            #expect(e == .latentSizeNotDivisible(height: 8, width: 20, factor: 8))
            #expect(e.description.contains("multiples of 64"))
        }
        // Mismatched batch / frames / context are input errors, not crashes.
        #expect(throws: UNetError.self) {
            _ = try net(x: Tensor(zeros: [4, 8, 16, 4]), timesteps: [981], context: try context(), fps: [28], frames: Self.frames)
        }
        #expect(throws: UNetError.self) {
            _ = try net(x: Tensor(zeros: [5, 8, 16, 4]), timesteps: [981], context: Tensor(zeros: [1, 77, 16]), fps: [28], frames: Self.frames)
        }
        #expect(throws: UNetError.self) {
            _ = try net(x: Tensor(zeros: [5, 8, 16, 4]), timesteps: [981], context: try context(), fps: [], frames: Self.frames)
        }
    }

    @Test func bindingIsStrict() throws {
        let missing = "model.diffusion_model.middle_block.3.temopral_conv.conv4.3.weight"
        let extra = "model.diffusion_model.output_blocks.12.0.in_layers.0.weight"
        let src = EditedSource(base: model, hidden: [missing], extra: [extra: Tensor(zeros: [32])])
        do {
            _ = try unet(src)
            Issue.record("binding accepted a missing and an unexpected tensor")
        } catch let e as BindingError {
            #expect(e.missing.contains { $0.hasPrefix(missing) })
            #expect(e.unexpected == [extra])
        }
        // A config that disagrees with the weights (wider heads change nothing, wider levels do).
        var wrong = tinyUNetConfig()
        wrong.channelMult = [1, 1, 2, 2]
        #expect(throws: BindingError.self) { _ = try UNet3D(config: wrong, weights: model) }
    }

    /// Quantised weights against the fp32 golden. Yardsticks (README, same model, fp32 compute):
    /// unet.t981.eps rel RMS fp16_all 0.001642, bf16_all 0.01332, q8_0_unet 0.03482. Our
    /// conversions round the same tensors the same way (round-to-nearest-even; q8_0 blocks of 32
    /// with d = amax/127 as fp16) and compute in fp32, so the error should land near the yardstick:
    /// we accept [0.5x, 1.5x] (different fp32 summation order moves it by far less; the lower
    /// bound proves the weights really were converted).
    @Test(arguments: [(DType.f16, true, 0.001642), (DType.bf16, true, 0.01332), (DType.q8_0, false, 0.03482)])
    func quantisedWeightsStayNearTheYardstick(dtype: DType, all: Bool, yardstick: Double) throws {
        let net = try unet(ConvertedSource(base: model, target: dtype, allParameters: all))
        let eps = try net(x: latents(), timesteps: [981], context: context(), fps: [Self.fps], frames: Self.frames)
        let c = Comparison(epsRows(eps), try goldenChannelsLast("unet.t981.eps"))
        print("unet.t981.eps with \(dtype.rawValue) weights: \(c) (yardstick rel RMS \(yardstick), ratio \(c.relRMS / yardstick))")
        #expect(c.relRMS <= 1.5 * yardstick, "\(dtype.rawValue): \(c)")
        #expect(c.relRMS >= 0.5 * yardstick, "\(dtype.rawValue): \(c)")
    }
}

/// Every `model.diffusion_model.*` key of the real VideoCrafter2 checkpoint with its shape
/// (fixtures/videocrafter2-state-dict-keys.tsv), served as views of one shared zero buffer so
/// the 1.4 B-parameter UNet binds with ~52 MB.
struct ShapeOnlySource: TensorSource {
    let shapes: [String: [Int]]
    let storage: Storage

    init(tsv path: String) throws {
        var shapes: [String: [Int]] = [:]
        for line in try String(contentsOfFile: path, encoding: .utf8).split(separator: "\n").dropFirst() {
            let cols = line.split(separator: "\t")
            guard cols.count == 3, cols[0].hasPrefix(UNet3D.prefix) else { continue }
            shapes[String(cols[0])] = cols[1].split(separator: "x").compactMap { Int($0) }
        }
        self.shapes = shapes
        storage = Storage(byteCount: (shapes.values.map { $0.reduce(1, *) }.max() ?? 1) * 4)
    }

    var tensorNames: [String] { shapes.keys.sorted() }

    func tensor(named name: String) throws -> Tensor? {
        guard let s = shapes[name] else { return nil }
        return try Tensor(shape: s, dtype: .f32, storage: storage)
    }
}

@Suite("VideoCrafter2 UNet block list at full size")
struct UNetFullSizeTests {
    @Test func realConfigBindsEveryCheckpointKey() throws {
        let src = try ShapeOnlySource(tsv: Fixtures.path("videocrafter2-state-dict-keys.tsv"))
        #expect(src.shapes.count == 1484)
        // Strict binding: throws if any key is missing, left over or shaped differently.
        let net = try UNet3D(config: ModelConfig.vc2_512.unet, weights: src)
        #expect(net.sizeMultiple == 8)
    }
}
