// The DDIM sampler of VideoCrafter2, as a sequence of steps driven by a denoiser closure.
//
// Ports AILab-CVC/VideoCrafter@11bcd76:
//   lvdm/models/samplers/ddim.py   DDIMSampler.ddim_sampling (x_T = first randn, iteration from
//                                  the largest timestep), p_sample_ddim (CFG expression, the
//                                  update with use_scale, noise_like = one randn per step)
//   scripts/evaluation/funcs.py    batch_ddim_sampling (empty-prompt uncond, CFG skipped at 1.0)
//
// The sampler knows nothing about UNets: the facade supplies a `Denoiser` that runs the UNet
// on both prompts (batched) with fps conditioning and combines them with
// `ClassifierFreeGuidance`. Latents are PyTorch-ordered `[B, 4, T, h, w]` f32 tensors here
// (the order in which torch draws the noise); the facade converts to channels-last for the
// UNet. Every elementwise expression keeps the official float32 operation order, so that the
// update recomputed from golden eps and noise equals golden x_prev bit for bit.

import VCTensor

/// Settings of a sampling run. Defaults are the official VC2 command
/// (`scripts/run_text2video.sh`): 50 DDIM steps, eta 1.0, CFG 12.0, fps 28.
public struct SamplerConfiguration: Sendable, Equatable, Codable {
    /// DDIM steps (1...1000). The number of UNet evaluations is the length of the uniform
    /// timestep list, which exceeds `steps` when it does not divide 1000 (60 -> 63; see
    /// `NoiseSchedule.ddimTimesteps`).
    public var steps: Int = 50
    /// DDIM eta: 1.0 adds fresh noise at every step (including the last), 0 is deterministic.
    public var eta: Double = 1.0
    /// Classifier-free guidance scale (applied by the denoiser through `ClassifierFreeGuidance`;
    /// 1.0 skips the unconditional branch as the official code does).
    public var guidanceScale: Double = 12.0
    /// The fps conditioning value handed to the UNet's fps embedding (28 in the VC2 script;
    /// unrelated to the output frame rate).
    public var fps: Int = 28

    public init(steps: Int = 50, eta: Double = 1.0, guidanceScale: Double = 12.0, fps: Int = 28) {
        self.steps = steps
        self.eta = eta
        self.guidanceScale = guidanceScale
        self.fps = fps
    }
}

/// Classifier-free guidance: `e_uncond + s * (e_cond - e_uncond)` in float32, the expression
/// and operation order of `p_sample_ddim` (the scale is rounded to float32 first, as torch does
/// for a Python scalar).
public struct ClassifierFreeGuidance: Sendable, Equatable {
    /// How the two halves of a batched UNet output are ordered along the first dimension.
    public enum BatchOrder: Sendable, Equatable {
        case conditionalFirst
        case unconditionalFirst
    }

    public var scale: Double

    public init(scale: Double) { self.scale = scale }

    /// Whether the unconditional branch has to run at all (the official code skips it at 1.0).
    public var needsUnconditional: Bool { scale != 1 }

    /// Combines the conditional and unconditional predictions (same length).
    public func combine(conditional: [Float], unconditional: [Float]) throws -> [Float] {
        guard conditional.count == unconditional.count else {
            throw SamplingError.shapeMismatch("CFG: conditional has \(conditional.count) values, unconditional \(unconditional.count)")
        }
        let s = Float(scale)
        var out = [Float](repeating: 0, count: conditional.count)
        for i in 0..<out.count {
            let u = unconditional[i]
            out[i] = u + s * (conditional[i] - u)
        }
        return out
    }

    /// Combines a batched prediction `[2N, ...]` (both branches from one UNet call) into `[N, ...]`.
    /// Works in any layout as long as the two halves are the two halves of the first dimension.
    public func combine(batched: Tensor, order: BatchOrder) throws -> Tensor {
        guard let first = batched.shape.first, first >= 2, first % 2 == 0 else {
            throw SamplingError.shapeMismatch("CFG: batched prediction needs an even first dimension, got \(batched.shape)")
        }
        let half = first / 2
        let a = try batched.rows(0, half).floats()
        let b = try batched.rows(half, half).floats()
        let (c, u) = order == .conditionalFirst ? (a, b) : (b, a)
        var shape = batched.shape
        shape[0] = half
        return try Tensor(shape: shape, floats: combine(conditional: c, unconditional: u))
    }
}

/// Predicts the (guided) noise for latent `x` (`[B, 4, T, h, w]`) at DDPM timestep `timestep`;
/// `stepIndex` counts the steps of the run from 0. Returns a tensor of x's shape.
public typealias Denoiser = (_ x: Tensor, _ timestep: Int, _ stepIndex: Int) throws -> Tensor

/// What one DDIM step produced. The tensors are `[B, 4, T, h, w]`.
public struct DDIMStepOutput: Sendable {
    /// 0-based position in the run (0 = the largest timestep).
    public var stepIndex: Int
    /// Steps in the whole run.
    public var stepCount: Int
    /// The scalars of this step (timestep, alphas, sigma, scales).
    public var coefficients: DDIMStepCoefficients
    /// Time since the run started (x_T drawn), when this step finished.
    public var elapsed: Duration
    /// Time this step took (mostly the denoiser).
    public var stepDuration: Duration
    /// The denoiser's (guided) eps.
    public var eps: Tensor
    /// The raw N(0, 1) draw of this step (multiplied by sigma in the update).
    public var noise: Tensor
    /// x0 estimate, already divided by scale_t (what p_sample_ddim returns).
    public var predictedX0: Tensor
    /// The latent after this step (x_prev).
    public var latent: Tensor

    /// The DDPM timestep of this step.
    public var timestep: Int { coefficients.timestep }
}

/// DDIM over a noise schedule, VideoCrafter2 flavour (use_scale, a_prev = alphas_cumprod[0] at
/// the last step, stochastic with eta).
public struct DDIMSampler: Sendable {
    public let schedule: NoiseSchedule
    public let configuration: SamplerConfiguration
    /// Coefficients of every step in iteration order.
    public let steps: [DDIMStepCoefficients]

    public init(schedule: NoiseSchedule, configuration: SamplerConfiguration = SamplerConfiguration()) throws {
        let steps = try schedule.ddimSteps(count: configuration.steps, eta: configuration.eta)
        for s in steps where !(1 - s.alphaPrev - s.sigma * s.sigma >= 0) {
            throw SamplingError.invalidConfiguration("eta \(configuration.eta) makes sigma exceed sqrt(1 - a_prev) at t=\(s.timestep)")
        }
        guard configuration.guidanceScale.isFinite else {
            throw SamplingError.invalidConfiguration("guidance scale must be finite")
        }
        self.schedule = schedule
        self.configuration = configuration
        self.steps = steps
    }

    /// The latent shape `[B, 4, frames, height/8, width/8]` for a video.
    public static func latentShape(batch: Int = 1, channels: Int = 4, frames: Int, height: Int, width: Int) -> [Int] {
        [batch, channels, frames, height / 8, width / 8]
    }

    /// Starts a run. Draws x_T from `generator` (the first `randn` after the seed) unless
    /// `initialLatent` is given; each step then draws its noise from the same generator.
    public func start(shape: [Int], generator: TorchGenerator, initialLatent: Tensor? = nil,
                      denoiser: @escaping Denoiser) throws -> DDIMRun {
        guard shape.count >= 1, shape.allSatisfy({ $0 > 0 }) else {
            throw SamplingError.shapeMismatch("latent shape \(shape) must be non-empty with positive dimensions")
        }
        var gen = generator
        let x: Tensor
        if let given = initialLatent {
            guard given.shape == shape, given.dtype == .f32 else {
                throw SamplingError.shapeMismatch("initial latent is \(given.dtype.rawValue) \(given.shape), expected f32 \(shape)")
            }
            x = given
        } else {
            let count = shape.reduce(1, *)
            x = try Tensor(shape: shape, floats: gen.randn(count: count))
        }
        return DDIMRun(sampler: self, latent: x, generator: gen, denoiser: denoiser)
    }

    /// Runs every step and returns the final latent (x after the last step, with its noise).
    /// `onStep` sees each step's output (progress, intermediates).
    public func sample(shape: [Int], generator: TorchGenerator, initialLatent: Tensor? = nil,
                       denoiser: @escaping Denoiser,
                       onStep: (DDIMStepOutput) throws -> Void = { _ in }) throws -> Tensor {
        var run = try start(shape: shape, generator: generator, initialLatent: initialLatent, denoiser: denoiser)
        while let out = try run.next() { try onStep(out) }
        return run.latent
    }

    /// One DDIM update in the official float32 order:
    /// ```
    /// pred_x0 = (x - sqrt(1 - a_t) * e) / sqrt(a_t)
    /// dir_xt  = sqrt(1 - a_prev - sigma**2) * e
    /// noise   = sigma * n
    /// pred_x0 = pred_x0 / scale_t
    /// x_prev  = (sqrt(a_prev) * scale_prev) * pred_x0 + dir_xt + noise
    /// ```
    /// (Without scale_arr, scale_t = scale_prev = 1 gives the same bits as the unscaled formula.)
    public static func update(x: [Float], eps: [Float], noise: [Float],
                              coefficients c: DDIMStepCoefficients) throws -> (latent: [Float], predictedX0: [Float]) {
        let n = x.count
        guard eps.count == n, noise.count == n else {
            throw SamplingError.shapeMismatch("DDIM update: x has \(n) values, eps \(eps.count), noise \(noise.count)")
        }
        let sqrtA = c.alpha.squareRoot()
        let dirCoef = (1 - c.alphaPrev - c.sigma * c.sigma).squareRoot()
        let prevCoef = c.alphaPrev.squareRoot() * c.scalePrev
        var latent = [Float](repeating: 0, count: n)
        var pred = [Float](repeating: 0, count: n)
        for i in 0..<n {
            let e = eps[i]
            var p = (x[i] - c.sqrtOneMinusAlpha * e) / sqrtA
            let dir = dirCoef * e
            let nz = c.sigma * noise[i]
            p = p / c.scale
            pred[i] = p
            latent[i] = prevCoef * p + dir + nz
        }
        return (latent, pred)
    }
}

/// A DDIM run in progress: call `next()` until it returns nil. Stopping early is allowed
/// (cancellation); `latent` is then the latent after the last completed step.
public struct DDIMRun {
    public let sampler: DDIMSampler
    /// The current latent (x_T before the first step).
    public private(set) var latent: Tensor
    /// The generator state after the draws so far.
    public private(set) var generator: TorchGenerator
    /// Steps done.
    public private(set) var completedSteps = 0
    private let denoiser: Denoiser
    private let clock = ContinuousClock()
    private let startedAt: ContinuousClock.Instant

    init(sampler: DDIMSampler, latent: Tensor, generator: TorchGenerator, denoiser: @escaping Denoiser) {
        self.sampler = sampler
        self.latent = latent
        self.generator = generator
        self.denoiser = denoiser
        self.startedAt = clock.now
    }

    /// Steps in the run.
    public var stepCount: Int { sampler.steps.count }
    public var isFinished: Bool { completedSteps >= stepCount }

    /// Performs the next step: denoiser, one noise draw, the update.
    public mutating func next() throws -> DDIMStepOutput? {
        guard !isFinished else { return nil }
        let stepStart = clock.now
        let k = completedSteps
        let c = sampler.steps[k]
        let epsTensor = try denoiser(latent, c.timestep, k)
        guard epsTensor.shape == latent.shape, epsTensor.dtype == .f32 else {
            throw SamplingError.shapeMismatch("denoiser returned \(epsTensor.dtype.rawValue) \(epsTensor.shape) for latent f32 \(latent.shape) at step \(k) (t=\(c.timestep))")
        }
        let eps = epsTensor.floats()
        if let bad = eps.firstIndex(where: { !$0.isFinite }) {
            throw SamplingError.nonFiniteValues("denoiser output at step \(k) (t=\(c.timestep)), element \(bad) is \(eps[bad])")
        }
        let noise = generator.randn(count: eps.count)
        let (next, pred) = try DDIMSampler.update(x: latent.floats(), eps: eps, noise: noise, coefficients: c)
        let shape = latent.shape
        latent = try Tensor(shape: shape, floats: next)
        completedSteps += 1
        let now = clock.now
        return DDIMStepOutput(stepIndex: k, stepCount: stepCount, coefficients: c,
                              elapsed: now - startedAt, stepDuration: now - stepStart,
                              eps: epsTensor, noise: try Tensor(shape: shape, floats: noise),
                              predictedX0: try Tensor(shape: shape, floats: pred), latent: latent)
    }
}
