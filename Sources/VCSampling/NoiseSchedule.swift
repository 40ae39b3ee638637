// The DDPM noise schedule, the VideoCrafter2 `scale_arr` and the DDIM step tables.
//
// Ports AILab-CVC/VideoCrafter@11bcd76:
//   lvdm/models/utils_diffusion.py  make_beta_schedule("linear"), make_ddim_timesteps("uniform"),
//                                   make_ddim_sampling_parameters
//   lvdm/models/ddpm3d.py           DDPM.register_schedule (float32 buffers),
//                                   LatentDiffusion.__init__ (scale_arr, fix_scale_bug)
//   lvdm/models/samplers/ddim.py    DDIMSampler.make_schedule (ddim_* tables, scale_arr_prev)
// and torch.linspace (pytorch/pytorch aten/src/ATen/native/cpu/RangeFactoriesKernel.cpp: the
// first half counts up from `start`, the second half down from `end`).
//
// Precision follows the official mix exactly, so the per-step scalars equal golden
// `sample.coef.*` bit for bit: betas and the cumulative product in float64, stored as float32
// buffers; DDIM a_t, a_prev, scale_t, scale_prev are float32 table entries;
// sqrt(1 - a_t) is float32; sigma uses float32 `1/(1 - a_t)` times float64 products (see
// `ddimSteps`).

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Errors of the sampling layer.
public enum SamplingError: Error, Equatable, CustomStringConvertible {
    /// A configuration value is out of range.
    case invalidConfiguration(String)
    /// A tensor has the wrong shape or element count.
    case shapeMismatch(String)
    /// The denoiser returned NaN or infinity.
    case nonFiniteValues(String)

    public var description: String {
        switch self {
        case .invalidConfiguration(let m): return "invalid sampling configuration: \(m)"
        case .shapeMismatch(let m): return "shape mismatch: \(m)"
        case .nonFiniteValues(let m): return "non-finite values: \(m)"
        }
    }
}

/// Settings of the DDPM schedule. Defaults are VideoCrafter2's
/// (`configs/inference_t2v_512_v2.0.yaml` plus the `LatentDiffusion` constructor defaults).
public struct NoiseScheduleConfiguration: Sendable, Equatable, Codable {
    /// DDPM steps (`timesteps`, 1000).
    public var timesteps: Int = 1000
    /// First beta (`linear_start`, 0.00085). The "linear" schedule interpolates sqrt(beta).
    public var linearStart: Double = 0.00085
    /// Last beta (`linear_end`, 0.012).
    public var linearEnd: Double = 0.012
    /// Whether the signal scaling `scale_arr` is used (`use_scale`, true for VC2).
    public var useScale: Bool = true
    /// Scale at t = 0 (`scale_a`, 1.0).
    public var scaleA: Double = 1.0
    /// Plateau scale (`scale_b`, 0.7 in the VC2 config; the class default is 0.3).
    public var scaleB: Double = 0.7
    /// Length of the linear ramp from scaleA to scaleB (`mid_step`, 400).
    public var midStep: Int = 400
    /// `fix_scale_bug` (false): when false the plateau has `timesteps` entries (1400 in all),
    /// when true `timesteps - midStep` (1000 in all). Indices used are < timesteps either way.
    public var fixScaleBug: Bool = false

    public init() {}

    /// VideoCrafter2 (and VideoCrafter1 512 v1 with `useScale` false would differ only there).
    public static let videoCrafter2 = NoiseScheduleConfiguration()
}

/// The scalars one DDIM step uses, as p_sample_ddim sees them (float32).
public struct DDIMStepCoefficients: Sendable, Equatable {
    /// Position in the ascending DDIM timestep list (`index` in p_sample_ddim).
    public var index: Int
    /// The DDPM timestep fed to the UNet.
    public var timestep: Int
    /// alphas_cumprod[t].
    public var alpha: Float
    /// alphas_cumprod of the previous (smaller) DDIM timestep; alphas_cumprod[0] at the last step.
    public var alphaPrev: Float
    /// eta * sqrt((1 - a_prev)/(1 - a_t) * (1 - a_t/a_prev)).
    public var sigma: Float
    /// sqrt(1 - a_t).
    public var sqrtOneMinusAlpha: Float
    /// scale_arr[t] (1 when the schedule has no scale_arr).
    public var scale: Float
    /// scale_arr of the previous DDIM timestep; scale_arr[0] at the last step.
    public var scalePrev: Float
}

/// The DDPM schedule tables: betas (float64), alphas_cumprod and scale_arr (float32 buffers).
public struct NoiseSchedule: Sendable {
    /// Beta per DDPM timestep, float64 as computed (not stored by the model as float64).
    public let betas: [Double]
    /// The `alphas_cumprod` buffer (float32).
    public let alphasCumprod: [Float]
    /// The `scale_arr` buffer (float32), nil when the model does not use signal scaling.
    public let scaleArr: [Float]?

    /// Computes the tables as the official code does.
    public init(_ configuration: NoiseScheduleConfiguration = .videoCrafter2) throws {
        let c = configuration
        guard c.timesteps >= 2, c.timesteps <= 100_000 else {
            throw SamplingError.invalidConfiguration("timesteps must be in 2...100000, got \(c.timesteps)")
        }
        guard c.linearStart > 0, c.linearEnd > 0, c.linearEnd < 1, c.linearStart.isFinite else {
            throw SamplingError.invalidConfiguration("linear_start/linear_end must be in (0, 1), got \(c.linearStart), \(c.linearEnd)")
        }
        // betas = torch.linspace(start**0.5, end**0.5, n, float64) ** 2
        let n = c.timesteps
        let start = c.linearStart.squareRoot(), end = c.linearEnd.squareRoot()
        let step = (end - start) / Double(n - 1)
        let halfway = n / 2
        var betas = [Double](repeating: 0, count: n)
        for i in 0..<n {
            let v = i < halfway ? start + step * Double(i) : end - step * Double(n - i - 1)
            betas[i] = v * v
        }
        // alphas_cumprod = np.cumprod(1 - betas) (float64), stored as float32.
        var acc = 1.0
        var cumprod = [Float](repeating: 0, count: n)
        for i in 0..<n {
            acc *= 1.0 - betas[i]
            cumprod[i] = Float(acc)
        }
        var scaleArr: [Float]? = nil
        if c.useScale {
            guard c.midStep >= 2, c.midStep <= n else {
                throw SamplingError.invalidConfiguration("mid_step must be in 2...\(n), got \(c.midStep)")
            }
            // np.linspace(scale_a, scale_b, mid_step): start + i*step, last = stop exactly.
            let m = c.midStep
            let s = (c.scaleB - c.scaleA) / Double(m - 1)
            var arr = [Float]()
            arr.reserveCapacity(m + n)
            for i in 0..<m { arr.append(Float(i == m - 1 ? c.scaleB : Double(i) * s + c.scaleA)) }
            let plateau = c.fixScaleBug ? n - m : n
            arr.append(contentsOf: repeatElement(Float(c.scaleB), count: plateau))
            scaleArr = arr
        }
        self.betas = betas
        self.alphasCumprod = cumprod
        self.scaleArr = scaleArr
    }

    /// Uses tables taken from a checkpoint (`alphas_cumprod`, `scale_arr` buffers).
    public init(alphasCumprod: [Float], scaleArr: [Float]?) throws {
        guard alphasCumprod.count >= 2 else {
            throw SamplingError.invalidConfiguration("alphas_cumprod has \(alphasCumprod.count) entries")
        }
        guard alphasCumprod.allSatisfy({ $0 > 0 && $0 < 1 }) else {
            throw SamplingError.invalidConfiguration("alphas_cumprod values must be in (0, 1)")
        }
        guard zip(alphasCumprod, alphasCumprod.dropFirst()).allSatisfy({ $0 > $1 }) else {
            throw SamplingError.invalidConfiguration("alphas_cumprod must be strictly decreasing")
        }
        if let s = scaleArr {
            guard s.count >= alphasCumprod.count, s.allSatisfy({ $0.isFinite && $0 > 0 }) else {
                throw SamplingError.invalidConfiguration("scale_arr needs >= \(alphasCumprod.count) positive entries, has \(s.count)")
            }
        }
        var prod = 1.0
        self.betas = alphasCumprod.map { a in
            let b = 1 - Double(a) / prod
            prod = Double(a)
            return b
        }
        self.alphasCumprod = alphasCumprod
        self.scaleArr = scaleArr
    }

    /// Number of DDPM timesteps.
    public var timesteps: Int { alphasCumprod.count }

    /// `make_ddim_timesteps("uniform", steps, timesteps)`: `range(0, T, T // steps) + 1`,
    /// ascending. The count exceeds `steps` when it does not divide T (60 -> 63 timesteps).
    ///
    /// Where `T // steps` divides `T - 1` (for T = 1000: steps 3, 9, 27, 36, 37, 101-111,
    /// 251-333 and above 500) the last entry is T itself and the official code raises an
    /// IndexError; that entry is dropped here (steps 3 -> [1, 334, 667]). There is no
    /// reference output for those step counts.
    public static func ddimTimesteps(steps: Int, timesteps: Int = 1000) throws -> [Int] {
        guard steps >= 1, steps <= timesteps else {
            throw SamplingError.invalidConfiguration("DDIM steps must be in 1...\(timesteps), got \(steps)")
        }
        let c = timesteps / steps
        return stride(from: 0, to: timesteps, by: c).map { $0 + 1 }.filter { $0 < timesteps }
    }

    /// The coefficients of every DDIM step in iteration order (largest timestep first).
    ///
    /// sigma is computed as the official numpy/torch mix:
    /// `fl32(eta * sqrt(fl32(1 / fl32(1 - a_t)) * (1 - a_prev) * (1 - a_t / a_prev)))` with the
    /// products in float64 (`ndarray / tensor` runs as `tensor.reciprocal() * ndarray`).
    public func ddimSteps(count steps: Int, eta: Double = 1.0) throws -> [DDIMStepCoefficients] {
        guard eta.isFinite, eta >= 0 else {
            throw SamplingError.invalidConfiguration("eta must be finite and >= 0, got \(eta)")
        }
        let ts = try Self.ddimTimesteps(steps: steps, timesteps: timesteps)
        var out: [DDIMStepCoefficients] = []
        out.reserveCapacity(ts.count)
        for index in stride(from: ts.count - 1, through: 0, by: -1) {
            let t = ts[index]
            let prevT = index > 0 ? ts[index - 1] : 0
            let aT = alphasCumprod[t]
            let aPrev = alphasCumprod[prevT]
            let recip = Double(1 / (1 - aT))                                   // float32 reciprocal
            let aPrevD = Double(aPrev)
            let sigma = eta * (recip * (1 - aPrevD) * (1 - Double(aT) / aPrevD)).squareRoot()
            out.append(DDIMStepCoefficients(
                index: index, timestep: t, alpha: aT, alphaPrev: aPrev, sigma: Float(sigma),
                sqrtOneMinusAlpha: (1 - aT).squareRoot(),
                scale: scaleArr?[t] ?? 1, scalePrev: scaleArr?[prevT] ?? 1))
        }
        return out
    }
}
