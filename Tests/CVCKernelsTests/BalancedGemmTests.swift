import CVCKernels
import Testing

/// The balanced q8_0 GEMM (VCK_GEMM_BALANCED, the default): activations quantized per 32-block to
/// 15 bits (+-16383), exact int32 block dots (two vpdpbusd byte passes / vpmaddwd / scalar), the same fp32 epilogue as the
/// fast path. Every path is bit-exact with the scalar twin, the twin follows the definition
/// written out here, and the error against an fp32 product is far below the int8 fast path's.
@Suite("balanced q8_0 GEMM")
struct BalancedGemmTests {
    static let balanced = Int32(VCK_GEMM_BALANCED)
    static let q8 = Int32(VCK_W_Q8_0)
    static let shapes: [(m: Int, n: Int, k: Int)] = [
        (1, 1, 1), (5, 15, 36), (7, 17, 33), (6, 33, 65), (11, 20, 70), (13, 31, 64), (9, 64, 7),
        (17, 40, 100), (64, 48, 320), (3, 1, 1023), (8, 35, 1023), (100, 130, 96),
    ]

    static func withThreads<T>(_ n: Int32, _ body: () throws -> T) rethrows -> T {
        let saved = vck_get_threads()
        vck_set_threads(n)
        defer { vck_set_threads(saved) }
        return try body()
    }

    @Test(arguments: [Int32(1), Int32(2)])
    func everyPathMatchesTheScalarTwin(threads: Int32) {
        Self.withThreads(threads) {
            LowPrecisionGemmTests.withPrecision(Self.balanced) {
                for (m, n, k) in Self.shapes {
                    let w = TestWeight(dtype: Self.q8, n: n, k: k, seed: UInt64(n * 13 + k))
                    var rng = Rng(UInt64(m * 5 + k))
                    let lda = k + 3, ldc = n + 2
                    let a = rng.floats(m * lda, scale: 2), bias = rng.floats(n), c0 = rng.floats(m * ldc)
                    for (useBias, beta) in [(false, Float(0)), (true, 1)] {
                        let b = useBias ? bias : nil
                        let ref = LowPrecisionGemmTests.run(w, m: m, a: a, lda: lda, bias: b, c0: c0, ldc: ldc, beta: beta, ref: true)
                        for path in Path.allCases {
                            for packed in [false, true] {
                                let out = withFeatures(path.mask) {
                                    LowPrecisionGemmTests.run(w, m: m, a: a, lda: lda, bias: b, c0: c0, ldc: ldc, beta: beta, packed: packed)
                                }
                                #expect(bits(out) == bits(ref), "\(path) packed \(packed) m \(m) n \(n) k \(k) beta \(beta)")
                            }
                        }
                    }
                }
            }
        }
    }

    /// Extreme integers: weight quants of -128 (legal in a q8_0 file) and activations at +-16383
    /// must not overflow or saturate any path.
    @Test func extremeValuesStayExact() {
        let (m, n, k) = (3, 18, 96)
        var w = TestWeight(dtype: Self.q8, n: n, k: k, seed: 5)
        let per = k / 32
        w.bytes.withUnsafeMutableBytes { raw in
            let blocks = raw.bindMemory(to: vck_block_q8_0.self)
            for i in 0..<(n * per) {
                blocks[i].d = Float16(0.5).bitPattern
                withUnsafeMutableBytes(of: &blocks[i].qs) { q in for j in 0..<32 { q[j] = 0x80 } } // -128
            }
        }
        // Rows of +-1 with one +-2: quants of +-8192 / +-16383 (high parts -64 / 127, low parts 0 / 127).
        let a: [Float] = (0..<(m * k)).map { i in i % 32 == 5 ? -2 : (i % 3 == 0 ? 1 : -1) }
        let zeros = [Float](repeating: 0, count: m * n)
        let ref = LowPrecisionGemmTests.withPrecision(Self.balanced) {
            LowPrecisionGemmTests.run(w, m: m, a: a, lda: k, bias: nil, c0: zeros, ldc: n, beta: 0, ref: true)
        }
        for path in Path.allCases {
            let out = LowPrecisionGemmTests.withPrecision(Self.balanced) {
                withFeatures(path.mask) { LowPrecisionGemmTests.run(w, m: m, a: a, lda: k, bias: nil, c0: zeros, ldc: n, beta: 0) }
            }
            #expect(bits(out) == bits(ref), "\(path)")
        }
        // Exact arithmetic check of row 0: w = -64 everywhere, so out = -64 * sum(a) up to the
        // activation rounding of 1 -> 8192 / 16383 * 2 per block.
        let exact = -64 * a[0..<k].reduce(0, +)
        #expect(abs(ref[0] - exact) < 1e-3 * abs(exact) + 1e-2)
    }

    /// The scalar twin against the definition written out in Swift.
    @Test func scalarTwinFollowsTheDefinition() {
        let (m, n, k) = (3, 5, 70)
        let w = TestWeight(dtype: Self.q8, n: n, k: k, seed: 11)
        var rng = Rng(12)
        var a = rng.floats(m * k, scale: 3)
        for i in 32..<64 { a[k + i] = 0 } // an all-zero activation block in row 1
        let bias = rng.floats(n)
        let got = LowPrecisionGemmTests.withPrecision(Self.balanced) {
            LowPrecisionGemmTests.run(w, m: m, a: a, lda: k, bias: bias, c0: [Float](repeating: 0, count: m * n), ldc: n, beta: 0, ref: true)
        }
        let perRow = (k + 31) / 32
        let blocks = w.bytes.withUnsafeBytes { Array($0.bindMemory(to: vck_block_q8_0.self)) }
        var expected = [Float](repeating: 0, count: m * n)
        for i in 0..<m {
            let row = Array(a[i * k..<(i + 1) * k])
            for j in 0..<n {
                var acc: Float = 0
                for b in 0..<perRow {
                    let xs = Array(row[(b * 32)..<min(k, b * 32 + 32)])
                    let amax = xs.map(\.magnitude).max() ?? 0
                    let id: Float = amax > 0 ? 16383 / amax : 0, s = amax / 16383
                    let qa = xs.map { Int32(min(16383, max(-16383, ($0 * id).rounded(.toNearestOrEven)))) }
                    let qw = Q8Tests.qs(blocks[j * perRow + b]).map(Int32.init)
                    let isum = zip(qa, qw).reduce(Int32(0)) { $0 + $1.0 * $1.1 }
                    let d = Float(Float16(bitPattern: blocks[j * perRow + b].d))
                    acc = acc.addingProduct(Float(isum), d * s)
                }
                expected[i * n + j] = acc + bias[j]
            }
        }
        #expect(bits(got) == bits(expected))
    }

    @Test func activationQuantizerDefinition() {
        var x: [Float] = (0..<70).map { Float($0) - 20 }
        x[40] = .nan
        var q = [Int16](repeating: 99, count: 96), s = [Float](repeating: 0, count: 3)
        q.withUnsafeMutableBufferPointer { qp in s.withUnsafeMutableBufferPointer { sp in
            vck_quantize_act_q16_ref(x, 70, qp.baseAddress, sp.baseAddress)
        } }
        #expect(s[0] == 20 / 16383 && q[0] == -16383 && q[20] == 0)
        #expect(q[31] == Int16((11 * (Float(16383) / 20)).rounded(.toNearestOrEven)))
        #expect(s[1].isNaN && q[40] == 0)                     // a NaN poisons its block's scale
        let padded = q[70..<96].allSatisfy { $0 == 0 }
        #expect(s[2] == 49 / 16383 && q[69] == 16383 && padded) // the last block is zero padded
        // NaN activations give NaN outputs on every path.
        let w = TestWeight(dtype: Self.q8, n: 3, k: 70, seed: 2)
        for path in Path.allCases {
            let out = LowPrecisionGemmTests.withPrecision(Self.balanced) {
                withFeatures(path.mask) { LowPrecisionGemmTests.run(w, m: 1, a: x, lda: 70, bias: nil, c0: [0, 0, 0], ldc: 3, beta: 0) }
            }
            let allNaN = out.allSatisfy { $0.isNaN }
            #expect(allNaN, "\(path)")
        }
    }

    /// Accuracy against the fp32 product with the dequantized weights (random data): balanced is
    /// within a few 1e-5 relative RMS, more than 100x below the int8 fast path.
    @Test func accuracyAgainstFp32() {
        let (m, n, k) = (37, 29, 320)
        let w = TestWeight(dtype: Self.q8, n: n, k: k, seed: 31)
        var rng = Rng(32)
        let a = rng.floats(m * k, scale: 2)
        let expected = naiveLinear(m: m, a: a, lda: k, w: w, bias: nil, c0: nil, ldc: n)
        let zeros = [Float](repeating: 0, count: m * n)
        func relRMS(_ p: Int32) -> Double {
            let out = LowPrecisionGemmTests.withPrecision(p) { LowPrecisionGemmTests.run(w, m: m, a: a, lda: k, bias: nil, c0: zeros, ldc: n, beta: 0) }
            var e = 0.0, r = 0.0
            for (x, y) in zip(out, expected) { e += (Double(x) - y) * (Double(x) - y); r += y * y }
            return (e / r).squareRoot()
        }
        let balanced = relRMS(Self.balanced), fast = relRMS(Int32(VCK_GEMM_FAST)), exact = relRMS(Int32(VCK_GEMM_EXACT))
        print("q8_0 GEMM rel RMS error vs fp32 (m \(m) n \(n) k \(k)): balanced \(balanced), fast \(fast), exact \(exact)")
        #expect(balanced < 1e-4)
        #expect(balanced * 100 < fast)
        #expect(exact < balanced) // balanced really quantizes the activations
    }

    @Test func precisionSetting() {
        let modes = [Int32(VCK_GEMM_FAST), Int32(VCK_GEMM_EXACT), Self.balanced]
        for p in modes { #expect(LowPrecisionGemmTests.withPrecision(p) { vck_get_gemm_precision() } == p) }
        #expect(LowPrecisionGemmTests.withPrecision(7) { vck_get_gemm_precision() } == Self.balanced)
    }
}
