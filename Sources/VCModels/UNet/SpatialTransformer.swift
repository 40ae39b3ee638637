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
    /// Works on chunks of whole frames of about chunkElements / inner tokens (at least one frame):
    /// the GroupNorm statistics are taken once, then each chunk is normalised, projected, run
    /// through the blocks in place and written to the output with the residual.
    public func callAsFunction(_ x: Tensor, context: Tensor, batch: Int, frames: Int, chunkElements: Int = 4096 * 320) throws -> Tensor {
        // Every chunk multiplies by the same weights: pack each once for the whole call.
        try Ops.withPackedWeights { try forward(x, context: context, batch: batch, frames: frames, chunkElements: chunkElements) }
    }

    private func forward(_ x: Tensor, context: Tensor, batch: Int, frames: Int, chunkElements: Int) throws -> Tensor {
        guard x.rank == 4, x.shape[0] == batch * frames else { throw TensorError.shapeMismatch("spatial transformer input \(x.shape)") }
        let (bt, hw, c) = (x.shape[0], x.shape[1] * x.shape[2], x.shape[3])
        let stats = try Ops.groupNormStatistics(x, samples: bt, groups: norm.groups, weight: norm.weight,
                                                bias: norm.bias, eps: norm.eps)          // per-frame statistics
        let contextKV = try blocks.map { try $0.attn2.contextKeysValues(context) }   // [B, L, inner] each
        let y = Tensor(uninitialized: x.shape)
        let inner = projIn.weight.shape[0]
        let perChunk = max(1, chunkElements / inner / max(hw, 1))
        let ffRows = max(1, chunkElements / (2 * inner))
        var f0 = 0
        while f0 < bt {
            let nf = min(perChunk, bt - f0)
            let xc = try x.rows(f0, nf)                                               // [nf, H, W, C]
            let h = try projIn(Ops.groupNormApply(xc, stats.samples(f0, nf))).reshaped([nf * hw, inner])
            let chunk = TokenChunk.spatial(firstFrame: f0, frames: nf, pixels: hw, framesPerItem: frames)
            for (block, kv) in zip(blocks, contextKV) { try block.apply(h, chunk: chunk, contextKV: kv, feedForwardRows: ffRows) }
            let yc = try y.rows(f0, nf).reshaped([nf * hw, c])
            try Ops.copy(xc, into: yc)                                                // + input
            try Ops.linear(h, projOut.weight, projOut.bias, accumulateInto: yc)       // [nf*HW, inner] -> [nf*HW, C]
            f0 += nf
        }
        return y
    }
}
