// The DDPM schedule buffers a LatentDiffusion checkpoint stores, recomputed from the configuration
// so that an import can check the configuration against the checkpoint (and need not store them).
//
// Ports, at AILab-CVC/VideoCrafter@11bcd76:
//   lvdm/models/utils_diffusion.py  make_beta_schedule("linear"): torch.linspace(sqrt(start), sqrt(end), n, float64) ** 2
//   lvdm/models/ddpm3d.py           DDPM.register_schedule (numpy float64, stored as float32) and
//                                   LatentDiffusion scale_arr (np.linspace + np.full, `fix_scale_bug`)
// SD 2.x (ldm/models/diffusion/ddpm.py) registers the same twelve buffers, without scale_arr.
import Foundation

public enum ScheduleBuffers {
    /// Every schedule buffer the configuration implies, in float64, by name (state-dict order in
    /// `ModelTensors.scheduleBufferNames` + "scale_arr").
    public static func compute(_ d: DiffusionConfig) -> [String: [Double]] {
        let n = d.timesteps
        let betas = torchLinspace(d.linearStart.squareRoot(), d.linearEnd.squareRoot(), n).map { $0 * $0 }
        let alphas = betas.map { 1 - $0 }
        var ac = [Double](repeating: 0, count: n)
        var p = 1.0
        for i in 0..<n { p *= alphas[i]; ac[i] = p }                       // np.cumprod
        let prev = [1.0] + ac.dropLast()                                    // np.append(1., ac[:-1])
        var out: [String: [Double]] = [:]
        out["betas"] = betas
        out["alphas_cumprod"] = ac
        out["alphas_cumprod_prev"] = prev
        out["sqrt_alphas_cumprod"] = ac.map { $0.squareRoot() }
        out["sqrt_one_minus_alphas_cumprod"] = ac.map { (1 - $0).squareRoot() }
        out["log_one_minus_alphas_cumprod"] = ac.map { Foundation.log(1 - $0) }
        out["sqrt_recip_alphas_cumprod"] = ac.map { (1 / $0).squareRoot() }
        out["sqrt_recipm1_alphas_cumprod"] = ac.map { (1 / $0 - 1).squareRoot() }
        // v_posterior = 0 (DDPM default; no config sets it).
        let pv = (0..<n).map { i in betas[i] * (1 - prev[i]) / (1 - ac[i]) }
        out["posterior_variance"] = pv
        out["posterior_log_variance_clipped"] = pv.map { Foundation.log(max($0, 1e-20)) }
        out["posterior_mean_coef1"] = (0..<n).map { i in betas[i] * prev[i].squareRoot() / (1 - ac[i]) }
        out["posterior_mean_coef2"] = (0..<n).map { i in (1 - prev[i]) * alphas[i].squareRoot() / (1 - ac[i]) }
        if d.useScale {
            let flat = d.fixScaleBug ? n - d.midStep : n
            out["scale_arr"] = numpyLinspace(d.scaleA, d.scaleB, d.midStep) + [Double](repeating: d.scaleB, count: flat)
        }
        return out
    }

    /// torch.linspace on float64 (ATen's CPU kernel: the first half counts up from `start`, the
    /// second half down from `end`).
    static func torchLinspace(_ start: Double, _ end: Double, _ steps: Int) -> [Double] {
        guard steps > 1 else { return steps == 1 ? [start] : [] }
        let step = (end - start) / Double(steps - 1)
        let half = steps / 2
        return (0..<steps).map { i in i < half ? start + step * Double(i) : end - step * Double(steps - i - 1) }
    }

    /// np.linspace(start, stop, num) with endpoint (i * step + start, the last value exactly stop).
    static func numpyLinspace(_ start: Double, _ stop: Double, _ num: Int) -> [Double] {
        guard num > 1 else { return num == 1 ? [start] : [] }
        let step = (stop - start) / Double(num - 1)
        var y = (0..<num).map { Double($0) * step + start }
        y[num - 1] = stop
        return y
    }

    /// The largest deviation of stored float32 values from the recomputed float64 ones, measured
    /// as |stored - expected| / max(|expected|, 1e-6) (the float32 rounding alone is < 6e-8).
    public static func deviation(stored: [Float], expected: [Double]) -> (relative: Double, index: Int)? {
        guard stored.count == expected.count else { return nil }
        var worst = 0.0, at = 0
        for (i, (s, e)) in zip(stored, expected).enumerated() {
            let r = abs(Double(s) - e) / max(abs(e), 1e-6)
            if r > worst || r.isNaN { worst = r.isNaN ? .infinity : r; at = i }
        }
        return (worst, at)
    }

    /// What `deviation` may be for a checkpoint consistent with the configuration: float32
    /// rounding (6e-8) plus float64 summation/library differences, with a wide margin; a wrong
    /// linear_start/linear_end/scale_b gives deviations of 1e-3 and more.
    public static let tolerance = 1e-6
}
