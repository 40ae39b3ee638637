import CVCManifest
import VCTensor

/// min / max / mean / standard deviation of a tensor's values (`vcconv inspect --stats`).
/// Non-finite values are counted and left out of the other numbers.
public struct TensorStats: Sendable, Equatable, Codable {
    public var min: Double
    public var max: Double
    public var mean: Double
    /// Population standard deviation.
    public var std: Double
    public var nonFinite: Int

    /// Statistics of `t`'s values (expanded to f32 a row block at a time for large tensors).
    public init(_ t: Tensor) throws {
        var s = vcm_stats()
        vcm_stats_init(&s)
        if t.rank < 2 || t.count == 0 {
            let v = t.floats()
            vcm_stats_f32(&s, v, v.count)
        } else {
            // Expand at most ~16M values at a time, so a 200M-value embedding needs no 800 MB copy.
            let rows = t.shape[0]
            let perRow = Swift.max(1, t.count / rows)
            let step = Swift.max(1, (16 << 20) / perRow)
            var r = 0
            while r < rows {
                let n = Swift.min(step, rows - r)
                let v = try t.rows(r, n).floats()
                vcm_stats_f32(&s, v, v.count)
                r += n
            }
        }
        let n = Double(s.finite)
        self.min = s.finite > 0 ? s.min : .nan
        self.max = s.finite > 0 ? s.max : .nan
        self.mean = s.finite > 0 ? s.sum / n : .nan
        self.std = s.finite > 0 ? Swift.max(0, s.sumsq / n - (s.sum / n) * (s.sum / n)).squareRoot() : .nan
        self.nonFinite = Int(s.nonfinite)
    }
}
