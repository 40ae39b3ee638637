// The OpenCLIP text tower as VideoCrafter runs it.
//
// Ports AILab-CVC/VideoCrafter@11bcd76 `lvdm/modules/encoders/condition.py`
// (FrozenOpenCLIPEmbedder.encode_with_transformer / text_transformer_forward) and
// mlfoundations/open_clip v2.22.0 `src/open_clip/transformer.py` (ResidualAttentionBlock,
// LayerNorm, the MLP) and `model.py` (build_attention_mask):
//
//   x = token_embedding[ids] + positional_embedding
//   for the first `layers - 1` blocks ("penultimate"):
//       x = x + out_proj(MHA(ln_1(x)))         (fused in_proj q/k/v, causal mask, q.k / sqrt(d))
//       x = x + c_proj(gelu(c_fc(ln_2(x))))    (exact GELU)
//   return ln_final(x)                         (all 77 positions; no pooling, no text_projection)
//
// Activations are channels-last `[B*L, width]`; sequence b occupies rows b*L ..< (b+1)*L.
import VCTensor

/// A linear layer whose weight is packed once, at load, for the GEMM kernels (`PackedWeight`:
/// same results, no per-call repacking of the 12.6 M weights of each block); the tensor as stored
/// is used if it cannot be packed.
struct OpenCLIPLinear: Sendable {
    enum Weight: Sendable { case packed(PackedWeight), plain(Tensor) }
    let weight: Weight
    let bias: Tensor?

    init(weight w: Tensor, bias: Tensor?) {
        weight = (try? PackedWeight(w)).map(Weight.packed) ?? .plain(w)
        self.bias = bias
    }

    init(_ b: WeightBinder, _ prefix: String, in inFeatures: Int, out outFeatures: Int) {
        let l = Linear(b, prefix, in: inFeatures, out: outFeatures)
        self.init(weight: l.weight, bias: l.bias)
    }

    // [..., in] -> [..., out]
    func callAsFunction(_ x: Tensor) throws -> Tensor {
        switch weight {
        case .packed(let p): return try Ops.linear(x, p, bias)
        case .plain(let t): return try Ops.linear(x, t, bias)
        }
    }
}

/// open_clip `ResidualAttentionBlock` (ls_1 / ls_2 are identities in this model).
struct OpenCLIPResidualBlock: Sendable {
    let ln1: LayerNorm
    let inProj: OpenCLIPLinear   // in_proj_weight [3W, W] (rows [q; k; v]) + in_proj_bias [3W]
    let outProj: OpenCLIPLinear
    let ln2: LayerNorm
    let fc: OpenCLIPLinear
    let proj: OpenCLIPLinear
    let width: Int
    let heads: Int

    init(_ b: WeightBinder, _ prefix: String, width: Int, heads: Int) {
        ln1 = LayerNorm(b, "\(prefix).ln_1", channels: width)
        inProj = OpenCLIPLinear(weight: b.take("\(prefix).attn.in_proj_weight", [3 * width, width], allowQuantized: true),
                                bias: b.take("\(prefix).attn.in_proj_bias", [3 * width]))
        outProj = OpenCLIPLinear(b, "\(prefix).attn.out_proj", in: width, out: width)
        ln2 = LayerNorm(b, "\(prefix).ln_2", channels: width)
        fc = OpenCLIPLinear(b, "\(prefix).mlp.c_fc", in: width, out: 4 * width)
        proj = OpenCLIPLinear(b, "\(prefix).mlp.c_proj", in: 4 * width, out: width)
        self.width = width
        self.heads = heads
    }

    /// x: [B*L, W] holding `sequences` sequences of `length` tokens -> [B*L, W].
    func callAsFunction(_ x: Tensor, sequences: Int, length: Int) throws -> Tensor {
        let w = width, d = width / heads
        // Attention branch.
        let h = try ln1(x)                                                    // [B*L, W]
        let qkv = try inProj(h)                                               // [B*L, 3W] = [q | k | v]
        let att = Tensor(zeros: [sequences * length, w])                      // [B*L, W]
        try Ops.attention(sequences: sequences, heads: heads, queries: length, keys: length, headDim: d,
                          q: .init(qkv, offset: 0, seqStride: length * 3 * w, rowStride: 3 * w),
                          k: .init(qkv, offset: w, seqStride: length * 3 * w, rowStride: 3 * w),
                          v: .init(qkv, offset: 2 * w, seqStride: length * 3 * w, rowStride: 3 * w),
                          out: .init(att, seqStride: length * w, rowStride: w),
                          scale: 1 / Float(d).squareRoot(), causal: true)
        let x1 = try Ops.add(x, try outProj(att))                             // [B*L, W]
        // MLP branch.
        let m = try proj(try Ops.gelu(try fc(try ln2(x1))))                   // [B*L, W] -> [B*L, 4W] -> [B*L, W]
        return try Ops.add(x1, m)
    }
}

/// FrozenOpenCLIPEmbedder: token ids -> `[B, contextLength, width]` conditioning.
public struct OpenCLIPTextEncoder: Sendable {
    /// Receives named intermediate activations: "embed", "block0" ..., "ln_final", each
    /// `[B, L, width]` (the names of golden `text.hidden.*`).
    public typealias Observer = (_ name: String, _ value: Tensor) -> Void

    /// Where the tower lives in an LDM / VideoCrafter checkpoint.
    public static let defaultPrefix = "cond_stage_model.model."

    public let config: TextEncoderConfig
    let tokenEmbedding: Tensor       // [vocab, W], any weight type (rows expanded on lookup)
    let positionalEmbedding: Tensor  // [L, W] f32
    let blocks: [OpenCLIPResidualBlock]
    let lnFinal: LayerNorm

    /// Binds the tensors the configured blocks need from `b` (names `prefix` + open_clip names).
    /// Use `isUnused` to mark the rest of the tower (skipped block, projection) as deliberately unused.
    public init(_ b: WeightBinder, config: TextEncoderConfig, prefix: String = OpenCLIPTextEncoder.defaultPrefix) {
        self.config = config
        let w = config.width
        tokenEmbedding = b.take("\(prefix)token_embedding.weight", [config.vocabSize, w], allowQuantized: true)
        positionalEmbedding = b.take("\(prefix)positional_embedding", [config.contextLength, w])
        blocks = (0..<config.layersRun).map {
            OpenCLIPResidualBlock(b, "\(prefix)transformer.resblocks.\($0)", width: w, heads: config.heads)
        }
        lnFinal = LayerNorm(b, "\(prefix)ln_final", channels: w)
    }

    /// Tensors of the open_clip text tower that inference never reads: the blocks after the last
    /// one run (block `layers - 1` for "penultimate"), `text_projection` and `logit_scale`.
    public static func isUnused(_ name: String, config: TextEncoderConfig, prefix: String = defaultPrefix) -> Bool {
        guard name.hasPrefix(prefix) else { return false }
        let rest = name.dropFirst(prefix.count)
        if rest == "text_projection" || rest == "logit_scale" { return true }
        for i in config.layersRun..<max(config.layers, config.layersRun) where rest.hasPrefix("transformer.resblocks.\(i).") {
            return true
        }
        return false
    }

    /// Strict load: every tensor under `prefix` is either used (with the configured shape) or one
    /// of the known-unused ones; otherwise a `BindingError` lists all problems.
    public static func load(from source: any TensorSource, config: TextEncoderConfig,
                            prefix: String = defaultPrefix) throws -> OpenCLIPTextEncoder {
        try config.validate()
        let b = WeightBinder(source)
        let model = OpenCLIPTextEncoder(b, config: config, prefix: prefix)
        b.ignore { isUnused($0, config: config, prefix: prefix) }
        try b.finish(prefix: prefix)
        return model
    }

    /// Encodes `tokens` (B rows of exactly `contextLength` ids, as open_clip.tokenize returns
    /// them) to `[B, contextLength, width]`.
    public func encode(tokens: [[Int]], observer: Observer? = nil) throws -> Tensor {
        let l = config.contextLength, w = config.width, n = tokens.count
        guard n > 0 else { throw TensorError.shapeMismatch("text encoder: no token sequences") }
        for (i, row) in tokens.enumerated() where row.count != l {
            throw TensorError.shapeMismatch("text encoder: sequence \(i) has \(row.count) tokens, expected \(l)")
        }
        // [B*L] ids -> [B*L, W] embeddings + positions (rows 0..<L repeated per sequence).
        let tok = try Ops.gatherRows(tokenEmbedding, tokens.flatMap { $0 })
        let pos = try Ops.gatherRows(positionalEmbedding, (0..<n).flatMap { _ in Array(0..<l) })
        var x = try Ops.add(tok, pos)                                          // [B*L, W]
        observer?("embed", try x.reshaped([n, l, w]))
        for (i, block) in blocks.enumerated() {
            x = try block(x, sequences: n, length: l)                          // [B*L, W]
            observer?("block\(i)", try x.reshaped([n, l, w]))
        }
        let out = try lnFinal(x).reshaped([n, l, w])                           // [B, L, W]
        observer?("ln_final", out)
        return out
    }

    /// `encode(tokens:)` for int32 ids (the dtype open_clip and the golden files use).
    public func encode(tokens: [[Int32]], observer: Observer? = nil) throws -> Tensor {
        try encode(tokens: tokens.map { $0.map(Int.init) }, observer: observer)
    }

    /// Names and shapes of every tensor of the open_clip text tower (including the unused ones)
    /// as an LDM checkpoint stores them; `RandomWeights` uses this for benchmarks.
    public static func parameterShapes(config: TextEncoderConfig, prefix: String = defaultPrefix) -> [String: [Int]] {
        let w = config.width
        var s: [String: [Int]] = [
            "\(prefix)token_embedding.weight": [config.vocabSize, w],
            "\(prefix)positional_embedding": [config.contextLength, w],
            "\(prefix)ln_final.weight": [w], "\(prefix)ln_final.bias": [w],
            "\(prefix)text_projection": [w, w],
            "\(prefix)logit_scale": [],
        ]
        for i in 0..<config.layers {
            let p = "\(prefix)transformer.resblocks.\(i)."
            s[p + "ln_1.weight"] = [w]; s[p + "ln_1.bias"] = [w]
            s[p + "attn.in_proj_weight"] = [3 * w, w]; s[p + "attn.in_proj_bias"] = [3 * w]
            s[p + "attn.out_proj.weight"] = [w, w]; s[p + "attn.out_proj.bias"] = [w]
            s[p + "ln_2.weight"] = [w]; s[p + "ln_2.bias"] = [w]
            s[p + "mlp.c_fc.weight"] = [4 * w, w]; s[p + "mlp.c_fc.bias"] = [4 * w]
            s[p + "mlp.c_proj.weight"] = [w, 4 * w]; s[p + "mlp.c_proj.bias"] = [w]
        }
        return s
    }
}
