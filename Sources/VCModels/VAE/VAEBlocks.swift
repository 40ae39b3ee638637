// Building blocks of the SD kl-f8 VAE decoder.
//
// Ports AILab-CVC/VideoCrafter@11bcd76 `lvdm/modules/networks/ae_modules.py`: ResnetBlock
// (temb_channels = 0, dropout 0), AttnBlock (vanilla, one head over H*W tokens), Upsample
// (nearest x2 + 3x3 conv), Normalize (GroupNorm 32 groups, eps 1e-6) and nonlinearity (swish).
// Activations are channels-last `[N, H, W, C]`, one sample per frame.
import VCTensor

/// `Normalize`: GroupNorm(32, C, eps 1e-6), as every norm of the VAE.
func vaeNorm(_ b: WeightBinder, _ prefix: String, channels: Int) -> GroupNorm {
    GroupNorm(b, prefix, channels: channels, groups: 32, eps: 1e-6)
}

/// How the decoder's 3x3 convolutions (about 98 % of its arithmetic) hold their weights, chosen
/// at load; the file keeps what import wrote either way.
public enum VAEConvArithmetic: String, Sendable, CaseIterable {
    /// The stored values as f32 taps (f16 / bf16 widened at load), fp32 activations.
    case f32
    /// Each tap's [Cout, Cin] weight quantized at load to q8_0 (32-blocks along Cin), run with
    /// int8 activations (the `.fast` GEMM mode, set by `VAEDecoder.decode` itself): the int8
    /// VNNI kernels, about 2x the f32 speed. Golden A, q8 model: 37.65 -> 37.34 dB PSNR
    /// (bar 34); see docs/performance.md. Convolutions with Cin not a multiple of 32 (conv_in,
    /// 4 channels) stay f32.
    case q8
    /// Each tap in bf16 (the stored values of a bf16 file, rounded otherwise), run with bf16
    /// activations (`vdpbf16ps`, the `.fast` GEMM mode): about 1.6x the f32 speed. Golden A,
    /// bf16 model: 47.10 -> 46.82 dB PSNR (bar 42).
    case bf16

    /// The arithmetic for the VAE of a model whose UNet matrices are `unetType`: the UNet's
    /// reduced type (int8 for q8_0, bf16 for bf16) unless the run asks for exact (fp32)
    /// activations; f16 and f32 models keep f32 (the f16 bar, 53 dB, leaves too little room:
    /// bf16 arithmetic gives 54.4 dB on golden A).
    public static func forModel(unetType: DType?, exact: Bool) -> VAEConvArithmetic {
        guard !exact else { return .f32 }
        switch unetType {
        case .q8_0?: return .q8
        case .bf16?: return .bf16
        default: return .f32
        }
    }
}

/// A 3x3 convolution with stride 1 and padding 1 (every 3x3 conv of the decoder). f32 / f16 /
/// bf16 weights are reordered once, here, to tap-major [9, Cout, Cin], each tap packed for the
/// GEMM kernels, and run as nine GEMMs over padded row bands (`Ops.conv2dSame`, no im2col matrix);
/// q8_0 weights in the file, whose blocks cannot be reordered exactly, keep the im2col path
/// (`Ops.conv2d`).
/// f16 taps are widened to f32 before packing: the f16 and f32 kernels multiply the same values
/// in the same order (identical results), and the f32 one skips a conversion per weight vector
/// (a 320x512 frame: 12 s -> about 9.6 s on a Zen 4 core pair), for 2x the decoder's packed
/// weight memory (about 100 MB more for the VAE of VC2 / SD 2.1). With `.q8` / `.bf16`
/// arithmetic the taps are converted per tap instead.
struct VAEConv3x3: Sendable {
    enum Weight: Sendable {
        case taps([PackedWeight])    // tap-major, packed
        case packed(PackedWeight)    // [Cout, Cin, 3, 3] packed (q8_0)
        case plain(Tensor)           // as stored (if packing failed)
    }
    let weight: Weight
    let bias: Tensor?

    init(_ b: WeightBinder, _ prefix: String, in cin: Int, out cout: Int, arithmetic: VAEConvArithmetic) {
        let conv = Conv2d(b, prefix, in: cin, out: cout)
        let tapsWeight = try? Ops.convTaps(conv.weight)                    // [9, Cout, Cin]
        let widened = tapsWeight.flatMap { $0.dtype == .f16 ? try? $0.converted(to: .f32) : $0 }
        let lowered: [PackedWeight]?
        switch arithmetic {
        case .q8: lowered = cin % 32 == 0 ? widened.flatMap { Self.loweredTaps($0, to: .q8_0) } : nil
        case .bf16: lowered = widened.flatMap { Self.loweredTaps($0, to: .bf16) }
        case .f32: lowered = nil
        }
        if let taps = lowered {
            weight = .taps(taps)
        } else if let w = widened, let taps = try? Ops.packTaps(w) {
            weight = .taps(taps)
        } else if let p = try? PackedWeight(conv.weight) {
            weight = .packed(p)
        } else {
            weight = .plain(conv.weight)
        }
        bias = conv.bias
    }

    /// Tap-major weights [taps, Cout, Cin] -> one packed [Cout, Cin] weight of `type` per tap
    /// (taps already of that type are kept as they are).
    static func loweredTaps(_ taps: Tensor, to type: DType) -> [PackedWeight]? {
        guard taps.rank == 3 else { return nil }
        let f = taps.dtype == .f32 || taps.dtype == type ? taps : try? taps.converted(to: .f32)
        guard let f else { return nil }
        return try? (0..<f.shape[0]).map { t in
            let tap = try f.rows(t, 1).reshaped([f.shape[1], f.shape[2]])
            return try PackedWeight(tap.dtype == type ? tap : try tap.converted(to: type))
        }
    }

    /// [N, H, W, Cin] -> [N, H', W', Cout] of act(norm(x)) (when `norm` is given) nearest-x2
    /// upsampled (when `upsample2x`; H' = 2H), the tap path applying both while it copies its
    /// input bands.
    func callAsFunction(_ x: Tensor, upsample2x: Bool = false, norm: Ops.NormAffine? = nil,
                        activation: Ops.Activation = .none) throws -> Tensor {
        // The im2col paths get the normalised, upsampled input materialised.
        func input() throws -> Tensor {
            var h = x
            if let norm { h = try Ops.groupNormApply(h, norm, activation: activation) }
            return upsample2x ? try Ops.upsampleNearest2x(h) : h
        }
        switch weight {
        case .taps(let t):
            return try Ops.conv2dSame(x, packedTaps: t, kernel: (3, 3), bias, upsample2x: upsample2x, norm: norm,
                                      activation: activation)
        case .packed(let p): return try Ops.conv2d(try input(), p, bias, stride: 1, padding: 1)
        case .plain(let w): return try Ops.conv2d(try input(), w, bias, stride: 1, padding: 1)
        }
    }
}

/// ResnetBlock without time embedding:
/// h = conv2(swish(norm2(conv1(swish(norm1(x)))))); return shortcut(x) + h,
/// with a 1x1 `nin_shortcut` when the width changes.
struct VAEResnetBlock: Sendable {
    let norm1: GroupNorm
    let conv1: VAEConv3x3
    let norm2: GroupNorm
    let conv2: VAEConv3x3
    let ninShortcut: Linear?

    init(_ b: WeightBinder, _ prefix: String, in cin: Int, out cout: Int, arithmetic: VAEConvArithmetic) {
        norm1 = vaeNorm(b, "\(prefix).norm1", channels: cin)
        conv1 = VAEConv3x3(b, "\(prefix).conv1", in: cin, out: cout, arithmetic: arithmetic)
        norm2 = vaeNorm(b, "\(prefix).norm2", channels: cout)
        conv2 = VAEConv3x3(b, "\(prefix).conv2", in: cout, out: cout, arithmetic: arithmetic)
        ninShortcut = cin == cout ? nil : Linear(b, "\(prefix).nin_shortcut", in: cin, out: cout, kernelDims: 2)
    }

    /// x: [N, H, W, Cin] -> [N, H, W, Cout].
    func callAsFunction(_ x: Tensor) throws -> Tensor {
        let n = x.shape[0]
        // The norms + swish are applied inside the convolutions' band copies (per-frame statistics).
        var h = try conv1(x, norm: try norm1.statistics(x, samples: n), activation: .silu)   // [N, H, W, Cout]
        h = try conv2(h, norm: try norm2.statistics(h, samples: n), activation: .silu)       // [N, H, W, Cout]
        let skip = try ninShortcut.map { try $0(x) } ?? x       // [N, H, W, Cout]
        return try Ops.add(skip, h)
    }
}

/// AttnBlock: single-head self-attention over the H*W positions of each frame with 1x1-conv
/// q/k/v/proj_out and scale C^-1/2; residual.
struct VAEAttnBlock: Sendable {
    let norm: GroupNorm
    let q: Linear
    let k: Linear
    let v: Linear
    let projOut: Linear
    let channels: Int

    /// Query rows per score block: the score matrix held at once is at most this many rows x H*W.
    static let queryChunk = 1024

    init(_ b: WeightBinder, _ prefix: String, channels c: Int) {
        norm = vaeNorm(b, "\(prefix).norm", channels: c)
        q = Linear(b, "\(prefix).q", in: c, out: c, kernelDims: 2)
        k = Linear(b, "\(prefix).k", in: c, out: c, kernelDims: 2)
        v = Linear(b, "\(prefix).v", in: c, out: c, kernelDims: 2)
        projOut = Linear(b, "\(prefix).proj_out", in: c, out: c, kernelDims: 2)
        channels = c
    }

    /// x: [N, H, W, C] -> [N, H, W, C].
    func callAsFunction(_ x: Tensor) throws -> Tensor {
        let (n, hw, c) = (x.shape[0], x.shape[1] * x.shape[2], x.shape[3])
        let h = try norm(x, samples: n).reshaped([n * hw, c])  // [N*HW, C]
        let qs = try q(h), ks = try k(h), vs = try v(h)        // [N*HW, C] each
        let scale = Float(1 / Double(c).squareRoot())
        // One head of width C: two BLAS products per block of queries (the score block is
        // bounded by queryChunk x HW floats).
        var parts: [Tensor] = []
        for i in 0..<n {
            let kf = try ks.rows(i * hw, hw), vf = try vs.rows(i * hw, hw)     // [HW, C]
            var r0 = 0
            while r0 < hw {
                let rows = min(Self.queryChunk, hw - r0)
                let qb = try qs.rows(i * hw + r0, rows)                        // [rows, C]
                let scores = try Ops.scale(try Ops.matmul(qb, kf, transposeB: true), scale)  // [rows, HW]
                let p = try Ops.softmax(scores)                                // [rows, HW]
                parts.append(try Ops.matmul(p, vf))                            // [rows, C]
                r0 += rows
            }
        }
        let att = parts.count == 1 ? parts[0] : try Ops.concatRows(parts)      // [N*HW, C]
        let out = try projOut(att).reshaped(x.shape)                           // [N, H, W, C]
        return try Ops.add(x, out)
    }
}

/// Upsample with conv: nearest x2, then a 3x3 conv. [N, H, W, C] -> [N, 2H, 2W, C].
struct VAEUpsample: Sendable {
    let conv: VAEConv3x3

    init(_ b: WeightBinder, _ prefix: String, channels c: Int, arithmetic: VAEConvArithmetic) {
        conv = VAEConv3x3(b, "\(prefix).conv", in: c, out: c, arithmetic: arithmetic)
    }

    func callAsFunction(_ x: Tensor) throws -> Tensor {
        try conv(x, upsample2x: true)   // the upsampled image is not materialised
    }
}
