// End-to-end: the tiny golden model imported to .vcm, sampled with golden A's prompt, seed and
// settings, compared with the official PyTorch run (fixtures/vc2-tiny-a/README.md "sampling").
import Foundation
import Testing
import VCTensor
import VCFormats
import VCModels
import VCVideo
import VCTestSupport
@testable import VideoCrafter

/// Golden A's sampling run: "a black swan swims on the pond", seed 123, 4 steps, eta 1, CFG 12,
/// fps 28, 5 frames of 64x128.
func goldenParameters() -> GenerationParameters {
    var p = GenerationParameters(prompt: "a black swan swims on the pond")
    p.seed = 123
    p.steps = 4
    p.eta = 1
    p.guidance = 12
    p.fps = 28
    p.frames = 5
    p.height = 64
    p.width = 128
    return p
}

/// Imports the tiny model once per type into a shared temporary folder.
actor TinyModels {
    static let shared = TinyModels()
    private var paths: [WeightType: String] = [:]
    private let dir: TempDir

    init() {
        // A failure here surfaces in the first test that asks for a model.
        dir = (try? TempDir()) ?? TempDir.fallback
    }

    func path(_ type: WeightType) throws -> String {
        if let p = paths[type] { return p }
        let p = dir.path("tiny-\(type.rawValue).vcm")
        _ = try ImportJob(source: Fixtures.path("vc2-tiny-a/model.ckpt"), options: tinyOptions(p, type: type)).run()
        paths[type] = p
        return p
    }
}

extension TempDir {
    static let fallback = TempDir(existing: FileManager.default.temporaryDirectory.path)
}

/// Runs the golden sample from a model of `type`; returns the per-step latents and the frames.
func runGolden(_ type: WeightType) async throws -> (steps: [Tensor], result: GenerationResult) {
    let path = try await TinyModels.shared.path(type)
    let model = try TextToVideo(modelPath: path)
    var steps: [Tensor] = []
    let result = try model.generate(goldenParameters()) { e in
        if case .step(_, _, _, _, let latent) = e { steps.append(latent) }
    }
    return (steps, result)
}

@Suite("Sampling golden A end to end")
struct SampleGoldenTests {
    @Test func f32LatentsAfterEveryStepAndFramesMatchTheReference() async throws {
        let golden = try Fixtures.golden()
        let (steps, result) = try await runGolden(.f32)
        #expect(steps.count == 4)
        for (k, latent) in steps.enumerated() {
            let ref = try #require(try golden.tensor(named: "sample.step\(k).x_prev"))
            #expect(latent.shape == ref.shape)
            let c = Comparison(latent.floats(), ref.floats())
            // README tolerance for sample.step*.x_prev: max abs 0.002, rel RMS 5e-5.
            #expect(c.maxAbs <= 0.002 && c.relRMS <= 5e-5, "step \(k): \(c)")
        }
        let latent = try #require(try golden.tensor(named: "sample.latent"))
        let cl = Comparison(result.latent.floats(), latent.floats())
        #expect(cl.maxAbs <= 0.002 && cl.relRMS <= 5e-5, "latent: \(cl)")

        // Frames: float within 2e-4 / 5e-5 of sample.frames, uint8 at least 99% exact, max 2 apart.
        let refFrames = try #require(try golden.tensor(named: "sample.frames"))           // [1, 3, T, H, W]
        let ours = try Ops.channelsFirst(try result.frames.reshaped([1, 5, 64, 128, 3])) // [1, 3, T, H, W]
        let cf = Comparison(ours.floats(), refFrames.floats())
        #expect(cf.maxAbs <= 2e-4 && cf.relRMS <= 5e-5, "frames: \(cf)")
        let u8 = try #require(try golden.tensor(named: "sample.frames_u8")).bytes()        // [T, H, W, 3]
        let mine = try Frame.frames(fromChannelsLast: result.frames.floats(), frames: 5, height: 64, width: 128).flatMap(\.rgb)
        #expect(mine.count == u8.count)
        let exact = zip(mine, u8).filter { $0 == $1 }.count
        let maxDiff = zip(mine, u8).map { abs(Int($0) - Int($1)) }.max() ?? 0
        #expect(Double(exact) / Double(u8.count) >= 0.99, "exact \(exact) of \(u8.count)")
        #expect(maxDiff <= 2)
    }

    /// Quantised model files against the golden frames (README yardsticks: f16 >= 53 dB,
    /// bf16 >= 42 dB, q8 (q8_0 UNet, f16 rest, the VAE's 3x3 convs int8 at run time) >= 34 dB).
    @Test(arguments: [(WeightType.f16, 53.0), (.bf16, 42.0), (.q8, 34.0)])
    func quantisedModelsMeetThePSNRYardsticks(type: WeightType, minimum: Double) async throws {
        let golden = try Fixtures.golden()
        let (_, result) = try await runGolden(type)
        let u8 = try #require(try golden.tensor(named: "sample.frames_u8")).bytes()
        let mine = try Frame.frames(fromChannelsLast: result.frames.floats(), frames: 5, height: 64, width: 128).flatMap(\.rgb)
        let db = psnr(mine, u8)
        #expect(db >= minimum, "\(type.rawValue): \(db) dB")
    }

    /// `GenerationParameters.precision`: `.fast` runs the q8 UNet with int8 activations (lower
    /// quality than the balanced default, as documented), `.balanced` gives the default's bits,
    /// and the caller's thread setting is back afterwards.
    @Test func precisionParameterSelectsTheActivationPrecision() async throws {
        let golden = try Fixtures.golden()
        let u8 = try #require(try golden.tensor(named: "sample.frames_u8")).bytes()
        let model = try TextToVideo(modelPath: try await TinyModels.shared.path(.q8))
        func frames(_ precision: Ops.GEMMPrecision?) throws -> [UInt8] {
            var p = goldenParameters()
            p.precision = precision
            let r = try model.generate(p)
            return try Frame.frames(fromChannelsLast: r.frames.floats(), frames: 5, height: 64, width: 128).flatMap(\.rgb)
        }
        let before = Ops.gemmPrecision
        let byDefault = try frames(nil), balanced = try frames(.balanced), fast = try frames(.fast)
        #expect(Ops.gemmPrecision == before)
        #expect(balanced == byDefault)
        let (dbDefault, dbFast) = (psnr(byDefault, u8), psnr(fast, u8))
        #expect(dbDefault >= 34 && dbFast < dbDefault - 3, "balanced \(dbDefault) dB, fast \(dbFast) dB")
    }

    /// The VAE runs int8 in a q8 model, bf16 in a bf16 model, f32 otherwise and in exact mode.
    @Test func vaeArithmeticFollowsTheModelTypeAndPrecision() async throws {
        var p = goldenParameters()
        let q8 = try TextToVideo(modelPath: try await TinyModels.shared.path(.q8))
        let bf16 = try TextToVideo(modelPath: try await TinyModels.shared.path(.bf16))
        let f16 = try TextToVideo(modelPath: try await TinyModels.shared.path(.f16))
        #expect(q8.unetMatrixType == .q8_0 && bf16.unetMatrixType == .bf16 && f16.unetMatrixType == .f16)
        for precision in [nil, Ops.GEMMPrecision.balanced, .fast] {
            p.precision = precision
            #expect(q8.vaeArithmetic(p) == .q8 && bf16.vaeArithmetic(p) == .bf16 && f16.vaeArithmetic(p) == .f32,
                    "\(String(describing: precision))")
        }
        p.precision = .exact
        #expect(q8.vaeArithmetic(p) == .f32 && bf16.vaeArithmetic(p) == .f32)
    }

    /// `vcrun bench --component vae` on the tiny q8 model: every frame of every repeat timed,
    /// the arithmetic a sample would use, the FLOP count of the model's own configuration.
    @Test func vaeBenchTimesEveryFrameWithTheSampleArithmetic() async throws {
        var o = BenchOptions()
        o.modelPath = try await TinyModels.shared.path(.q8)
        o.frames = 2; o.repeats = 2; o.warmup = 1; o.height = 64; o.width = 128; o.threads = 2
        let r = try Bench.vae(o)
        #expect(r.convArithmetic == "q8" && r.weightType == "f16")
        #expect(r.frameSeconds.count == 4 && r.frameSeconds.allSatisfy { $0 > 0 })
        let model = try TextToVideo(modelPath: try #require(o.modelPath))
        let m = VAEDecoder.decodeMACs(config: model.config.vae, latentHeight: 8, latentWidth: 16)
        #expect(abs(r.gflop - 2 * (m.gemm + m.attention) / 1e9) < 1e-12)
        #expect(r.percentOfPeak > 0 && r.peakGflops == MachinePeak.int8GOPS)
        o.precision = .exact
        o.repeats = 1
        let exact = try Bench.vae(o)
        #expect(exact.convArithmetic == "f32" && exact.peakGflops == MachinePeak.f32GFLOPS)
        o.frames = 0
        #expect(throws: BenchError.self) { try Bench.vae(o) }
    }

    @Test func sampleJobWritesAnMP4WithEveryFrameAndTheParameters() async throws {
        let model = try await TinyModels.shared.path(.f32)
        let tmp = try TempDir()
        defer { tmp.remove() }
        var out = SampleOutput(path: tmp.path("swan.mp4"))
        out.saveFps = 10
        out.saveLatents = tmp.path("latents.safetensors")
        let summary = try SampleJob.run(modelPath: model, parameters: goldenParameters(), output: out)
        let (probe, _) = try VideoProbe.probe(path: summary.output)
        #expect(probe.frames == 5)
        #expect(probe.pixelFormat == "yuv420p")
        #expect(probe.codec == "h264")
        #expect(probe.fpsNumerator == 10 && probe.fpsDenominator == 1)
        #expect(probe.width == 128 && probe.height == 64)
        // The sidecar records the seed and prompt; the latents file holds the golden final latent.
        let sidecar = try #require(summary.sidecar)
        let json = try #require(try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: sidecar))) as? [String: Any])
        #expect(json["seed"] as? String == "123")
        #expect(json["prompt"] as? String == "a black swan swims on the pond")
        let lat = try SafetensorsFile(path: tmp.path("latents.safetensors"))
        let ref = try #require(try Fixtures.golden().tensor(named: "sample.latent"))
        let c = Comparison(try #require(try lat.tensor(named: "latent")).floats(), ref.floats())
        #expect(c.maxAbs <= 0.002)
        #expect(tmp.files() == ["latents.safetensors", "swan.mp4", "swan.mp4.json"])
    }

    /// The two ways of running the guidance branches give the same latents (golden A, 4 steps):
    /// the UNet treats batch rows independently.
    @Test func sequentialAndBatchedGuidanceAgree() async throws {
        let model = try TextToVideo(modelPath: try await TinyModels.shared.path(.f32))
        var p = goldenParameters()
        p.guidanceBatching = .batched
        let batched = try model.generate(p).latent.floats()
        p.guidanceBatching = .sequential
        let sequential = try model.generate(p).latent.floats()
        let c = Comparison(sequential, batched)
        #expect(c.maxAbs <= 1e-5, "max abs difference \(c.maxAbs)")
    }

    @Test func badRequestsFailBeforeAnyHeavyWorkAndWriteNothing() async throws {
        let model = try await TinyModels.shared.path(.f32)
        let tmp = try TempDir()
        defer { tmp.remove() }
        var p = goldenParameters()
        p.height = 72   // not a multiple of 64
        #expect(throws: GenerationError.self) { try SampleJob.run(modelPath: model, parameters: p, output: SampleOutput(path: tmp.path("a.mp4"))) }
        p = goldenParameters()
        p.frames = 0
        #expect(throws: GenerationError.self) { try SampleJob.run(modelPath: model, parameters: p, output: SampleOutput(path: tmp.path("b.mp4"))) }
        p = goldenParameters()
        p.frames = 100_000   // refused with the memory it would need
        do {
            _ = try SampleJob.run(modelPath: model, parameters: p, output: SampleOutput(path: tmp.path("c.mp4")))
            Issue.record("an absurd frame count was accepted")
        } catch let e as GenerationError {
            #expect(e.message.contains("MiB"))
        }
        // An output folder that does not exist.
        #expect(throws: (any Error).self) {
            try SampleJob.run(modelPath: model, parameters: goldenParameters(), output: SampleOutput(path: tmp.path("no/such/dir/x.mp4")))
        }
        // A model file that is not a .vcm.
        #expect(throws: (any Error).self) {
            try SampleJob.run(modelPath: Fixtures.path("vc2-tiny-a/config.yaml"), parameters: goldenParameters(), output: SampleOutput(path: tmp.path("d.mp4")))
        }
        #expect(tmp.files().isEmpty)
    }
}
