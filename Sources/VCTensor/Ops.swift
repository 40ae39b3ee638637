import CVCKernels

/// The operations the models need. Activations are f32, contiguous, channels-last: the last
/// dimension is channels and every other dimension counts rows (tokens). Each op returns a new
/// tensor and checks its operands' shapes.
public enum Ops {
    // MARK: threads

    /// Sets the one thread count of the numeric runtime: our pool gets `n` threads and OpenBLAS
    /// stays single-threaded inside it (large f32 products are split over the pool), so the cores
    /// are never oversubscribed. `n < 1` means all cores. Results do not depend on it.
    public static func setThreads(_ n: Int) { vck_set_threads(Int32(clamping: n)) }
    public static var threads: Int { Int(vck_get_threads()) }

    /// Activation precision of products with bf16 and q8_0 weights (f16 and f32 weights are
    /// always fp32-accurate).
    public enum GEMMPrecision: String, Sendable, Codable, CaseIterable {
        /// Activations rounded to bf16 / quantized per 32-block to int8 (AVX512-BF16 / VNNI speed).
        case fast
        /// fp32 activations times the exact weight values: only the weights' own quantization
        /// error (the golden yardsticks), at fp32-FMA speed.
        case exact
        /// q8_0: activations quantized per 32-block to 15 bits (AVX512-VNNI vpdpbusd in two passes), error far
        /// below the weights' own; bf16: as `.exact`.
        case balanced
    }

    /// Runs `body` with `precision` for the products computed for this thread (the kernels read
    /// the setting on the calling thread; their worker threads follow it). nil: no change. The
    /// thread's previous setting is restored afterwards.
    public static func withGEMMPrecision<T>(_ precision: GEMMPrecision?, _ body: () throws -> T) rethrows -> T {
        guard let precision else { return try body() }
        let saved = vck_get_thread_gemm_precision()
        vck_set_thread_gemm_precision(code(precision))
        defer { vck_set_thread_gemm_precision(saved) }
        return try body()
    }

    static func code(_ p: GEMMPrecision) -> Int32 {
        switch p {
        case .exact: Int32(VCK_GEMM_EXACT)
        case .fast: Int32(VCK_GEMM_FAST)
        case .balanced: Int32(VCK_GEMM_BALANCED)
        }
    }

    /// Process-wide; `.balanced` by default (VCK_GEMM_PRECISION=exact|balanced|fast selects the
    /// mode until set). `withGEMMPrecision` overrides it for one thread.
    public static var gemmPrecision: GEMMPrecision {
        get {
            switch vck_get_gemm_precision() {
            case Int32(VCK_GEMM_EXACT): return .exact
            case Int32(VCK_GEMM_FAST): return .fast
            default: return .balanced
            }
        }
        set { vck_set_gemm_precision(code(newValue)) }
    }

    // MARK: helpers

    static func requireF32(_ t: Tensor, _ what: String) throws {
        guard t.dtype == .f32 else { throw TensorError.unsupportedDType(t.dtype, "\(what) must be f32") }
    }

    static func channels(_ t: Tensor) -> Int { t.shape.last ?? 1 }
    static func rows(_ t: Tensor) -> Int { t.count / max(channels(t), 1) }

    static func weight(_ w: Tensor, k: Int, what: String) throws -> vck_weight {
        guard w.dtype.isWeightType else { throw TensorError.unsupportedDType(w.dtype, "\(what) weight") }
        guard let (n, kk) = DType.q8Layout(shape: w.shape), kk == k else {
            throw TensorError.shapeMismatch("\(what): weight \(w.shape) does not take \(k) inputs")
        }
        let code: Int32
        switch w.dtype {
        case .f32: code = Int32(VCK_W_F32)
        case .f16: code = Int32(VCK_W_F16)
        case .bf16: code = Int32(VCK_W_BF16)
        default: code = Int32(VCK_W_Q8_0)
        }
        return vck_weight(data: UnsafeRawPointer(w.raw), dtype: code, n: Int64(n), k: Int64(k))
    }

    static func biasPointer(_ b: Tensor?, n: Int, what: String) throws -> UnsafePointer<Float>? {
        guard let b else { return nil }
        guard b.dtype == .f32, b.count == n else {
            throw TensorError.shapeMismatch("\(what): bias \(b.shape) \(b.dtype.rawValue) for \(n) outputs (bias must be f32)")
        }
        return UnsafePointer(b.f32)
    }

    // MARK: linear algebra

    /// The packed weights of the innermost `withPackedWeights` scope (nil outside one).
    @TaskLocal static var packingScope: PackedWeightCache?

    /// Runs `body` with a packing scope: every `linear` weight given as a tensor is packed for the
    /// GEMM kernels once, on first use, and the packed copy is reused by the later calls in the
    /// scope and freed when it ends. Without a scope the kernels repack a tensor weight on every
    /// call, which costs as much as a fifth of the products when a layer runs over many small
    /// chunks of rows with the same weight (the UNet's transformers). Results are identical.
    public static func withPackedWeights<T>(_ body: () throws -> T) rethrows -> T {
        try $packingScope.withValue(PackedWeightCache(), operation: body)
    }

    /// The C descriptor of a linear weight (from the packing scope when there is one) and the packed
    /// copy it points into, to keep alive while it is used.
    static func linearWeight(_ w: Tensor, k: Int) throws -> (vck_weight, PackedWeight?) {
        if let scope = packingScope, w.dtype.isWeightType, let p = try? scope.packed(w) {
            return (try p.cWeight(k: k, what: "linear"), p)
        }
        return (try weight(w, k: k, what: "linear"), nil)
    }

    /// y[..., N] = x[..., K] W^T + b, for W of shape [N, K] (or [N, K, 1...], a 1x1 conv) in any
    /// weight type.
    public static func linear(_ x: Tensor, _ w: Tensor, _ b: Tensor? = nil) throws -> Tensor {
        var keep: PackedWeight?
        defer { withExtendedLifetime(keep) {} }
        return try withExtendedLifetime(w) {
            try linearImpl(x, b) { k in
                let (cw, p) = try linearWeight(w, k: k)
                keep = p
                return cw
            }
        }
    }

    /// `linear` with a weight packed once for the GEMM kernels (same results as the tensor).
    public static func linear(_ x: Tensor, _ w: PackedWeight, _ b: Tensor? = nil) throws -> Tensor {
        try withExtendedLifetime(w) { try linearImpl(x, b) { k in try w.cWeight(k: k, what: "linear") } }
    }

    static func linearImpl(_ x: Tensor, _ b: Tensor?, _ makeWeight: (Int) throws -> vck_weight) throws -> Tensor {
        try requireF32(x, "linear input")
        guard x.rank >= 1 else { throw TensorError.shapeMismatch("linear of a scalar \(x.shape)") }
        let k = channels(x), m = rows(x)
        var wt = try makeWeight(k)
        let n = Int(wt.n)
        var shape = x.shape
        shape[shape.count - 1] = n // [..., K] -> [..., N]
        let y = Tensor(zeros: shape)
        let bp = try biasPointer(b, n: n, what: "linear")
        vck_linear(Int64(m), x.f32, Int64(k), &wt, bp, y.f32, Int64(n), 0)
        return y
    }

    /// Plain f32 matrix product of 2-D tensors: a [M, K] x b [K, N] (with optional transposes).
    public static func matmul(_ a: Tensor, _ b: Tensor, transposeA: Bool = false, transposeB: Bool = false) throws -> Tensor {
        try requireF32(a, "matmul lhs"); try requireF32(b, "matmul rhs")
        guard a.rank == 2, b.rank == 2 else { throw TensorError.shapeMismatch("matmul of \(a.shape) and \(b.shape)") }
        let m = transposeA ? a.shape[1] : a.shape[0], k = transposeA ? a.shape[0] : a.shape[1]
        let k2 = transposeB ? b.shape[1] : b.shape[0], n = transposeB ? b.shape[0] : b.shape[1]
        guard k == k2 else { throw TensorError.shapeMismatch("matmul inner dimensions \(k) and \(k2)") }
        let y = Tensor(zeros: [m, n])
        vck_sgemm(transposeA ? 1 : 0, transposeB ? 1 : 0, Int64(m), Int64(n), Int64(k), 1, a.f32, Int64(a.shape[1]),
                  b.f32, Int64(b.shape[1]), 0, y.f32, Int64(n))
        return y
    }

    // MARK: convolution

    /// 2-D convolution, channels-last. x: [N, H, W, Cin]; w: [Cout, Cin, kh, kw] (PyTorch order,
    /// any weight type); returns [N, OH, OW, Cout]. Zero padding.
    public static func conv2d(_ x: Tensor, _ w: Tensor, _ b: Tensor?, stride: Int = 1, padding: Int = 1) throws -> Tensor {
        try withExtendedLifetime(w) {
            try conv2dImpl(x, w.shape, b, stride, padding) { k in try weight(w, k: k, what: "conv2d") }
        }
    }

    /// `conv2d` with a weight packed once for the GEMM kernels (same results as the tensor).
    public static func conv2d(_ x: Tensor, _ w: PackedWeight, _ b: Tensor?, stride: Int = 1, padding: Int = 1) throws -> Tensor {
        try withExtendedLifetime(w) {
            try conv2dImpl(x, w.shape, b, stride, padding) { k in try w.cWeight(k: k, what: "conv2d") }
        }
    }

    static func conv2dImpl(_ x: Tensor, _ wshape: [Int], _ b: Tensor?, _ stride: Int, _ padding: Int,
                           _ makeWeight: (Int) throws -> vck_weight) throws -> Tensor {
        try requireF32(x, "conv2d input")
        guard x.rank == 4, wshape.count == 4, wshape[1] == x.shape[3] else {
            throw TensorError.shapeMismatch("conv2d input \(x.shape) (NHWC) with weight \(wshape)")
        }
        let (n, h, wd, cin) = (x.shape[0], x.shape[1], x.shape[2], x.shape[3])
        let (kh, kw) = (wshape[2], wshape[3])
        guard stride >= 1, padding >= 0, kh >= 1, kw >= 1, h + 2 * padding >= kh, wd + 2 * padding >= kw else {
            throw TensorError.shapeMismatch("conv2d \(kh)x\(kw) stride \(stride) on \(h)x\(wd)")
        }
        let oh = (h + 2 * padding - kh) / stride + 1, ow = (wd + 2 * padding - kw) / stride + 1
        var wt = try makeWeight(cin * kh * kw)
        let cout = Int(wt.n)
        let y = Tensor(zeros: [n, oh, ow, cout]) // [N, H, W, Cin] -> [N, OH, OW, Cout]
        let bp = try biasPointer(b, n: cout, what: "conv2d")
        vck_conv2d_nhwc(x.f32, Int64(n), Int64(h), Int64(wd), Int64(cin), &wt, bp, Int64(kh), Int64(kw),
                        Int64(stride), Int64(padding), y.f32)
        return y
    }

    /// Temporal convolution with kernel (kt, 1, 1) and zero padding kt/2 in time.
    /// x: [B*T, H, W, C] with the T frames of each sequence consecutive; w: [Cout, Cin, kt, 1, 1].
    public static func convTemporal(_ x: Tensor, frames t: Int, _ w: Tensor, _ b: Tensor?) throws -> Tensor {
        try withExtendedLifetime(w) {
            try convTemporalImpl(x, t, w.shape, b) { k in try weight(w, k: k, what: "temporal conv") }
        }
    }

    /// `convTemporal` with a weight packed once for the GEMM kernels (same results as the tensor).
    public static func convTemporal(_ x: Tensor, frames t: Int, _ w: PackedWeight, _ b: Tensor?) throws -> Tensor {
        try withExtendedLifetime(w) {
            try convTemporalImpl(x, t, w.shape, b) { k in try w.cWeight(k: k, what: "temporal conv") }
        }
    }

    static func convTemporalImpl(_ x: Tensor, _ t: Int, _ wshape: [Int], _ b: Tensor?,
                                 _ makeWeight: (Int) throws -> vck_weight) throws -> Tensor {
        try requireF32(x, "temporal conv input")
        guard x.rank == 4, t > 0, x.shape[0] % t == 0, wshape.count == 5, wshape[1] == x.shape[3], wshape[3] == 1,
              wshape[4] == 1 else {
            throw TensorError.shapeMismatch("temporal conv input \(x.shape) over \(t) frames with weight \(wshape)")
        }
        let nseq = x.shape[0] / t, hw = x.shape[1] * x.shape[2], cin = x.shape[3], kt = wshape[2]
        guard kt >= 1, kt % 2 == 1 else {
            throw TensorError.shapeMismatch("temporal conv kernel \(kt) frames: only odd kernels keep the frame count")
        }
        var wt = try makeWeight(cin * kt)
        let cout = Int(wt.n)
        let y = Tensor(zeros: [x.shape[0], x.shape[1], x.shape[2], cout]) // [B*T, H, W, Cin] -> [B*T, H, W, Cout]
        let bp = try biasPointer(b, n: cout, what: "temporal conv")
        vck_conv_temporal(x.f32, Int64(nseq), Int64(t), Int64(hw), Int64(cin), &wt, bp, Int64(kt), y.f32)
        return y
    }

    // MARK: normalisation

    public enum Activation: Int32, Sendable { case none = 0, silu = 1, gelu = 2 }

    /// GroupNorm over `samples` independent samples: x is viewed as [samples, rows, C]; each
    /// (sample, group) is normalised over rows x C/groups values. Per-frame GroupNorm uses
    /// samples = frames; the temporal blocks use samples = batch (statistics across frames).
    public static func groupNorm(_ x: Tensor, samples: Int, groups: Int, weight: Tensor?, bias: Tensor?, eps: Float,
                                 activation: Activation = .none) throws -> Tensor {
        try requireF32(x, "group norm input")
        let c = channels(x)
        guard samples > 0, groups > 0, c % groups == 0, rows(x) % samples == 0 else {
            throw TensorError.shapeMismatch("group norm of \(x.shape) as \(samples) samples, \(groups) groups")
        }
        let gp = try biasPointer(weight, n: c, what: "group norm weight")
        let bp = try biasPointer(bias, n: c, what: "group norm bias")
        let y = Tensor(zeros: x.shape)
        vck_group_norm(x.f32, y.f32, Int64(samples), Int64(rows(x) / samples), Int64(c), Int64(groups), gp, bp, eps, activation.rawValue)
        return y
    }

    /// LayerNorm over the last dimension.
    public static func layerNorm(_ x: Tensor, weight: Tensor?, bias: Tensor?, eps: Float) throws -> Tensor {
        try requireF32(x, "layer norm input")
        let c = channels(x)
        let gp = try biasPointer(weight, n: c, what: "layer norm weight")
        let bp = try biasPointer(bias, n: c, what: "layer norm bias")
        let y = Tensor(zeros: x.shape)
        vck_layer_norm(x.f32, y.f32, Int64(rows(x)), Int64(c), gp, bp, eps)
        return y
    }

    // MARK: pointwise

    public static func softmax(_ x: Tensor) throws -> Tensor {
        try requireF32(x, "softmax input")
        let y = x.copy()
        vck_softmax_rows(y.f32, Int64(rows(x)), Int64(channels(x)))
        return y
    }

    public static func silu(_ x: Tensor) throws -> Tensor {
        try requireF32(x, "silu input")
        let y = Tensor(zeros: x.shape)
        vck_silu(x.f32, y.f32, x.count)
        return y
    }

    /// Exact (erf) GELU.
    public static func gelu(_ x: Tensor) throws -> Tensor {
        try requireF32(x, "gelu input")
        let y = Tensor(zeros: x.shape)
        vck_gelu(x.f32, y.f32, x.count)
        return y
    }

    /// GEGLU: the first half of the channels is the value, the second half the gate:
    /// [..., 2F] -> [..., F] = a * gelu(g).
    public static func geglu(_ x: Tensor) throws -> Tensor {
        try requireF32(x, "geglu input")
        let c = channels(x)
        guard c % 2 == 0 else { throw TensorError.shapeMismatch("geglu of odd width \(c)") }
        var s = x.shape
        s[s.count - 1] = c / 2
        let y = Tensor(zeros: s)
        vck_geglu(x.f32, y.f32, Int64(rows(x)), Int64(c / 2))
        return y
    }

    public static func add(_ a: Tensor, _ b: Tensor) throws -> Tensor {
        try requireF32(a, "add lhs"); try requireF32(b, "add rhs")
        guard a.count == b.count else { throw TensorError.shapeMismatch("add \(a.shape) + \(b.shape)") }
        let y = Tensor(zeros: a.shape)
        vck_add(a.f32, b.f32, y.f32, a.count)
        return y
    }

    /// x[r, :] + v for every row r (v has C values).
    public static func addRowVector(_ x: Tensor, _ v: Tensor) throws -> Tensor {
        try requireF32(x, "add input")
        let c = channels(x)
        let vp = try biasPointer(v, n: c, what: "row vector")
        let y = Tensor(zeros: x.shape)
        vck_add_row_vector(x.f32, vp, y.f32, Int64(rows(x)), Int64(c))
        return y
    }

    /// x viewed as [samples, rows, C] plus one C-vector per sample: y[s, r, :] = x[s, r, :] + v[s, :]
    /// for v of shape [samples, C] (e.g. a per-batch-item time embedding added to all its frames).
    public static func addRowVectors(_ x: Tensor, _ v: Tensor, samples: Int) throws -> Tensor {
        try requireF32(x, "add input"); try requireF32(v, "row vectors")
        let c = channels(x)
        guard samples > 0, rows(x) % samples == 0, v.count == samples * c else {
            throw TensorError.shapeMismatch("add row vectors \(v.shape) to \(x.shape) as \(samples) samples")
        }
        let y = Tensor(zeros: x.shape)
        let per = rows(x) / samples
        for s in 0..<samples {
            vck_add_row_vector(x.f32 + s * per * c, v.f32 + s * c, y.f32 + s * per * c, Int64(per), Int64(c))
        }
        return y
    }

    public static func scale(_ x: Tensor, _ s: Float) throws -> Tensor {
        try requireF32(x, "scale input")
        let y = x.copy()
        vck_scale(y.f32, s, y.count)
        return y
    }

    // MARK: attention

    /// A strided view of attention operands: sequence s, row i, head h starts at element
    /// offset + s*seqStride + i*rowStride + h*headDim of the tensor's storage.
    public struct AttentionOperand {
        public var tensor: Tensor
        public var offset: Int
        public var seqStride: Int
        public var rowStride: Int
        public init(_ tensor: Tensor, offset: Int = 0, seqStride: Int, rowStride: Int) {
            self.tensor = tensor; self.offset = offset; self.seqStride = seqStride; self.rowStride = rowStride
        }
    }

    /// Multi-head attention over `sequences` independent sequences, `heads` heads of `headDim`
    /// values: softmax(q k^T * scale) v, computed in query chunks. Writes into `out` and returns it.
    public static func attention(sequences: Int, heads: Int, queries sq: Int, keys sk: Int, headDim d: Int,
                                 q: AttentionOperand, k: AttentionOperand, v: AttentionOperand, out: AttentionOperand,
                                 scale: Float, causal: Bool = false) throws {
        guard sequences > 0, heads > 0, d > 0, sq > 0, sk > 0 else {
            throw TensorError.shapeMismatch("attention of \(sequences) sequences, \(heads) heads x \(d), \(sq) queries, \(sk) keys")
        }
        for (name, op, rows) in [("q", q, sq), ("k", k, sk), ("v", v, sk), ("out", out, sq)] {
            try requireF32(op.tensor, "attention \(name)")
            // Non-negative strides: the last element of the last row bounds every access.
            let (a, o1) = (sequences - 1).multipliedReportingOverflow(by: op.seqStride)
            let (b, o2) = (rows - 1).multipliedReportingOverflow(by: op.rowStride)
            let (hd, o3) = heads.multipliedReportingOverflow(by: d)
            let (ab, o4) = a.addingReportingOverflow(b)
            let (abh, o5) = ab.addingReportingOverflow(hd)
            let (last, o6) = abh.addingReportingOverflow(op.offset)
            guard op.seqStride >= 0, op.rowStride >= 0, op.offset >= 0, !(o1 || o2 || o3 || o4 || o5 || o6),
                  last <= op.tensor.count else {
                throw TensorError.outOfBounds("attention \(name): \(sequences) sequences x \(rows) rows x \(heads) heads x \(d) exceed \(op.tensor.shape)")
            }
        }
        vck_attention(Int64(sequences), Int64(heads), Int64(sq), Int64(sk), Int64(d),
                      q.tensor.f32 + q.offset, Int64(q.seqStride), Int64(q.rowStride),
                      k.tensor.f32 + k.offset, Int64(k.seqStride), Int64(k.rowStride),
                      v.tensor.f32 + v.offset, Int64(v.seqStride), Int64(v.rowStride),
                      out.tensor.f32 + out.offset, Int64(out.seqStride), Int64(out.rowStride), scale, causal ? 1 : 0)
    }

    /// The common case: q [S, Lq, H*D], k/v [S, Lk, H*D] (contiguous per sequence) -> [S, Lq, H*D].
    public static func attention(q: Tensor, k: Tensor, v: Tensor, sequences: Int, heads: Int, causal: Bool = false) throws -> Tensor {
        let c = channels(q)
        guard heads > 0, c % heads == 0, sequences > 0, rows(q) % sequences == 0, rows(k) % sequences == 0,
              channels(k) == c, channels(v) == c, rows(v) == rows(k) else {
            throw TensorError.shapeMismatch("attention q \(q.shape) k \(k.shape) v \(v.shape), \(sequences) sequences, \(heads) heads")
        }
        let sq = rows(q) / sequences, sk = rows(k) / sequences, d = c / heads
        let out = Tensor(zeros: q.shape)
        try attention(sequences: sequences, heads: heads, queries: sq, keys: sk, headDim: d,
                      q: .init(q, seqStride: sq * c, rowStride: c), k: .init(k, seqStride: sk * c, rowStride: c),
                      v: .init(v, seqStride: sk * c, rowStride: c), out: .init(out, seqStride: sq * c, rowStride: c),
                      scale: 1 / Float(d).squareRoot(), causal: causal)
        return out
    }

    // MARK: layout

    /// Nearest-neighbour x2: [N, H, W, C] -> [N, 2H, 2W, C].
    public static func upsampleNearest2x(_ x: Tensor) throws -> Tensor {
        try requireF32(x, "upsample input")
        guard x.rank == 4 else { throw TensorError.shapeMismatch("upsample of \(x.shape) (NHWC expected)") }
        let y = Tensor(zeros: [x.shape[0], x.shape[1] * 2, x.shape[2] * 2, x.shape[3]])
        vck_upsample_nearest2x(x.f32, Int64(x.shape[0]), Int64(x.shape[1]), Int64(x.shape[2]), Int64(x.shape[3]), y.f32)
        return y
    }

    /// Concatenation along channels: [..., Ca] ++ [..., Cb] -> [..., Ca + Cb].
    public static func concatChannels(_ a: Tensor, _ b: Tensor) throws -> Tensor {
        try requireF32(a, "concat lhs"); try requireF32(b, "concat rhs")
        guard rows(a) == rows(b), Array(a.shape.dropLast()) == Array(b.shape.dropLast()) else {
            throw TensorError.shapeMismatch("concat \(a.shape) ++ \(b.shape)")
        }
        var s = a.shape
        s[s.count - 1] = channels(a) + channels(b)
        let y = Tensor(zeros: s)
        vck_concat_channels(a.f32, Int64(channels(a)), b.f32, Int64(channels(b)), Int64(rows(a)), y.f32)
        return y
    }

    /// [N, C, rest...] (PyTorch channels-first) -> [N, rest..., C].
    public static func channelsLast(_ x: Tensor) throws -> Tensor {
        try requireF32(x, "layout input")
        guard x.rank >= 3 else { throw TensorError.shapeMismatch("channelsLast of \(x.shape)") }
        let n = x.shape[0], c = x.shape[1], rest = Array(x.shape.dropFirst(2)), hw = rest.reduce(1, *)
        let y = Tensor(zeros: [n] + rest + [c])
        for i in 0..<n { vck_transpose(x.f32 + i * c * hw, Int64(c), Int64(hw), y.f32 + i * c * hw) }
        return y
    }

    /// [N, rest..., C] -> [N, C, rest...] (back to PyTorch channels-first).
    public static func channelsFirst(_ x: Tensor) throws -> Tensor {
        try requireF32(x, "layout input")
        guard x.rank >= 3 else { throw TensorError.shapeMismatch("channelsFirst of \(x.shape)") }
        let n = x.shape[0], c = x.shape[x.rank - 1], rest = Array(x.shape.dropFirst().dropLast()), hw = rest.reduce(1, *)
        let y = Tensor(zeros: [n, c] + rest)
        for i in 0..<n { vck_transpose(x.f32 + i * c * hw, Int64(hw), Int64(c), y.f32 + i * c * hw) }
        return y
    }

    /// Rows of a 2-D table: ids -> [ids.count, C] (an embedding lookup).
    public static func gatherRows(_ table: Tensor, _ ids: [Int]) throws -> Tensor {
        guard table.rank == 2 else { throw TensorError.shapeMismatch("gather from \(table.shape)") }
        let c = table.shape[1]
        let y = Tensor(zeros: [ids.count, c])
        for (i, id) in ids.enumerated() {
            guard id >= 0, id < table.shape[0] else { throw TensorError.outOfBounds("row \(id) of \(table.shape)") }
            let row = try table.rows(id, 1).converted(to: .f32)
            (y.f32 + i * c).update(from: row.f32, count: c)
        }
        return y
    }
}

// MARK: synthetic data

extension Ops {
    /// A new f32 tensor of uniform values in [low, high), deterministic in (seed, element index)
    /// and independent of the thread count (benchmark weights).
    public static func randomUniform(_ shape: [Int], seed: UInt64, low: Float, high: Float) -> Tensor {
        let y = Tensor(zeros: shape)
        vck_fill_uniform(y.f32, y.count, seed, low, high)
        return y
    }
}

// MARK: fused and in-place operations (memory-bounded model code)
//
// The `into`/`InPlace` variants write into a tensor the caller created and owns (never into an
// input that someone else may still read, such as a tensor handed to an observer).

extension Ops {
    /// A GroupNorm folded with its affine parameters, per statistics sample: normalised channel j
    /// of sample s = x * scale[s, j] + shift[s, j]. Both are [samples, C].
    public struct NormAffine: Sendable {
        public let scale: Tensor
        public let shift: Tensor
        public var samples: Int { scale.shape[0] }
        public var channels: Int { scale.shape[1] }

        /// Samples [start, start + count) (shares storage).
        public func samples(_ start: Int, _ count: Int) throws -> NormAffine {
            NormAffine(scale: try scale.rows(start, count), shift: try shift.rows(start, count))
        }
    }

    /// GroupNorm statistics of x viewed as [samples, rows, C] (see `groupNorm`), folded with
    /// weight and bias.
    public static func groupNormStatistics(_ x: Tensor, samples: Int, groups: Int, weight: Tensor?, bias: Tensor?,
                                           eps: Float) throws -> NormAffine {
        try requireF32(x, "group norm input")
        let c = channels(x)
        guard samples > 0, groups > 0, c % groups == 0, rows(x) % samples == 0 else {
            throw TensorError.shapeMismatch("group norm of \(x.shape) as \(samples) samples, \(groups) groups")
        }
        let gp = try biasPointer(weight, n: c, what: "group norm weight")
        let bp = try biasPointer(bias, n: c, what: "group norm bias")
        let scale = Tensor(zeros: [samples, c]), shift = Tensor(zeros: [samples, c])
        vck_group_norm_stats(x.f32, Int64(samples), Int64(rows(x) / samples), Int64(c), Int64(groups), gp, bp, eps,
                             scale.f32, shift.f32)
        return NormAffine(scale: scale, shift: shift)
    }

    /// act(x * scale + shift) with x viewed as [affine.samples, rows, C]; a new tensor.
    public static func groupNormApply(_ x: Tensor, _ a: NormAffine, activation: Activation = .none) throws -> Tensor {
        try requireF32(x, "group norm input")
        let c = channels(x)
        guard a.channels == c, rows(x) % a.samples == 0 else {
            throw TensorError.shapeMismatch("group norm affine [\(a.samples), \(a.channels)] for \(x.shape)")
        }
        let y = Tensor(uninitialized: x.shape)
        vck_group_norm_apply(x.f32, y.f32, Int64(a.samples), Int64(rows(x) / a.samples), Int64(c), a.scale.f32, a.shift.f32,
                             activation.rawValue)
        return y
    }

    static func prenorm(_ a: NormAffine?, channels c: Int, imagesPerSample: Int, activation: Activation) throws -> vck_prenorm? {
        guard let a else { return nil }
        guard a.channels == c else { throw TensorError.shapeMismatch("group norm affine of \(a.channels) channels for \(c)") }
        return vck_prenorm(scale: UnsafePointer(a.scale.f32), shift: UnsafePointer(a.shift.f32),
                           imgs_per_sample: Int64(imagesPerSample), act: activation.rawValue)
    }

    /// `conv2d` of act(GroupNorm(x)) (when `norm` is given, x viewed as [norm.samples, ...] images)
    /// of the nearest x2 upsampled x (when `upsample2x`), without materialising either.
    public static func conv2d(_ x: Tensor, _ w: Tensor, _ b: Tensor?, stride: Int = 1, padding: Int = 1, upsample2x: Bool,
                              norm: NormAffine?, activation: Activation = .none) throws -> Tensor {
        try requireF32(x, "conv2d input")
        guard x.rank == 4, w.rank == 4, w.shape[1] == x.shape[3] else {
            throw TensorError.shapeMismatch("conv2d input \(x.shape) (NHWC) with weight \(w.shape)")
        }
        let (n, h, wd, cin) = (x.shape[0], x.shape[1], x.shape[2], x.shape[3])
        let (vh, vw) = upsample2x ? (2 * h, 2 * wd) : (h, wd)
        let (kh, kw) = (w.shape[2], w.shape[3])
        guard stride >= 1, vh + 2 * padding >= kh, vw + 2 * padding >= kw else {
            throw TensorError.shapeMismatch("conv2d \(kh)x\(kw) stride \(stride) on \(vh)x\(vw)")
        }
        if let norm, norm.samples <= 0 || n % norm.samples != 0 {
            throw TensorError.shapeMismatch("group norm of \(norm.samples) samples over \(n) images")
        }
        let oh = (vh + 2 * padding - kh) / stride + 1, ow = (vw + 2 * padding - kw) / stride + 1
        var wt = try weight(w, k: cin * kh * kw, what: "conv2d")
        let cout = Int(wt.n)
        let y = Tensor(uninitialized: [n, oh, ow, cout])
        let bp = try biasPointer(b, n: cout, what: "conv2d")
        var pn = try prenorm(norm, channels: cin, imagesPerSample: norm.map { n / $0.samples } ?? 1, activation: activation)
        withOptionalPointer(&pn) { pp in
            vck_conv2d_nhwc_ex(x.f32, Int64(n), Int64(h), Int64(wd), Int64(cin), &wt, bp, Int64(kh), Int64(kw),
                               Int64(stride), Int64(padding), upsample2x ? 1 : 0, pp, y.f32)
        }
        return y
    }

    /// `convTemporal` of act(GroupNorm(x)) with one statistics sample per sequence.
    public static func convTemporal(_ x: Tensor, frames t: Int, _ w: Tensor, _ b: Tensor?, norm: NormAffine?,
                                    activation: Activation = .none) throws -> Tensor {
        try requireF32(x, "temporal conv input")
        guard x.rank == 4, t > 0, x.shape[0] % t == 0, w.rank == 5, w.shape[1] == x.shape[3], w.shape[3] == 1, w.shape[4] == 1 else {
            throw TensorError.shapeMismatch("temporal conv input \(x.shape) over \(t) frames with weight \(w.shape)")
        }
        let nseq = x.shape[0] / t, hw = x.shape[1] * x.shape[2], cin = x.shape[3], kt = w.shape[2]
        if let norm, norm.samples <= 0 || nseq % norm.samples != 0 {
            throw TensorError.shapeMismatch("group norm of \(norm.samples) samples over \(nseq) sequences")
        }
        var wt = try weight(w, k: cin * kt, what: "temporal conv")
        let cout = Int(wt.n)
        let y = Tensor(uninitialized: [x.shape[0], x.shape[1], x.shape[2], cout])
        let bp = try biasPointer(b, n: cout, what: "temporal conv")
        var pn = try prenorm(norm, channels: cin, imagesPerSample: norm.map { nseq / $0.samples } ?? 1, activation: activation)
        withOptionalPointer(&pn) { pp in
            vck_conv_temporal_ex(x.f32, Int64(nseq), Int64(t), Int64(hw), Int64(cin), &wt, bp, Int64(kt), pp, y.f32)
        }
        return y
    }

    static func withOptionalPointer<T, R>(_ v: inout T?, _ body: (UnsafePointer<T>?) -> R) -> R {
        if v != nil {
            return withUnsafePointer(to: &v!) { body($0) }
        }
        return body(nil)
    }

    /// y += x W^T + b (y: [..., N] with the rows of x). Writes into y.
    public static func linear(_ x: Tensor, _ w: Tensor, _ b: Tensor? = nil, accumulateInto y: Tensor) throws {
        try requireF32(x, "linear input"); try requireF32(y, "linear output")
        let k = channels(x), m = rows(x)
        let (cw, keep) = try linearWeight(w, k: k)
        defer { withExtendedLifetime(keep) {} }
        var wt = cw
        let n = Int(wt.n)
        guard channels(y) == n, rows(y) == m else {
            throw TensorError.shapeMismatch("linear of \(x.shape) by \(w.shape) into \(y.shape)")
        }
        let bp = try biasPointer(b, n: n, what: "linear")
        vck_linear(Int64(m), x.f32, Int64(k), &wt, bp, y.f32, Int64(n), 1)
    }

    /// y = x W^T + b written into y (a row view of a larger tensor, for example).
    public static func linear(_ x: Tensor, _ w: Tensor, _ b: Tensor? = nil, into y: Tensor) throws {
        try requireF32(x, "linear input"); try requireF32(y, "linear output")
        let k = channels(x), m = rows(x)
        let (cw, keep) = try linearWeight(w, k: k)
        defer { withExtendedLifetime(keep) {} }
        var wt = cw
        let n = Int(wt.n)
        guard channels(y) == n, rows(y) == m else {
            throw TensorError.shapeMismatch("linear of \(x.shape) by \(w.shape) into \(y.shape)")
        }
        let bp = try biasPointer(b, n: n, what: "linear")
        vck_linear(Int64(m), x.f32, Int64(k), &wt, bp, y.f32, Int64(n), 0)
    }

    /// y += x (same element count). Writes into y.
    public static func addInPlace(_ y: Tensor, _ x: Tensor) throws {
        try requireF32(y, "add target"); try requireF32(x, "add operand")
        guard y.count == x.count else { throw TensorError.shapeMismatch("add \(x.shape) into \(y.shape)") }
        vck_add(y.f32, x.f32, y.f32, y.count)
    }

    /// y[s, r, :] += v[s, :] with y viewed as [samples, rows, C]. Writes into y.
    public static func addRowVectorsInPlace(_ y: Tensor, _ v: Tensor, samples: Int) throws {
        try requireF32(y, "add target"); try requireF32(v, "row vectors")
        let c = channels(y)
        guard samples > 0, rows(y) % samples == 0, v.count == samples * c else {
            throw TensorError.shapeMismatch("add row vectors \(v.shape) to \(y.shape) as \(samples) samples")
        }
        let per = rows(y) / samples
        for s in 0..<samples {
            vck_add_row_vector(y.f32 + s * per * c, v.f32 + s * c, y.f32 + s * per * c, Int64(per), Int64(c))
        }
    }

    /// Copies `blocks` runs of `count` rows of x, run i starting at row `first + i * stride`, into
    /// a new [blocks * count, C] tensor (e.g. a pixel range of every frame of one video).
    public static func gatherRowBlocks(_ x: Tensor, first: Int, blocks: Int, stride: Int, count: Int) throws -> Tensor {
        try requireF32(x, "gather input")
        let c = channels(x)
        guard first >= 0, blocks > 0, count > 0, stride >= count, first + (blocks - 1) * stride + count <= rows(x) else {
            throw TensorError.outOfBounds("row blocks \(blocks) x \(count) from \(first) step \(stride) of \(x.shape)")
        }
        let y = Tensor(uninitialized: [blocks * count, c])
        for i in 0..<blocks {
            (y.f32 + i * count * c).update(from: x.f32 + (first + i * stride) * c, count: count * c)
        }
        return y
    }

    /// The inverse of `gatherRowBlocks`: writes the rows of src back into x. Writes into x.
    public static func scatterRowBlocks(_ src: Tensor, into x: Tensor, first: Int, blocks: Int, stride: Int, count: Int) throws {
        try requireF32(x, "scatter target"); try requireF32(src, "scatter source")
        let c = channels(x)
        guard channels(src) == c, rows(src) == blocks * count, first >= 0, blocks > 0, count > 0, stride >= count,
              first + (blocks - 1) * stride + count <= rows(x) else {
            throw TensorError.outOfBounds("row blocks \(blocks) x \(count) into \(first) step \(stride) of \(x.shape)")
        }
        for i in 0..<blocks {
            (x.f32 + (first + i * stride) * c).update(from: src.f32 + i * count * c, count: count * c)
        }
    }

    /// Copies x into y (same element count). Writes into y.
    public static func copy(_ x: Tensor, into y: Tensor) throws {
        try requireF32(x, "copy source"); try requireF32(y, "copy target")
        guard x.count == y.count else { throw TensorError.shapeMismatch("copy \(x.shape) into \(y.shape)") }
        y.f32.update(from: x.f32, count: x.count)
    }
}
