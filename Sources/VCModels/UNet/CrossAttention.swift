// CrossAttention, GEGLU feed-forward and BasicTransformerBlock of the VideoCrafter2 UNet.
// Ports AILab-CVC/VideoCrafter@11bcd76 lvdm/modules/attention.py (`CrossAttention.forward`,
// `GEGLU`, `FeedForward`, `BasicTransformerBlock._forward`). The xformers path
// (`efficient_forward`) computes the same softmax(q k^T / sqrt(d)) v.
//
// Activations stay channels-last [B*T, H, W, C]; the three attention patterns differ only in
// how sequences are cut out of that tensor (no data is rearranged):
// - spatial self-attention: one sequence of H*W tokens per frame;
// - cross-attention: the H*W tokens of a frame attend to the L context tokens of its batch item
//   (the context is shared by the item's T frames with sequence stride 0, no repeat_interleave);
// - temporal self-attention: one sequence of T tokens per (batch item, pixel), row stride H*W*C.
import VCTensor

/// How the token rows of an activation [B*T, H, W, C] form attention sequences.
public struct TokenLayout: Sendable, Equatable {
    public enum Axis: Sendable, Equatable { case spatial, temporal }
    public var batch: Int
    public var frames: Int
    /// H*W of one frame.
    public var pixels: Int
    public var axis: Axis

    public init(batch: Int, frames: Int, pixels: Int, axis: Axis) {
        self.batch = batch; self.frames = frames; self.pixels = pixels; self.axis = axis
    }
}

/// `CrossAttention`: to_q/to_k/to_v without bias, heads of `headDim` contiguous channels
/// (channel = head * headDim + d), scale headDim^-0.5, to_out.0 with bias. No mask, no
/// relative position (VideoCrafter2 uses neither).
public struct CrossAttention: Sendable {
    public let toQ: Linear
    public let toK: Linear
    public let toV: Linear
    public let toOut: Linear
    public let heads: Int
    public let headDim: Int

    /// `contextDim` nil: self-attention (to_k/to_v take `queryDim` inputs).
    public init(_ b: WeightBinder, _ prefix: String, queryDim: Int, contextDim: Int?, heads: Int, headDim: Int) {
        let inner = heads * headDim
        toQ = Linear(b, "\(prefix).to_q", in: queryDim, out: inner, bias: false)
        toK = Linear(b, "\(prefix).to_k", in: contextDim ?? queryDim, out: inner, bias: false)
        toV = Linear(b, "\(prefix).to_v", in: contextDim ?? queryDim, out: inner, bias: false)
        toOut = Linear(b, "\(prefix).to_out.0", in: inner, out: queryDim)
        self.heads = heads
        self.headDim = headDim
    }

    /// x: [B*T, H, W, queryDim]; context: [B, L, contextDim] for cross-attention, nil for
    /// self-attention along `layout.axis`. Returns [B*T, H, W, queryDim].
    public func callAsFunction(_ x: Tensor, context: Tensor?, layout: TokenLayout) throws -> Tensor {
        let (bt, hw, inner) = (layout.batch * layout.frames, layout.pixels, heads * headDim)
        guard x.count == bt * hw * (x.shape.last ?? 0) else {
            throw TensorError.shapeMismatch("attention input \(x.shape) for \(layout.batch)x\(layout.frames) frames of \(hw) pixels")
        }
        let q = try toQ(x)                       // [B*T, H, W, inner]
        let kvSource = context ?? x
        let k = try toK(kvSource)                // [B*T, H, W, inner] or [B, L, inner]
        let v = try toV(kvSource)
        let out = Tensor(zeros: q.shape)         // [B*T, H, W, inner]
        let scale = Float(1 / Double(headDim).squareRoot())

        if let context {
            // Cross-attention: frame (b, t) attends to the L tokens of context item b.
            guard context.rank == 3, context.shape[0] == layout.batch else {
                throw TensorError.shapeMismatch("context \(context.shape) for batch \(layout.batch)")
            }
            let l = context.shape[1]
            for item in 0..<layout.batch {
                let qo = item * layout.frames * hw * inner
                try Ops.attention(sequences: layout.frames, heads: heads, queries: hw, keys: l, headDim: headDim,
                                  q: .init(q, offset: qo, seqStride: hw * inner, rowStride: inner),
                                  k: .init(k, offset: item * l * inner, seqStride: 0, rowStride: inner),
                                  v: .init(v, offset: item * l * inner, seqStride: 0, rowStride: inner),
                                  out: .init(out, offset: qo, seqStride: hw * inner, rowStride: inner),
                                  scale: scale)
            }
        } else {
            switch layout.axis {
            case .spatial:
                // One sequence of H*W tokens per frame.
                try Ops.attention(sequences: bt, heads: heads, queries: hw, keys: hw, headDim: headDim,
                                  q: .init(q, seqStride: hw * inner, rowStride: inner),
                                  k: .init(k, seqStride: hw * inner, rowStride: inner),
                                  v: .init(v, seqStride: hw * inner, rowStride: inner),
                                  out: .init(out, seqStride: hw * inner, rowStride: inner),
                                  scale: scale)
            case .temporal:
                // (b t) h w c -> (b h w) t c without moving data: for batch item b, the sequence of
                // pixel p starts at (b*T*HW + p)*inner and steps HW*inner per frame.
                for item in 0..<layout.batch {
                    let o = item * layout.frames * hw * inner
                    try Ops.attention(sequences: hw, heads: heads, queries: layout.frames, keys: layout.frames, headDim: headDim,
                                      q: .init(q, offset: o, seqStride: inner, rowStride: hw * inner),
                                      k: .init(k, offset: o, seqStride: inner, rowStride: hw * inner),
                                      v: .init(v, offset: o, seqStride: inner, rowStride: hw * inner),
                                      out: .init(out, offset: o, seqStride: inner, rowStride: hw * inner),
                                      scale: scale)
                }
            }
        }
        return try toOut(out)                    // [B*T, H, W, queryDim]
    }
}

/// `FeedForward(dim, mult=4, glu=True)`: net.0 = GEGLU (proj: dim -> 2*4*dim; value = first half,
/// gate = second half, exact-erf GELU), net.1 = Dropout, net.2 = Linear(4*dim -> dim).
public struct FeedForward: Sendable {
    public let proj: Linear
    public let out: Linear

    public init(_ b: WeightBinder, _ prefix: String, dim: Int, mult: Int = 4) {
        let inner = dim * mult
        proj = Linear(b, "\(prefix).net.0.proj", in: dim, out: inner * 2)
        out = Linear(b, "\(prefix).net.2", in: inner, out: dim)
    }

    // [..., dim] -> [..., 8*dim] -> [..., 4*dim] -> [..., dim]
    public func callAsFunction(_ x: Tensor) throws -> Tensor {
        try out(Ops.geglu(proj(x)))
    }
}

/// `BasicTransformerBlock`: x = attn1(norm1(x)) + x; x = attn2(norm2(x), context) + x;
/// x = ff(norm3(x)) + x. LayerNorm eps 1e-5 (nn.LayerNorm default).
public struct BasicTransformerBlock: Sendable {
    public let attn1: CrossAttention
    public let attn2: CrossAttention
    public let ff: FeedForward
    public let norm1: LayerNorm
    public let norm2: LayerNorm
    public let norm3: LayerNorm

    /// `contextDim` nil: attn2 is a second self-attention (the temporal blocks, only_self_att).
    public init(_ b: WeightBinder, _ prefix: String, dim: Int, heads: Int, headDim: Int, contextDim: Int?) {
        attn1 = CrossAttention(b, "\(prefix).attn1", queryDim: dim, contextDim: nil, heads: heads, headDim: headDim)
        ff = FeedForward(b, "\(prefix).ff", dim: dim)
        attn2 = CrossAttention(b, "\(prefix).attn2", queryDim: dim, contextDim: contextDim, heads: heads, headDim: headDim)
        norm1 = LayerNorm(b, "\(prefix).norm1", channels: dim, eps: 1e-5)
        norm2 = LayerNorm(b, "\(prefix).norm2", channels: dim, eps: 1e-5)
        norm3 = LayerNorm(b, "\(prefix).norm3", channels: dim, eps: 1e-5)
    }

    /// x: [B*T, H, W, dim]; context [B, L, Cctx] or nil (attn2 is then self-attention).
    public func callAsFunction(_ x: Tensor, context: Tensor?, layout: TokenLayout) throws -> Tensor {
        var h = try Ops.add(attn1(norm1(x), context: nil, layout: layout), x)
        h = try Ops.add(attn2(norm2(h), context: context, layout: layout), h)
        return try Ops.add(ff(norm3(h)), h)
    }
}
