// TemporalConvBlock (ModelScope style) of the VideoCrafter2 UNet, key prefix `...temopral_conv.`
// (the typo is upstream's). Ports AILab-CVC/VideoCrafter@11bcd76
// lvdm/modules/networks/openaimodel3d.py `TemporalConvBlock` with spatial_aware = False.
import VCTensor

/// Four stages GroupNorm(32, C, eps 1e-5, statistics over all T frames of an item) -> SiLU ->
/// (Dropout, inactive) -> Conv3d(C, C, (3, 1, 1), padding (1, 0, 0)), then + input.
/// Keys: conv1.0 / conv1.2, conv{2,3,4}.0 / conv{2,3,4}.3; conv weights [C, C, 3, 1, 1].
public struct TemporalConvBlock: Sendable {
    public let norms: [GroupNorm]
    public let weights: [Tensor]
    public let biases: [Tensor]

    public init(_ b: WeightBinder, _ prefix: String, channels c: Int) {
        var norms: [GroupNorm] = [], weights: [Tensor] = [], biases: [Tensor] = []
        for stage in 1...4 {
            let convIndex = stage == 1 ? 2 : 3   // conv1 has no Dropout in its Sequential
            norms.append(GroupNorm(b, "\(prefix).conv\(stage).0", channels: c, groups: 32, eps: 1e-5))
            weights.append(b.take("\(prefix).conv\(stage).\(convIndex).weight", [c, c, 3, 1, 1], allowQuantized: true))
            biases.append(b.take("\(prefix).conv\(stage).\(convIndex).bias", [c]))
        }
        self.norms = norms; self.weights = weights; self.biases = biases
    }

    /// x: [B*T, H, W, C] -> [B*T, H, W, C] (a new tensor; x is not modified).
    public func callAsFunction(_ x: Tensor, batch: Int, frames: Int) throws -> Tensor {
        var h = x
        for i in 0..<4 {
            // GroupNorm statistics over T*H*W per group, applied with SiLU inside the conv's gather.
            let s = try Ops.groupNormStatistics(h, samples: batch, groups: norms[i].groups, weight: norms[i].weight,
                                                bias: norms[i].bias, eps: norms[i].eps)
            h = try Ops.convTemporal(h, frames: frames, weights[i], biases[i], norm: s, activation: .silu)  // kernel 3 over frames
        }
        try Ops.addInPlace(h, x)
        return h
    }
}
