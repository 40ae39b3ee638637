import CVCKernels
import Testing

/// The f16 / bf16 / q8_0 GEMM behind vck_linear: every instruction-set path is bit-exact with the
/// scalar twin vck_linear_ref, the twin follows the documented arithmetic (re-implemented here),
/// and packed weights give the same bits as per-call packing.
@Suite("low-precision GEMM")
struct LowPrecisionGemmTests {
    static let lowDtypes: [Int32] = [Int32(VCK_W_F16), Int32(VCK_W_BF16), Int32(VCK_W_Q8_0)]
    static let shapes: [(m: Int, n: Int, k: Int)] = [
        (1, 1, 1), (1, 16, 32), (5, 15, 36), (7, 17, 33), (13, 31, 64), (6, 33, 65), (9, 64, 7),
        (17, 40, 100), (64, 48, 320), (3, 1, 1023), (100, 130, 96),
    ]

    static func run(_ w: TestWeight, m: Int, a: [Float], lda: Int, bias: [Float]?, c0: [Float], ldc: Int, beta: Float,
                    ref: Bool = false, packed: Bool = false) -> [Float] {
        var c = c0
        w.with { wp in
            var wv = wp.pointee
            var pk: OpaquePointer? = nil
            if packed {
                pk = vck_pack_weight(wp)
                wv = vck_weight(data: UnsafeRawPointer(pk), dtype: Int32(VCK_W_PACKED), n: wv.n, k: wv.k)
            }
            defer { vck_packed_weight_free(pk) }
            c.withUnsafeMutableBufferPointer { cp in
                if ref {
                    vck_linear_ref(Int64(m), a, Int64(lda), &wv, bias, cp.baseAddress, Int64(ldc), beta)
                } else {
                    vck_linear(Int64(m), a, Int64(lda), &wv, bias, cp.baseAddress, Int64(ldc), beta)
                }
            }
        }
        return c
    }

    static func withPrecision<T>(_ p: Int32, _ body: () throws -> T) rethrows -> T {
        vck_set_thread_gemm_precision(p)
        defer { vck_set_thread_gemm_precision(-1) }
        return try body()
    }

    @Test(arguments: TestWeight.dtypes, [Int32(VCK_GEMM_FAST), Int32(VCK_GEMM_EXACT), Int32(VCK_GEMM_BALANCED)])
    func everyPathMatchesTheScalarTwin(dtype: Int32, precision: Int32) {
        Self.withPrecision(precision) { Self.checkPaths(dtype: dtype) }
    }

    static func checkPaths(dtype: Int32) {
        for (m, n, k) in Self.shapes {
            let w = TestWeight(dtype: dtype, n: n, k: k, seed: UInt64(n * 31 + k))
            var rng = Rng(UInt64(m * 7 + k))
            let lda = k + 2, ldc = n + 1
            let a = rng.floats(m * lda, scale: 2), bias = rng.floats(n), c0 = rng.floats(m * ldc)
            for (useBias, beta) in [(false, Float(0)), (true, 1)] {
                let ref = Self.run(w, m: m, a: a, lda: lda, bias: useBias ? bias : nil, c0: c0, ldc: ldc, beta: beta, ref: true)
                // f32 without FMA goes to OpenBLAS, which only matches within rounding (GemmTests).
                for path in Path.allCases where !(dtype == Int32(VCK_W_F32) && path == .scalar) {
                    let out = withFeatures(path.mask) {
                        Self.run(w, m: m, a: a, lda: lda, bias: useBias ? bias : nil, c0: c0, ldc: ldc, beta: beta)
                    }
                    #expect(bits(out) == bits(ref), "\(TestWeight.name(dtype)) \(path) m \(m) n \(n) k \(k) beta \(beta)")
                }
                let packed = Self.run(w, m: m, a: a, lda: lda, bias: useBias ? bias : nil, c0: c0, ldc: ldc, beta: beta, packed: true)
                #expect(bits(packed) == bits(ref), "\(TestWeight.name(dtype)) packed m \(m) n \(n) k \(k)")
            }
        }
    }

    /// Exact mode: fp32 activations, so the result is fp32-accurate against the dequantized weights.
    @Test(arguments: [Int32(VCK_W_BF16), Int32(VCK_W_Q8_0)])
    func exactModeIsFp32Accurate(dtype: Int32) {
        let (m, n, k) = (37, 29, 300)
        let w = TestWeight(dtype: dtype, n: n, k: k, seed: 21)
        var rng = Rng(22)
        let a = rng.floats(m * k, scale: 2), bias = rng.floats(n)
        let expected = naiveLinear(m: m, a: a, lda: k, w: w, bias: bias, c0: nil, ldc: n)
        let zeros = [Float](repeating: 0, count: m * n)
        let exact = Self.withPrecision(Int32(VCK_GEMM_EXACT)) { Self.run(w, m: m, a: a, lda: k, bias: bias, c0: zeros, ldc: n, beta: 0) }
        let fast = Self.withPrecision(Int32(VCK_GEMM_FAST)) { Self.run(w, m: m, a: a, lda: k, bias: bias, c0: zeros, ldc: n, beta: 0) }
        #expect(relMaxDiff(exact, expected) < 1e-5)
        #expect(relMaxDiff(fast, expected) > 1e-4) // the fast path really rounds the activations
        #expect(Self.withPrecision(Int32(VCK_GEMM_EXACT)) { vck_get_gemm_precision() } == Int32(VCK_GEMM_EXACT))
    }

    /// The arithmetic of each dtype's fast path written out in Swift for a few outputs.
    @Test(arguments: lowDtypes)
    func scalarTwinFollowsTheDefinition(dtype: Int32) {
        let (m, n, k) = (3, 5, 70)
        let w = TestWeight(dtype: dtype, n: n, k: k, seed: 11)
        var rng = Rng(12)
        var a = rng.floats(m * k, scale: 3)
        for i in 32..<64 { a[k + i] = 0 } // an all-zero activation block in row 1
        let bias = rng.floats(n)
        let got = Self.withPrecision(Int32(VCK_GEMM_FAST)) {
            Self.run(w, m: m, a: a, lda: k, bias: bias, c0: [Float](repeating: 0, count: m * n), ldc: n, beta: 0, ref: true)
        }
        var expected = [Float](repeating: 0, count: m * n)
        for i in 0..<m {
            let row = Array(a[i * k..<(i + 1) * k])
            for j in 0..<n {
                let wr = Array(w.values[j * k..<(j + 1) * k])
                var acc: Float = 0
                switch Int(dtype) {
                case Int(VCK_W_F16):
                    for p in 0..<k { acc = acc.addingProduct(row[p], wr[p]) }
                case Int(VCK_W_BF16):
                    let ab = ConversionTests.f32ToBF16(row, ref: true).map { Float(bitPattern: UInt32($0) << 16) }
                    for p in stride(from: 0, to: k, by: 2) {
                        if p + 1 < k { acc = acc.addingProduct(ab[p + 1], wr[p + 1]) }
                        acc = acc.addingProduct(ab[p], wr[p])
                    }
                default:
                    let perRow = (k + 31) / 32
                    let blocks = w.bytes.withUnsafeBytes { Array($0.bindMemory(to: vck_block_q8_0.self)) }
                    for b in 0..<perRow {
                        let xs = Array(row[(b * 32)..<min(k, b * 32 + 32)])
                        let amax = xs.map(\.magnitude).max() ?? 0
                        let id: Float = amax > 0 ? 127 / amax : 0, s = amax / 127
                        let qa = xs.map { Int32(($0 * id).rounded(.toNearestOrEven)) }
                        let qw = Q8Tests.qs(blocks[j * perRow + b]).map(Int32.init)
                        let isum = zip(qa, qw).reduce(Int32(0)) { $0 + $1.0 * $1.1 }
                        let d = Float(Float16(bitPattern: blocks[j * perRow + b].d))
                        acc = acc.addingProduct(Float(isum), d * s)
                    }
                }
                expected[i * n + j] = acc + bias[j]
            }
        }
        #expect(bits(got) == bits(expected))
    }

    @Test(arguments: TestWeight.dtypes)
    func packedWeightDecodesToTheSameValues(dtype: Int32) {
        let w = TestWeight(dtype: dtype, n: 37, k: 45, seed: 4)
        w.with { wp in
            guard let pk = vck_pack_weight(wp) else { Issue.record("pack failed"); return }
            defer { vck_packed_weight_free(pk) }
            #expect(vck_packed_weight_dtype(pk) == dtype)
            #expect(vck_packed_weight_bytes(pk) >= 37 * 45)
            var rows = [Float](repeating: .nan, count: 37 * 45)
            rows.withUnsafeMutableBufferPointer { vck_packed_weight_rows_f32(pk, 0, 37, $0.baseAddress) }
            #expect(bits(rows) == bits(w.values))
            var viaWeight = [Float](repeating: .nan, count: 2 * 45)
            var pw = vck_weight(data: UnsafeRawPointer(pk), dtype: Int32(VCK_W_PACKED), n: 37, k: 45)
            viaWeight.withUnsafeMutableBufferPointer { vck_weight_rows_f32(&pw, 35, 2, $0.baseAddress) }
            #expect(bits(viaWeight) == bits(Array(w.values[35 * 45..<37 * 45])))
        }
        #expect(vck_pack_weight(nil) == nil)
    }

    @Test func convolutionsTakePackedWeights() {
        let (cin, cout) = (5, 7)
        for dtype in TestWeight.dtypes {
            let w = TestWeight(dtype: dtype, n: cout, k: cin * 9, seed: 8)
            var rng = Rng(3)
            let x = rng.floats(2 * 6 * 5 * cin), bias = rng.floats(cout)
            func conv(_ packed: Bool) -> [Float] {
                var y = [Float](repeating: .nan, count: 2 * 3 * 3 * cout)
                w.with { wp in
                    var wv = wp.pointee
                    let pk = packed ? vck_pack_weight(wp) : nil
                    defer { vck_packed_weight_free(pk) }
                    if let pk { wv = vck_weight(data: UnsafeRawPointer(pk), dtype: Int32(VCK_W_PACKED), n: wv.n, k: wv.k) }
                    y.withUnsafeMutableBufferPointer { vck_conv2d_nhwc(x, 2, 6, 5, Int64(cin), &wv, bias, 3, 3, 2, 1, $0.baseAddress) }
                }
                return y
            }
            #expect(bits(conv(true)) == bits(conv(false)), "\(TestWeight.name(dtype))")
        }
    }

    @Test func activationQuantizerDefinition() {
        var x: [Float] = (0..<70).map { Float($0) - 20 }
        x[40] = .nan
        var q = [Int8](repeating: 99, count: 96), s = [Float](repeating: 0, count: 3), corr = [Int32](repeating: 0, count: 3)
        q.withUnsafeMutableBufferPointer { qp in s.withUnsafeMutableBufferPointer { sp in corr.withUnsafeMutableBufferPointer { cp in
            vck_quantize_act_q8_ref(x, 70, qp.baseAddress, sp.baseAddress, cp.baseAddress)
        } } }
        #expect(s[0] == 20 / 127 && q[0] == -127 && q[20] == 0 && q[31] == Int8((11 * Float(127) / 20).rounded(.toNearestOrEven)))
        let qsum = q[0..<32].map(Int32.init).reduce(0, +)
        #expect(corr[0] == -128 * qsum)
        #expect(s[1].isNaN && q[40] == 0)                  // a NaN poisons its block's scale
        let padded = q[70..<96].allSatisfy { $0 == 0 }
        #expect(s[2] == 49 / 127 && q[69] == 127 && padded) // the last block is zero padded
        // NaN activations give NaN outputs (as an f32 GEMM would), not silently wrong numbers.
        let w = TestWeight(dtype: Int32(VCK_W_Q8_0), n: 3, k: 70, seed: 2)
        let out = Self.run(w, m: 1, a: x, lda: 70, bias: nil, c0: [0, 0, 0], ldc: 3, beta: 0)
        let allNaN = out.allSatisfy { $0.isNaN }
        #expect(allNaN)
    }
}
