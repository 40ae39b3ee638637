import CVCKernels
import Foundation
import Testing

/// Normalisations and activations against double-precision loops written here.
@Suite("norms and activations")
struct NormTests {
    /// GroupNorm over [samples, rows, c] with double statistics.
    static func naiveGroupNorm(_ x: [Float], samples: Int, rows: Int, c: Int, groups: Int, gamma: [Float], beta: [Float],
                               eps: Double, act: Int32) -> [Double] {
        var y = [Double](repeating: 0, count: x.count)
        let cg = c / groups
        for s in 0..<samples {
            for g in 0..<groups {
                var sum = 0.0
                for r in 0..<rows { for j in g * cg..<(g + 1) * cg { sum += Double(x[(s * rows + r) * c + j]) } }
                let mean = sum / Double(rows * cg)
                var sq = 0.0
                for r in 0..<rows { for j in g * cg..<(g + 1) * cg { let d = Double(x[(s * rows + r) * c + j]) - mean; sq += d * d } }
                let rstd = 1 / (sq / Double(rows * cg) + eps).squareRoot()
                for r in 0..<rows {
                    for j in g * cg..<(g + 1) * cg {
                        let i = (s * rows + r) * c + j
                        var v = (Double(x[i]) - mean) * rstd * Double(gamma[j]) + Double(beta[j])
                        if act == Int32(VCK_ACT_SILU) { v = v / (1 + exp(-v)) }
                        if act == Int32(VCK_ACT_GELU) { v = 0.5 * v * (1 + erf(v / 2.0.squareRoot())) }
                        y[i] = v
                    }
                }
            }
        }
        return y
    }

    /// (samples, rows, c, groups): per-frame (samples = frames) and across frames (samples = batch,
    /// rows = frames * h * w), including sizes above one chunk of rows.
    @Test(arguments: [(1, 1, 4, 2), (3, 35, 32, 8), (2, 7 * 16, 64, 32), (1, 5 * 300, 48, 16), (5, 17, 33, 3)])
    func groupNormMatchesDouble(samples: Int, rows: Int, c: Int, groups: Int) {
        var rng = Rng(UInt64(rows * c))
        let x = rng.floats(samples * rows * c, scale: 3).map { $0 + 1.5 } // non-zero mean
        let gamma = rng.floats(c).map { 1 + 0.2 * $0 }, beta = rng.floats(c, scale: 0.1)
        for act in [Int32(VCK_ACT_NONE), Int32(VCK_ACT_SILU), Int32(VCK_ACT_GELU)] {
            let expected = Self.naiveGroupNorm(x, samples: samples, rows: rows, c: c, groups: groups, gamma: gamma, beta: beta,
                                               eps: 1e-5, act: act)
            var y = [Float](repeating: .nan, count: x.count)
            y.withUnsafeMutableBufferPointer {
                vck_group_norm(x, $0.baseAddress, Int64(samples), Int64(rows), Int64(c), Int64(groups), gamma, beta, 1e-5, act)
            }
            #expect(relMaxDiff(y, expected) < 2e-6, "act \(act)")
            // In place gives the same bits.
            var inplace = x
            inplace.withUnsafeMutableBufferPointer {
                vck_group_norm($0.baseAddress, $0.baseAddress, Int64(samples), Int64(rows), Int64(c), Int64(groups), gamma, beta, 1e-5, act)
            }
            #expect(bits(inplace) == bits(y))
        }
    }

    @Test(arguments: [(1, 1), (3, 7), (77, 32), (5, 1024), (2, 33)])
    func layerNormMatchesDouble(rows: Int, c: Int) {
        var rng = Rng(UInt64(rows + c))
        let x = rng.floats(rows * c, scale: 4).map { $0 - 2 }
        let gamma = rng.floats(c).map { 1 + $0 * 0.3 }, beta = rng.floats(c)
        var expected = [Double](repeating: 0, count: x.count)
        for r in 0..<rows {
            let row = x[r * c..<(r + 1) * c].map(Double.init)
            let mean = row.reduce(0, +) / Double(c)
            let v = row.map { ($0 - mean) * ($0 - mean) }.reduce(0, +) / Double(c)
            for j in 0..<c { expected[r * c + j] = (row[j] - mean) / (v + 1e-5).squareRoot() * Double(gamma[j]) + Double(beta[j]) }
        }
        var y = [Float](repeating: .nan, count: x.count)
        y.withUnsafeMutableBufferPointer { vck_layer_norm(x, $0.baseAddress, Int64(rows), Int64(c), gamma, beta, 1e-5) }
        #expect(relMaxDiff(y, expected) < 2e-6)
        var none = [Float](repeating: .nan, count: x.count)
        none.withUnsafeMutableBufferPointer { vck_layer_norm(x, $0.baseAddress, Int64(rows), Int64(c), nil, nil, 1e-5) }
        let plain = (0..<x.count).map { (expected[$0] - Double(beta[$0 % c])) / Double(gamma[$0 % c]) }
        #expect(relMaxDiff(none, plain) < 2e-5)
    }

    @Test(arguments: [(1, 1), (2, 7), (3, 77), (4, 1023), (40, 64)])
    func softmaxMatchesDouble(rows: Int, c: Int) {
        var rng = Rng(UInt64(rows * c))
        var x = rng.floats(rows * c, scale: 10)
        if c > 1 { x[0] = -.infinity } // a masked entry
        var expected = [Double](repeating: 0, count: x.count)
        for r in 0..<rows {
            let row = x[r * c..<(r + 1) * c].map(Double.init)
            let m = row.max() ?? 0
            let e = row.map { exp($0 - m) }
            let s = e.reduce(0, +)
            for j in 0..<c { expected[r * c + j] = e[j] / s }
        }
        var y = x, yr = x
        y.withUnsafeMutableBufferPointer { vck_softmax_rows($0.baseAddress, Int64(rows), Int64(c)) }
        yr.withUnsafeMutableBufferPointer { vck_softmax_rows_ref($0.baseAddress, Int64(rows), Int64(c)) }
        #expect(relMaxDiff(y, expected) < 1e-6)
        #expect(bits(y) == bits(yr))
    }

    @Test(arguments: awkwardSizes + [40_000])
    func pointwiseMatchDouble(n: Int) {
        var rng = Rng(UInt64(n))
        var x = rng.floats(n, scale: 8)
        x[0] = n > 1 ? -100 : 3 // far tail: silu -> -0, gelu -> -0
        let silu = x.map { Double($0) / (1 + exp(-Double($0))) }
        let gelu = x.map { 0.5 * Double($0) * (1 + erf(Double($0) / 2.0.squareRoot())) }
        for (kernel, ref, expected) in [(vck_silu, vck_silu_ref, silu), (vck_gelu, vck_gelu_ref, gelu)] {
            var y = [Float](repeating: .nan, count: n), yr = y
            y.withUnsafeMutableBufferPointer { kernel(x, $0.baseAddress, n) }
            yr.withUnsafeMutableBufferPointer { ref(x, $0.baseAddress, n) }
            #expect(bits(y) == bits(yr))
            // fp32 formula (as PyTorch's): 1 + erf(x/sqrt 2) cancels for x << 0, so the error is
            // absolute there, about ulp(1) * |x| / 2.
            let worst = zip(zip(y, expected), x).map { abs(Double($0.0) - $0.1) / max(1, abs(Double($1))) }.max() ?? 0
            #expect(worst < 1e-6)
        }
    }

    /// GEGLU: the first half of each row is the value, the second half the gate.
    @Test(arguments: [(1, 1), (3, 5), (17, 64), (2, 1280)])
    func gegluValueThenGate(rows: Int, f: Int) {
        var rng = Rng(UInt64(rows * f))
        let x = rng.floats(rows * 2 * f, scale: 3)
        var expected = [Double](repeating: 0, count: rows * f)
        for r in 0..<rows {
            for j in 0..<f {
                let a = Double(x[r * 2 * f + j]), g = Double(x[r * 2 * f + f + j])
                expected[r * f + j] = a * 0.5 * g * (1 + erf(g / 2.0.squareRoot()))
            }
        }
        var y = [Float](repeating: .nan, count: rows * f)
        y.withUnsafeMutableBufferPointer { vck_geglu(x, $0.baseAddress, Int64(rows), Int64(f)) }
        #expect(relMaxDiff(y, expected) < 1e-6)
        if f == 1 { // hand-checked: value 2, gate 1 -> 2 * gelu(1) = 2 * 0.8413447
            var z: [Float] = [0]
            z.withUnsafeMutableBufferPointer { vck_geglu([2, 1], $0.baseAddress, 1, 1) }
            #expect(abs(z[0] - 1.6826895) < 1e-6)
        }
    }

    @Test func elementwiseHelpers() {
        var y = [Float](repeating: 0, count: 5)
        y.withUnsafeMutableBufferPointer { vck_add([1, 2, 3, 4, 5], [10, 20, 30, 40, 50], $0.baseAddress, 5) }
        #expect(y == [11, 22, 33, 44, 55])
        var z = [Float](repeating: 0, count: 6)
        z.withUnsafeMutableBufferPointer { vck_add_row_vector([1, 2, 3, 4, 5, 6], [10, 20, 30], $0.baseAddress, 2, 3) }
        #expect(z == [11, 22, 33, 14, 25, 36])
        z.withUnsafeMutableBufferPointer { vck_scale($0.baseAddress, 0.5, 6) }
        #expect(z == [5.5, 11, 16.5, 7, 12.5, 18])
    }
}
