import CVCKernels
import Testing

/// Weights of every dtype for the GEMM tests: the stored bytes and the exact f32 values they mean
/// (decoded here with Swift's Float16, the bf16 bit layout and the q8_0 definition).
struct TestWeight {
    var dtype: Int32
    var n: Int, k: Int
    var bytes: [UInt8]
    var values: [Float] // n x k, what the bytes decode to

    static let dtypes: [Int32] = [Int32(VCK_W_F32), Int32(VCK_W_F16), Int32(VCK_W_BF16), Int32(VCK_W_Q8_0)]
    static func name(_ d: Int32) -> String { ["f32", "f16", "bf16", "q8_0"][Int(d)] }

    init(dtype: Int32, n: Int, k: Int, seed: UInt64, scale: Float = 1) {
        self.dtype = dtype; self.n = n; self.k = k
        var rng = Rng(seed)
        let w = rng.floats(n * k, scale: scale)
        switch Int(dtype) {
        case Int(VCK_W_F32):
            values = w
            bytes = w.withUnsafeBytes { Array($0) }
        case Int(VCK_W_F16):
            let h = w.map { Float16($0) }
            values = h.map { Float($0) }
            bytes = h.map(\.bitPattern).withUnsafeBytes { Array($0) }
        case Int(VCK_W_BF16):
            let b = w.map { UInt16($0.bitPattern >> 16) } // truncation is fine: these are the stored values
            values = b.map { Float(bitPattern: UInt32($0) << 16) }
            bytes = b.withUnsafeBytes { Array($0) }
        default:
            var blocks: [vck_block_q8_0] = []
            for r in 0..<n { blocks += Q8Tests.quantize(Array(w[r * k..<(r + 1) * k]), ref: true) }
            bytes = blocks.withUnsafeBytes { Array($0) }
            values = []
            let per = (k + 31) / 32
            for r in 0..<n {
                for i in 0..<k {
                    let b = blocks[r * per + i / 32]
                    values.append(Float(Float16(bitPattern: b.d)) * Float(Q8Tests.qs(b)[i % 32]))
                }
            }
        }
    }

    func with<R>(_ body: (UnsafePointer<vck_weight>) throws -> R) rethrows -> R {
        try bytes.withUnsafeBytes { raw in
            var w = vck_weight(data: raw.baseAddress, dtype: dtype, n: Int64(n), k: Int64(k))
            return try body(&w)
        }
    }
}

/// C = A W^T (+ bias) (+ C) in double, the independent reference.
func naiveLinear(m: Int, a: [Float], lda: Int, w: TestWeight, bias: [Float]?, c0: [Float]?, ldc: Int) -> [Double] {
    var out = [Double](repeating: 0, count: m * ldc)
    for i in 0..<m {
        for j in 0..<ldc {
            guard j < w.n else { continue } // padding columns are checked separately
            var s = 0.0
            for p in 0..<w.k { s += Double(a[i * lda + p]) * Double(w.values[j * w.k + p]) }
            out[i * ldc + j] = s + Double(bias?[j] ?? 0) + Double(c0?[i * ldc + j] ?? 0)
        }
    }
    return out
}

@Suite("GEMM: sgemm and linear")
struct GemmTests {
    static let shapes: [(Int, Int, Int)] = [(1, 1, 1), (1, 7, 33), (7, 15, 17), (16, 16, 16), (17, 31, 36),
                                            (33, 17, 65), (3, 40, 1023), (150, 130, 220)]

    /// alpha = 1 runs the own fp32 kernels, alpha = 0.5 OpenBLAS.
    @Test(arguments: 0..<4, [Float(1), 0.5])
    func sgemmAllTransposes(t: Int, alpha: Float) {
        let ta = Int32(t & 1), tb = Int32(t >> 1)
        for (m, n, k) in Self.shapes {
            var rng = Rng(UInt64(m * 1000 + n * 10 + k))
            let lda = (ta != 0 ? m : k) + 3, ldb = (tb != 0 ? k : n) + 1, ldc = n + 2
            let rowsA = ta != 0 ? k : m, rowsB = tb != 0 ? n : k
            let a = rng.floats(rowsA * lda), b = rng.floats(rowsB * ldb), c0 = rng.floats(m * ldc)
            var expected = [Double](repeating: 0, count: m * ldc)
            for i in 0..<m {
                for j in 0..<ldc {
                    guard j < n else { expected[i * ldc + j] = Double(c0[i * ldc + j]); continue }
                    var s = 0.0
                    for p in 0..<k {
                        let av = ta != 0 ? a[p * lda + i] : a[i * lda + p]
                        let bv = tb != 0 ? b[j * ldb + p] : b[p * ldb + j]
                        s += Double(av) * Double(bv)
                    }
                    expected[i * ldc + j] = Double(alpha) * s + 2 * Double(c0[i * ldc + j])
                }
            }
            for ref in [false, true] {
                var c = c0
                c.withUnsafeMutableBufferPointer { cp in
                    if ref {
                        vck_sgemm_ref(ta, tb, Int64(m), Int64(n), Int64(k), alpha, a, Int64(lda), b, Int64(ldb), 2, cp.baseAddress, Int64(ldc))
                    } else {
                        vck_sgemm(ta, tb, Int64(m), Int64(n), Int64(k), alpha, a, Int64(lda), b, Int64(ldb), 2, cp.baseAddress, Int64(ldc))
                    }
                }
                #expect(relMaxDiff(c, expected) < 1e-5, "m \(m) n \(n) k \(k) ta \(ta) tb \(tb) ref \(ref)")
            }
        }
    }

    @Test func sgemmWithZeroK() {
        var c: [Float] = [1, 2, 3, 4]
        let a: [Float] = [0], b: [Float] = [0]
        c.withUnsafeMutableBufferPointer { vck_sgemm(0, 0, 2, 2, 0, 1, a, 0, b, 0, 0.5, $0.baseAddress, 2) }
        #expect(c == [0.5, 1, 1.5, 2])
    }

    @Test(arguments: TestWeight.dtypes)
    func linearMatchesNaive(dtype: Int32) {
        for (m, n, k) in Self.shapes + [(2, 300, 36), (70, 33, 320)] {
            let w = TestWeight(dtype: dtype, n: n, k: k, seed: UInt64(n * k + Int(dtype)))
            var rng = Rng(UInt64(m + 5))
            let lda = k + 1, ldc = n + 3
            let a = rng.floats(m * lda), bias = rng.floats(n), c0 = rng.floats(m * ldc)
            for (useBias, beta) in [(false, Float(0)), (true, 0), (true, 1)] {
                let expected = naiveLinear(m: m, a: a, lda: lda, w: w, bias: useBias ? bias : nil,
                                           c0: beta == 1 ? c0 : nil, ldc: ldc)
                var c = c0
                w.with { wp in
                    c.withUnsafeMutableBufferPointer { cp in
                        vck_linear(Int64(m), a, Int64(lda), wp, useBias ? bias : nil, cp.baseAddress, Int64(ldc), beta)
                    }
                }
                // Columns past n keep their values.
                var touched = 0
                for i in 0..<m { for j in n..<ldc where c[i * ldc + j] != c0[i * ldc + j] { touched += 1 } }
                #expect(touched == 0)
                let tol = dtype == Int32(VCK_W_Q8_0) ? 2e-2 : dtype == Int32(VCK_W_BF16) ? 1e-2 : 1e-5
                let valid = (0..<m * ldc).filter { $0 % ldc < n }
                #expect(relMaxDiff(valid.map { c[$0] }, valid.map { expected[$0] }) < tol, "\(TestWeight.name(dtype)) m \(m) n \(n) k \(k) bias \(useBias) beta \(beta)")
            }
        }
    }

    @Test(arguments: TestWeight.dtypes)
    func weightRowsDecode(dtype: Int32) {
        let w = TestWeight(dtype: dtype, n: 5, k: 36, seed: 3)
        var out = [Float](repeating: 0, count: 3 * 36)
        w.with { wp in out.withUnsafeMutableBufferPointer { vck_weight_rows_f32(wp, 2, 3, $0.baseAddress) } }
        #expect(bits(out) == bits(Array(w.values[72..<180])))
        #expect(vck_weight_row_bytes(dtype, 36) == [144, 72, 72, 68][Int(dtype)])
    }
}
