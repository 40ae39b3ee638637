// Sinusoidal timestep embedding and the time / fps MLPs of the VideoCrafter2 UNet.
// Ports AILab-CVC/VideoCrafter@11bcd76 lvdm/models/utils_diffusion.py (`timestep_embedding`,
// repeat_only=False) and the `time_embed` / `fps_embedding` Sequentials of
// lvdm/modules/networks/openaimodel3d.py (UNetModel.__init__ / forward).
import Foundation
import VCTensor

/// `timestep_embedding(t, dim)`: for i in 0..<half, freq_i = exp(-ln(10000) * i / half) and
/// arg_i = Float(t) * freq_i; the row is [cos(arg_0..half-1), sin(arg_0..half-1)] (cosine first),
/// followed by one zero when `dim` is odd. Evaluated in Float32 the way torch does (f32 frequency
/// table, f32 product), so the fp32 rounding of the reference is reproduced up to the last ulp of
/// exp/cos/sin. Returns [values.count, dim].
public func timestepSinusoid(_ values: [Int], dim: Int, maxPeriod: Double = 10000) throws -> Tensor {
    guard dim >= 2, !values.isEmpty else {
        throw TensorError.shapeMismatch("timestep embedding of \(values.count) values into \(dim) dimensions")
    }
    let half = dim / 2
    let logScale = Float(-log(maxPeriod))
    // torch: exp(-log(max_period) * arange(half, f32) / half), every step in float32.
    let freqs = (0..<half).map { exp(logScale * Float($0) / Float(half)) }
    var out = [Float](repeating: 0, count: values.count * dim)
    for (r, t) in values.enumerated() {
        let tf = Float(t)
        for i in 0..<half {
            let arg = tf * freqs[i]
            out[r * dim + i] = cos(arg)
            out[r * dim + half + i] = sin(arg)
        }
    }
    // [B] -> [B, dim]
    return try Tensor(shape: [values.count, dim], floats: out)
}

/// Linear(in -> out) -> SiLU -> Linear(out -> out): keys `<prefix>.0.*` and `<prefix>.2.*`.
public struct TimestepMLP: Sendable {
    public let fc1: Linear
    public let fc2: Linear

    public init(_ b: WeightBinder, _ prefix: String, in inFeatures: Int, out outFeatures: Int) {
        fc1 = Linear(b, "\(prefix).0", in: inFeatures, out: outFeatures)
        fc2 = Linear(b, "\(prefix).2", in: outFeatures, out: outFeatures)
    }

    // [B, in] -> [B, out]
    public func callAsFunction(_ x: Tensor) throws -> Tensor {
        try fc2(Ops.silu(fc1(x)))
    }
}
