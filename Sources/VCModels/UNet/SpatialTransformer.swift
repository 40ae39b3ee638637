// SpatialTransformer of the VideoCrafter2 UNet (per-frame self-attention + text cross-attention).
// Ports AILab-CVC/VideoCrafter@11bcd76 lvdm/modules/attention.py `SpatialTransformer.forward`.
import VCTensor

/// GroupNorm(32, C, eps 1e-6) per frame -> proj_in -> `depth` BasicTransformerBlocks (attn2 =
/// cross-attention to the context) -> proj_out -> + input. proj_in/proj_out are nn.Linear when
/// `use_linear` (weight [inner, C]) or 1x1 Conv2d otherwise (weight [inner, C, 1, 1]); on
/// channels-last activations both are the same GEMM.
public struct SpatialTransformer: Sendable {
    public let norm: GroupNorm
    public let projIn: Linear
    public let blocks: [BasicTransformerBlock]
    public let projOut: Linear

    public init(_ b: WeightBinder, _ prefix: String, channels: Int, heads: Int, headDim: Int, depth: Int,
                contextDim: Int, useLinear: Bool) {
        let inner = heads * headDim
        norm = GroupNorm(b, "\(prefix).norm", channels: channels, groups: 32, eps: 1e-6)
        projIn = useLinear ? Linear(b, "\(prefix).proj_in", in: channels, out: inner)
                           : Linear(b, "\(prefix).proj_in", in: channels, out: inner, kernelDims: 2)
        blocks = (0..<depth).map {
            BasicTransformerBlock(b, "\(prefix).transformer_blocks.\($0)", dim: inner, heads: heads, headDim: headDim,
                                  contextDim: contextDim)
        }
        projOut = useLinear ? Linear(b, "\(prefix).proj_out", in: inner, out: channels)
                            : Linear(b, "\(prefix).proj_out", in: inner, out: channels, kernelDims: 2)
    }

    /// x: [B*T, H, W, C]; context: [B, L, Cctx] (shared by the T frames of each item).
    public func callAsFunction(_ x: Tensor, context: Tensor, batch: Int, frames: Int) throws -> Tensor {
        guard x.rank == 4 else { throw TensorError.shapeMismatch("spatial transformer input \(x.shape)") }
        let layout = TokenLayout(batch: batch, frames: frames, pixels: x.shape[1] * x.shape[2], axis: .spatial)
        var h = try norm(x, samples: batch * frames)      // per-frame statistics
        h = try projIn(h)                                 // [B*T, H, W, C] -> [B*T, H, W, inner]
        for block in blocks { h = try block(h, context: context, layout: layout) }
        h = try projOut(h)                                // [B*T, H, W, inner] -> [B*T, H, W, C]
        return try Ops.add(h, x)
    }
}
