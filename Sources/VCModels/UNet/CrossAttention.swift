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

/// A chunk of token rows made of whole attention sequences (the unit the transformers work on so
/// that no tensor spans all B*T*H*W tokens at once):
/// - `spatial`: frames [firstFrame, firstFrame + frames) of the B*T frames, `pixels` rows each
///   (a frame is one self-attention sequence; frame f belongs to batch item f / framesPerItem);
/// - `temporal`: `frames` x `pixels` rows, frame-major (row = t * pixels + p), one sequence of
///   `frames` tokens per pixel.
public enum TokenChunk: Sendable, Equatable {
    case spatial(firstFrame: Int, frames: Int, pixels: Int, framesPerItem: Int)
    case temporal(frames: Int, pixels: Int)

    public var rows: Int {
        switch self {
        case let .spatial(_, frames, pixels, _): return frames * pixels
        case let .temporal(frames, pixels): return frames * pixels
        }
    }

    /// All frames of a spatial layout as one chunk.
    public static func spatial(_ layout: TokenLayout) -> TokenChunk {
        .spatial(firstFrame: 0, frames: layout.batch * layout.frames, pixels: layout.pixels, framesPerItem: layout.frames)
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

    /// Keys and values of a text context [B, L, Cctx] -> [B, L, inner] each (computed once per
    /// call and shared by every chunk and every frame of an item).
    public func contextKeysValues(_ context: Tensor) throws -> (k: Tensor, v: Tensor) {
        (try toK(context), try toV(context))
    }

    /// residual += to_out(attention(x)) for a chunk of whole sequences. x: [chunk.rows, queryDim]
    /// (already normalised); `contextKV` from `contextKeysValues` for cross-attention (spatial
    /// chunks only), nil for self-attention along the chunk's axis. residual: [chunk.rows, queryDim].
    public func accumulate(_ x: Tensor, chunk: TokenChunk, contextKV: (k: Tensor, v: Tensor)?, into residual: Tensor) throws {
        let inner = heads * headDim
        let n = chunk.rows
        guard x.count == n * (x.shape.last ?? 0), residual.count == x.count else {
            throw TensorError.shapeMismatch("attention chunk of \(n) rows: input \(x.shape), residual \(residual.shape)")
        }
        let q = try toQ(x)                                   // [n, inner]
        let out = Tensor(uninitialized: [n, inner])
        let scale = Float(1 / Double(headDim).squareRoot())
        switch chunk {
        case let .spatial(f0, frames, hw, perItem):
            if let (k, v) = contextKV {
                // Cross-attention: frame f attends to the L context tokens of item f / perItem.
                guard k.rank == 3, k.shape[2] == inner, perItem > 0 else {
                    throw TensorError.shapeMismatch("context keys \(k.shape) for \(inner) channels")
                }
                let l = k.shape[1]
                var f = f0
                while f < f0 + frames {
                    let item = f / perItem
                    guard item < k.shape[0] else { throw TensorError.shapeMismatch("frame \(f) beyond \(k.shape[0]) context items") }
                    let end = min(f0 + frames, (item + 1) * perItem)
                    let qo = (f - f0) * hw * inner
                    try Ops.attention(sequences: end - f, heads: heads, queries: hw, keys: l, headDim: headDim,
                                      q: .init(q, offset: qo, seqStride: hw * inner, rowStride: inner),
                                      k: .init(k, offset: item * l * inner, seqStride: 0, rowStride: inner),
                                      v: .init(v, offset: item * l * inner, seqStride: 0, rowStride: inner),
                                      out: .init(out, offset: qo, seqStride: hw * inner, rowStride: inner),
                                      scale: scale)
                    f = end
                }
            } else {
                // One sequence of H*W tokens per frame.
                let k = try toK(x), v = try toV(x)
                try Ops.attention(sequences: frames, heads: heads, queries: hw, keys: hw, headDim: headDim,
                                  q: .init(q, seqStride: hw * inner, rowStride: inner),
                                  k: .init(k, seqStride: hw * inner, rowStride: inner),
                                  v: .init(v, seqStride: hw * inner, rowStride: inner),
                                  out: .init(out, seqStride: hw * inner, rowStride: inner),
                                  scale: scale)
            }
        case let .temporal(t, pixels):
            guard contextKV == nil else { throw UNetError.unsupported("cross-attention in a temporal transformer") }
            // (b t) h w c -> (b h w) t c without moving data: the sequence of pixel p starts at
            // row p and steps `pixels` rows per frame.
            let k = try toK(x), v = try toV(x)
            try Ops.attention(sequences: pixels, heads: heads, queries: t, keys: t, headDim: headDim,
                              q: .init(q, seqStride: inner, rowStride: pixels * inner),
                              k: .init(k, seqStride: inner, rowStride: pixels * inner),
                              v: .init(v, seqStride: inner, rowStride: pixels * inner),
                              out: .init(out, seqStride: inner, rowStride: pixels * inner),
                              scale: scale)
        }
        try Ops.linear(out, toOut.weight, toOut.bias, accumulateInto: residual)   // [n, inner] -> += [n, queryDim]
    }

    /// x: [B*T, H, W, queryDim]; context: [B, L, contextDim] for cross-attention, nil for
    /// self-attention along `layout.axis`. Returns [B*T, H, W, queryDim] = to_out(attention).
    public func callAsFunction(_ x: Tensor, context: Tensor?, layout: TokenLayout) throws -> Tensor {
        let (bt, hw) = (layout.batch * layout.frames, layout.pixels)
        let dim = x.shape.last ?? 0
        guard x.count == bt * hw * dim else {
            throw TensorError.shapeMismatch("attention input \(x.shape) for \(layout.batch)x\(layout.frames) frames of \(hw) pixels")
        }
        if let context, context.rank != 3 || context.shape[0] != layout.batch {
            throw TensorError.shapeMismatch("context \(context.shape) for batch \(layout.batch)")
        }
        let y = Tensor(zeros: x.shape)
        let kv = try context.map(contextKeysValues)
        switch layout.axis {
        case .spatial:
            try accumulate(x.reshaped([bt * hw, dim]), chunk: .spatial(layout), contextKV: kv, into: y.reshaped([bt * hw, dim]))
        case .temporal:
            guard context == nil else { throw UNetError.unsupported("cross-attention in a temporal transformer") }
            // Each batch item's rows are frame-major: one temporal chunk per item.
            let per = layout.frames * hw
            for item in 0..<layout.batch {
                try accumulate(x.reshaped([bt * hw, dim]).rows(item * per, per), chunk: .temporal(frames: layout.frames, pixels: hw),
                               contextKV: nil, into: y.reshaped([bt * hw, dim]).rows(item * per, per))
            }
        }
        return y
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

    /// residual += ff(x) for x, residual: [rows, dim].
    public func accumulate(_ x: Tensor, into residual: Tensor) throws {
        try Ops.linear(Ops.geglu(proj(x)), out.weight, out.bias, accumulateInto: residual)
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

    /// Rows per feed-forward pass (default): bounds the [rows, 8*dim] GEGLU input.
    public static let feedForwardRows = 2048

    /// `contextDim` nil: attn2 is a second self-attention (the temporal blocks, only_self_att).
    public init(_ b: WeightBinder, _ prefix: String, dim: Int, heads: Int, headDim: Int, contextDim: Int?) {
        attn1 = CrossAttention(b, "\(prefix).attn1", queryDim: dim, contextDim: nil, heads: heads, headDim: headDim)
        ff = FeedForward(b, "\(prefix).ff", dim: dim)
        attn2 = CrossAttention(b, "\(prefix).attn2", queryDim: dim, contextDim: contextDim, heads: heads, headDim: headDim)
        norm1 = LayerNorm(b, "\(prefix).norm1", channels: dim, eps: 1e-5)
        norm2 = LayerNorm(b, "\(prefix).norm2", channels: dim, eps: 1e-5)
        norm3 = LayerNorm(b, "\(prefix).norm3", channels: dim, eps: 1e-5)
    }

    /// Runs the block in place on a chunk x: [chunk.rows, dim] that the caller owns.
    /// `contextKV`: attn2's keys/values of the text context (spatial blocks), nil for the
    /// temporal blocks (attn2 is then self-attention).
    public func apply(_ x: Tensor, chunk: TokenChunk, contextKV: (k: Tensor, v: Tensor)?,
                      feedForwardRows: Int = BasicTransformerBlock.feedForwardRows) throws {
        try attn1.accumulate(norm1(x), chunk: chunk, contextKV: nil, into: x)
        try attn2.accumulate(norm2(x), chunk: chunk, contextKV: contextKV, into: x)
        // Per-token: in row blocks so the [rows, 8*dim] intermediate stays bounded.
        let n = chunk.rows, step = max(1, feedForwardRows)
        var r0 = 0
        while r0 < n {
            let rows = try x.rows(r0, min(step, n - r0))
            try ff.accumulate(norm3(rows), into: rows)
            r0 += step
        }
    }

    /// x: [B*T, H, W, dim]; context [B, L, Cctx] or nil (attn2 is then self-attention).
    /// Returns a new tensor.
    public func callAsFunction(_ x: Tensor, context: Tensor?, layout: TokenLayout) throws -> Tensor {
        let dim = x.shape.last ?? 0, total = layout.batch * layout.frames * layout.pixels
        guard x.count == total * dim else {
            throw TensorError.shapeMismatch("transformer block input \(x.shape) for \(layout.batch)x\(layout.frames) frames of \(layout.pixels) pixels")
        }
        let y = x.copy()
        let y2 = try y.reshaped([total, dim])
        let kv = try context.map(attn2.contextKeysValues)
        switch layout.axis {
        case .spatial:
            try apply(y2, chunk: .spatial(layout), contextKV: kv)
        case .temporal:
            let per = layout.frames * layout.pixels
            for item in 0..<layout.batch {
                try apply(y2.rows(item * per, per), chunk: .temporal(frames: layout.frames, pixels: layout.pixels), contextKV: nil)
            }
        }
        return y
    }
}
