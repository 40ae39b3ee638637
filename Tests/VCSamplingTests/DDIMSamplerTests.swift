import Testing
import VCFormats
import VCTensor
import VCTestSupport
@testable import VCSampling

/// Max distance in units in the last place between two float arrays.
func maxULP(_ a: [Float], _ b: [Float]) -> Int {
    func ordered(_ x: Float) -> Int64 {
        let b = Int64(Int32(bitPattern: x.bitPattern))
        return b < 0 ? Int64(Int32.min) - b : b
    }
    return zip(a, b).map { Int(abs(ordered($0) - ordered($1))) }.max() ?? 0
}

@Suite("Noise schedule and DDIM tables")
struct NoiseScheduleTests {
    @Test("computed buffers equal the checkpoint's float32 buffers bit for bit")
    func buffersMatchCheckpoint() throws {
        let model = try Fixtures.tinyModel()
        let s = try NoiseSchedule()
        let ac = try golden(model, "alphas_cumprod")
        let betas = try golden(model, "betas")
        let scale = try golden(model, "scale_arr")
        #expect(bitMismatches(s.alphasCumprod, ac) == 0)
        #expect(bitMismatches(s.betas.map { Float($0) }, betas) == 0)
        #expect(s.scaleArr?.count == 1400)
        #expect(bitMismatches(s.scaleArr ?? [], scale) == 0)
    }

    @Test("spec check values")
    func specValues() throws {
        let s = try NoiseSchedule()
        #expect(s.alphasCumprod[0] == 0.99915)
        #expect(abs(s.alphasCumprod[1] - 0.998296) < 5e-7)
        #expect(abs(s.alphasCumprod[999] - 0.0046601) < 5e-8)
        #expect(s.scaleArr?[0] == 1 && s.scaleArr?[399] == 0.7 && s.scaleArr?[981] == 0.7)
        var fixed = NoiseScheduleConfiguration()
        fixed.fixScaleBug = true
        #expect(try NoiseSchedule(fixed).scaleArr?.count == 1000)
        fixed.useScale = false
        #expect(try NoiseSchedule(fixed).scaleArr == nil)
    }

    @Test("DDIM timesteps: +1 offset, uniform, counts for S not dividing 1000")
    func timesteps() throws {
        #expect(try NoiseSchedule.ddimTimesteps(steps: 4) == [1, 251, 501, 751])
        let t50 = try NoiseSchedule.ddimTimesteps(steps: 50)
        #expect(t50.count == 50 && t50.first == 1 && t50.last == 981 && t50[1] == 21)
        let t60 = try NoiseSchedule.ddimTimesteps(steps: 60)   // c = 16
        #expect(t60.count == 63 && t60.last == 993)
        #expect(try NoiseSchedule.ddimTimesteps(steps: 500).last == 999)
        // The official code indexes alphas_cumprod[1000] here and fails; the entry is dropped.
        #expect(try NoiseSchedule.ddimTimesteps(steps: 3) == [1, 334, 667])
        #expect(try NoiseSchedule.ddimTimesteps(steps: 1000).count == 999)
        for s in 1...1000 {
            let ts = try NoiseSchedule.ddimTimesteps(steps: s)
            #expect(ts.count >= min(s, 999) && ts.allSatisfy { $0 >= 1 && $0 < 1000 }, "steps \(s)")
        }
        #expect(throws: SamplingError.self) { try NoiseSchedule.ddimTimesteps(steps: 0) }
        #expect(throws: SamplingError.self) { try NoiseSchedule.ddimTimesteps(steps: 1001) }
    }

    @Test("S = 50 reference table of the spec (section 3.1)")
    func spec50Table() throws {
        let steps = try NoiseSchedule().ddimSteps(count: 50, eta: 1)
        #expect(steps.count == 50)
        // (position in iteration order, t, a_t, a_prev, sigma, scale_t, scale_prev)
        let rows: [(Int, Int, Float, Float, Float, Float, Float)] = [
            (0, 981, 0.00577550, 0.00728173, 0.45446329, 0.7, 0.7),
            (1, 961, 0.00728173, 0.00911731, 0.44828246, 0.7, 0.7),
            (2, 941, 0.00911731, 0.01133791, 0.44206041, 0.7, 0.7),
            (47, 41, 0.96087277, 0.98038077, 0.09988733, 0.969173, 0.984211),
            (48, 21, 0.98038077, 0.99829602, 0.03947960, 0.984211, 0.999248),
            (49, 1, 0.99829602, 0.99914998, 0.02064835, 0.999248, 1.0),
        ]
        for (k, t, a, ap, sig, sc, scp) in rows {
            let c = steps[k]
            #expect(c.timestep == t && c.index == 49 - k)
            #expect(abs(c.alpha - a) < 1e-7 && abs(c.alphaPrev - ap) < 1e-7, "step \(k)")
            #expect(abs(c.sigma - sig) < 1e-7, "step \(k) sigma \(c.sigma)")
            #expect(abs(c.scale - sc) < 1e-6 && abs(c.scalePrev - scp) < 1e-6, "step \(k)")
        }
    }

    @Test("4-step coefficients equal golden sample.coef.* bit for bit")
    func goldenCoefficients() throws {
        let g0 = try Fixtures.golden()
        let steps = try NoiseSchedule().ddimSteps(count: 4, eta: 1)
        let ts = try #require(try g0.tensor(named: "sample.timesteps")).floats().map { Int($0) }
        #expect(steps.map(\.timestep) == ts)
        let fields: [(String, KeyPath<DDIMStepCoefficients, Float>)] = [
            ("a_t", \.alpha), ("a_prev", \.alphaPrev), ("sigma_t", \.sigma),
            ("sqrt_one_minus_a_t", \.sqrtOneMinusAlpha), ("scale_t", \.scale), ("scale_prev", \.scalePrev),
        ]
        for (name, path) in fields {
            #expect(bitMismatches(steps.map { $0[keyPath: path] }, try golden(g0, "sample.coef.\(name)")) == 0, "\(name)")
        }
    }

    @Test("schedule from checkpoint buffers equals the computed one")
    func fromBuffers() throws {
        let model = try Fixtures.tinyModel()
        let s = try NoiseSchedule(alphasCumprod: try golden(model, "alphas_cumprod"), scaleArr: try golden(model, "scale_arr"))
        let a = try s.ddimSteps(count: 50), b = try NoiseSchedule().ddimSteps(count: 50)
        #expect(a == b)
        #expect(throws: SamplingError.self) { try NoiseSchedule(alphasCumprod: [0.9, 0.95], scaleArr: nil) }
        #expect(throws: SamplingError.self) { try NoiseSchedule(alphasCumprod: [0.9, 0.5], scaleArr: [1]) }
    }
}

@Suite("DDIM sampler against the golden 4-step run")
struct DDIMSamplerTests {
    static let shape = [1, 4, 5, 8, 16]

    @Test("CFG from golden e_cond/e_uncond reproduces e_guided bit for bit (plain and batched)")
    func guidance() throws {
        let g0 = try Fixtures.golden()
        let cfg = ClassifierFreeGuidance(scale: 12)
        for k in 0..<4 {
            let c = try golden(g0, "sample.step\(k).e_cond"), u = try golden(g0, "sample.step\(k).e_uncond")
            let want = try golden(g0, "sample.step\(k).e_guided")
            #expect(bitMismatches(try cfg.combine(conditional: c, unconditional: u), want) == 0, "step \(k)")
            let batched = try Tensor(shape: [10, 4, 8, 16], floats: u + c)   // [2*B*T, ...], uncond first
            let viaBatch = try cfg.combine(batched: batched, order: .unconditionalFirst)
            #expect(viaBatch.shape == [5, 4, 8, 16])
            #expect(bitMismatches(viaBatch.floats(), want) == 0)
        }
        #expect(!ClassifierFreeGuidance(scale: 1).needsUnconditional)
        #expect(throws: SamplingError.self) { try cfg.combine(batched: Tensor(zeros: [3, 2]), order: .conditionalFirst) }
    }

    @Test("each golden step: x, e_guided and noise give pred_x0 and x_prev bit for bit")
    func stepUpdates() throws {
        let g0 = try Fixtures.golden()
        let steps = try NoiseSchedule().ddimSteps(count: 4, eta: 1)
        var x = try golden(g0, "sample.x_T")
        for k in 0..<4 {
            let (next, pred) = try DDIMSampler.update(
                x: x, eps: try golden(g0, "sample.step\(k).e_guided"),
                noise: try golden(g0, "sample.step\(k).noise"), coefficients: steps[k])
            let wantPred = try golden(g0, "sample.step\(k).pred_x0")
            let wantX = try golden(g0, "sample.step\(k).x_prev")
            #expect(maxULP(pred, wantPred) == 0, "step \(k) pred_x0")
            #expect(maxULP(next, wantX) == 0, "step \(k) x_prev")
            x = wantX
        }
    }

    @Test("full run from seed 123 with a denoiser replaying golden e_guided")
    func fullRun() throws {
        let g0 = try Fixtures.golden()
        let eps = try (0..<4).map { try golden(g0, "sample.step\($0).e_guided") }
        let sampler = try DDIMSampler(schedule: NoiseSchedule(), configuration: SamplerConfiguration(steps: 4))
        var seen: [(Int, Int)] = []
        var xs: [[Float]] = []
        let latent = try sampler.sample(shape: Self.shape, generator: TorchGenerator(seed: 123)) { x, t, k in
            seen.append((k, t))
            xs.append(x.floats())
            return try Tensor(shape: Self.shape, floats: eps[k])
        } onStep: { out in
            let noise = try golden(g0, "sample.step\(out.stepIndex).noise")
            let pred = try golden(g0, "sample.step\(out.stepIndex).pred_x0")
            #expect(bitMismatches(out.noise.floats(), noise) == 0)
            #expect(out.stepCount == 4 && out.elapsed >= out.stepDuration)
            #expect(bitMismatches(out.predictedX0.floats(), pred) == 0)
        }
        #expect(seen.map(\.0) == [0, 1, 2, 3] && seen.map(\.1) == [751, 501, 251, 1])
        #expect(bitMismatches(xs[0], try golden(g0, "sample.x_T")) == 0)
        for k in 1..<4 {
            #expect(bitMismatches(xs[k], try golden(g0, "sample.step\(k - 1).x_prev")) == 0, "input of step \(k)")
        }
        let want = try golden(g0, "sample.latent")
        let cmp = Comparison(latent.floats(), want)
        #expect(cmp.maxAbs <= 0.002 && cmp.relRMS <= 5e-5, "\(cmp)")
        #expect(bitMismatches(latent.floats(), want) == 0)
    }

    @Test("run as an iterator: early stop keeps the last latent; a given x_T skips the first draw")
    func iteratorAndInitialLatent() throws {
        let g0 = try Fixtures.golden()
        let eps0 = try Tensor(shape: Self.shape, floats: try golden(g0, "sample.step0.e_guided"))
        let sampler = try DDIMSampler(schedule: NoiseSchedule(), configuration: SamplerConfiguration(steps: 4))
        var gen = TorchGenerator(seed: 123)
        let xT = try Tensor(shape: Self.shape, floats: gen.randn(count: 2560))
        var run = try sampler.start(shape: Self.shape, generator: gen, initialLatent: xT) { _, _, _ in eps0 }
        #expect(run.stepCount == 4 && !run.isFinished)
        let first = try #require(try run.next())
        #expect(first.timestep == 751)
        #expect(bitMismatches(run.latent.floats(), try golden(g0, "sample.step0.x_prev")) == 0)
        #expect(run.completedSteps == 1)
    }

    @Test("bad inputs are rejected with typed errors")
    func errors() throws {
        let schedule = try NoiseSchedule()
        #expect(throws: SamplingError.self) { try DDIMSampler(schedule: schedule, configuration: SamplerConfiguration(steps: 0)) }
        #expect(throws: SamplingError.self) { try DDIMSampler(schedule: schedule, configuration: SamplerConfiguration(eta: 5)) }
        #expect(throws: SamplingError.self) { try DDIMSampler(schedule: schedule, configuration: SamplerConfiguration(eta: -.infinity)) }
        let sampler = try DDIMSampler(schedule: schedule, configuration: SamplerConfiguration(steps: 2))
        #expect(throws: SamplingError.self) {
            _ = try sampler.sample(shape: [1, 4, 2, 2, 2], generator: TorchGenerator(seed: 0)) { _, _, _ in Tensor(zeros: [1, 4, 2, 2, 1]) }
        }
        #expect(throws: SamplingError.self) {
            _ = try sampler.sample(shape: [1, 4, 2, 2, 2], generator: TorchGenerator(seed: 0)) { _, _, _ in
                try Tensor(shape: [1, 4, 2, 2, 2], floats: [Float](repeating: .nan, count: 32))
            }
        }
        #expect(throws: SamplingError.self) {
            _ = try sampler.start(shape: [1, 4, 2, 2, 2], generator: TorchGenerator(seed: 0), initialLatent: Tensor(zeros: [3])) { x, _, _ in x }
        }
    }

    @Test("eta 0 is deterministic DDIM: the noise does not change the result")
    func etaZero() throws {
        let sampler = try DDIMSampler(schedule: NoiseSchedule(), configuration: SamplerConfiguration(steps: 3, eta: 0))
        #expect(sampler.steps.allSatisfy { $0.sigma == 0 })
        let x0 = try Tensor(shape: [1, 1, 1, 2, 2], floats: [0.5, -1, 2, 0])
        let denoise: Denoiser = { x, _, _ in try Tensor(shape: x.shape, floats: x.floats().map { $0 * 0.1 }) }
        let a = try sampler.sample(shape: x0.shape, generator: TorchGenerator(seed: 1), initialLatent: x0, denoiser: denoise)
        let b = try sampler.sample(shape: x0.shape, generator: TorchGenerator(seed: 2), initialLatent: x0, denoiser: denoise)
        #expect(a.floats() == b.floats())
    }
}
