// TemporalTransformer of the VideoCrafter2 UNet (attention across the frames of each pixel).
// Ports AILab-CVC/VideoCrafter@11bcd76 lvdm/modules/attention.py `TemporalTransformer.forward`
// in the VideoCrafter2 configuration: only_self_att (attn2 is a second self-attention, the text
// context is never used), no relative position, no causal mask.
import VCTensor

/// GroupNorm(32, C, eps 1e-6) with statistics over all T frames of a batch item -> proj_in ->
/// `depth` BasicTransformerBlocks attending over the T frames at each pixel -> proj_out -> + input.
/// proj_in/proj_out are nn.Linear (`use_linear`, the level transformers) or kernel-1 Conv1d
/// (`init_attn`: weight [inner, C, 1]).
public struct TemporalTransformer: Sendable {
    public let norm: GroupNorm
    public let projIn: Linear
    public let blocks: [BasicTransformerBlock]
    public let projOut: Linear

    public init(_ b: WeightBinder, _ prefix: String, channels: Int, heads: Int, headDim: Int, depth: Int, useLinear: Bool) {
        let inner = heads * headDim
        norm = GroupNorm(b, "\(prefix).norm", channels: channels, groups: 32, eps: 1e-6)
        projIn = useLinear ? Linear(b, "\(prefix).proj_in", in: channels, out: inner)
                           : Linear(b, "\(prefix).proj_in", in: channels, out: inner, kernelDims: 1)
        blocks = (0..<depth).map {
            BasicTransformerBlock(b, "\(prefix).transformer_blocks.\($0)", dim: inner, heads: heads, headDim: headDim,
                                  contextDim: nil)
        }
        projOut = useLinear ? Linear(b, "\(prefix).proj_out", in: inner, out: channels)
                            : Linear(b, "\(prefix).proj_out", in: inner, out: channels, kernelDims: 1)
    }

    /// x: [B*T, H, W, C] (the T frames of each item consecutive) -> [B*T, H, W, C].
    public func callAsFunction(_ x: Tensor, batch: Int, frames: Int) throws -> Tensor {
        guard x.rank == 4 else { throw TensorError.shapeMismatch("temporal transformer input \(x.shape)") }
        let layout = TokenLayout(batch: batch, frames: frames, pixels: x.shape[1] * x.shape[2], axis: .temporal)
        var h = try norm(x, samples: batch)               // statistics across all frames of an item
        h = try projIn(h)                                 // [B*T, H, W, C] -> [B*T, H, W, inner]
        for block in blocks { h = try block(h, context: nil, layout: layout) }
        h = try projOut(h)                                // [B*T, H, W, inner] -> [B*T, H, W, C]
        return try Ops.add(h, x)
    }
}
