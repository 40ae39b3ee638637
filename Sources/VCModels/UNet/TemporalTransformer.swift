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
    /// Works on chunks of about chunkElements / inner tokens: a range of pixels of one item across all its
    /// frames (gathered frame-major), normalised with the item's statistics, projected, run
    /// through the blocks in place, projected back onto the residual and scattered to the output.
    public func callAsFunction(_ x: Tensor, batch: Int, frames: Int, chunkElements: Int = 4096 * 320) throws -> Tensor {
        // Every chunk multiplies by the same weights: pack each once for the whole call.
        try Ops.withPackedWeights { try forward(x, batch: batch, frames: frames, chunkElements: chunkElements) }
    }

    private func forward(_ x: Tensor, batch: Int, frames: Int, chunkElements: Int) throws -> Tensor {
        guard x.rank == 4, batch > 0, x.shape[0] == batch * frames else {
            throw TensorError.shapeMismatch("temporal transformer input \(x.shape)")
        }
        let (hw, c) = (x.shape[1] * x.shape[2], x.shape[3])
        let stats = try Ops.groupNormStatistics(x, samples: batch, groups: norm.groups, weight: norm.weight,
                                                bias: norm.bias, eps: norm.eps)          // statistics across all frames of an item
        let x2 = try x.reshaped([batch * frames * hw, c])
        let y = Tensor(uninitialized: x.shape)
        let y2 = try y.reshaped([batch * frames * hw, c])
        let inner = projIn.weight.shape[0]
        let perChunk = max(1, chunkElements / inner / max(frames, 1))
        let ffRows = max(1, chunkElements / (2 * inner))
        for item in 0..<batch {
            var p0 = 0
            while p0 < hw {
                let np = min(perChunk, hw - p0)
                // [T, np, C]: pixels p0..<p0+np of every frame of the item.
                let xc = try Ops.gatherRowBlocks(x2, first: item * frames * hw + p0, blocks: frames, stride: hw, count: np)
                let h = try projIn(Ops.groupNormApply(xc, stats.samples(item, 1)))       // [T*np, inner]
                let chunk = TokenChunk.temporal(frames: frames, pixels: np)
                for block in blocks { try block.apply(h, chunk: chunk, contextKV: nil, feedForwardRows: ffRows) }
                try Ops.linear(h, projOut.weight, projOut.bias, accumulateInto: xc)       // residual + proj_out
                try Ops.scatterRowBlocks(xc, into: y2, first: item * frames * hw + p0, blocks: frames, stride: hw, count: np)
                p0 += np
            }
        }
        return y
    }
}
