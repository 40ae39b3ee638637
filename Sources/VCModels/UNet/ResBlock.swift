// ResBlock of the VideoCrafter2 UNet: the SD ResBlock run per frame, then the temporal conv block.
// Ports AILab-CVC/VideoCrafter@11bcd76 lvdm/modules/networks/openaimodel3d.py `ResBlock._forward`
// (use_scale_shift_norm = False, up = down = False) and lvdm/basics.py `normalization`
// (GroupNorm32: 32 groups, eps 1e-5, computed in fp32).
import VCTensor

/// in_layers: GroupNorm -> SiLU -> Conv3x3; + emb_layers(SiLU -> Linear)(emb) broadcast over H, W;
/// out_layers: GroupNorm -> SiLU -> Dropout -> Conv3x3; + skip (identity, or a 1x1 conv when the
/// channel count changes); then, if present, the TemporalConvBlock across frames.
public struct ResBlock: Sendable {
    public let inNorm: GroupNorm
    public let inConv: Conv2d
    public let embProj: Linear
    public let outNorm: GroupNorm
    public let outConv: Conv2d
    public let skip: Linear?
    public let temporalConv: TemporalConvBlock?
    /// Hook name prefix (the key prefix without `model.diffusion_model.`).
    public let name: String

    public init(_ b: WeightBinder, _ prefix: String, name: String, in cin: Int, out cout: Int, embDim: Int, temporalConv: Bool) {
        inNorm = GroupNorm(b, "\(prefix).in_layers.0", channels: cin, groups: 32, eps: 1e-5)
        inConv = Conv2d(b, "\(prefix).in_layers.2", in: cin, out: cout)
        embProj = Linear(b, "\(prefix).emb_layers.1", in: embDim, out: cout)
        outNorm = GroupNorm(b, "\(prefix).out_layers.0", channels: cout, groups: 32, eps: 1e-5)
        outConv = Conv2d(b, "\(prefix).out_layers.3", in: cout, out: cout)
        // A 1x1 conv on channels-last activations is a Linear over the channel vector.
        skip = cin == cout ? nil : Linear(b, "\(prefix).skip_connection", in: cin, out: cout, kernelDims: 2)
        self.temporalConv = temporalConv ? TemporalConvBlock(b, "\(prefix).temopral_conv", channels: cout) : nil
        self.name = name
    }

    /// x: [B*T, H, W, Cin]; embSiLU: SiLU(emb) [B, E] (one row per batch item) -> [B*T, H, W, Cout].
    public func callAsFunction(_ x: Tensor, embSiLU: Tensor, batch: Int, frames: Int,
                               observer: ((String, Tensor) -> Void)?) throws -> Tensor {
        let n = batch * frames
        // GroupNorm + SiLU are folded into the gathers of the 3x3 convs (never materialised).
        let s1 = try Ops.groupNormStatistics(x, samples: n, groups: inNorm.groups, weight: inNorm.weight, bias: inNorm.bias, eps: inNorm.eps)
        var h = try Ops.conv2d(x, inConv.weight, inConv.bias, stride: 1, padding: 1, upsample2x: false,
                               norm: s1, activation: .silu)                        // [B*T, H, W, Cout]
        let e = try embProj(embSiLU)                                              // [B, Cout]
        try Ops.addRowVectorsInPlace(h, e, samples: batch)                        // + e[b] on all T*H*W rows of item b
        let s2 = try Ops.groupNormStatistics(h, samples: n, groups: outNorm.groups, weight: outNorm.weight, bias: outNorm.bias, eps: outNorm.eps)
        h = try Ops.conv2d(h, outConv.weight, outConv.bias, stride: 1, padding: 1, upsample2x: false,
                           norm: s2, activation: .silu)                            // dropout is inactive at inference
        if let skip {
            try Ops.linear(x, skip.weight, skip.bias, accumulateInto: h)          // h += skip(x) (1x1 conv)
        } else {
            try Ops.addInPlace(h, x)                                              // h += x
        }
        if let temporalConv {
            observer?("\(name).temopral_conv.in", h)
            h = try temporalConv(h, batch: batch, frames: frames)
            observer?("\(name).temopral_conv.out", h)
        }
        return h
    }
}
