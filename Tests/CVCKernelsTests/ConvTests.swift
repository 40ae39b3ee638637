import CVCKernels
import Testing

/// Convolutions on channels-last activations against naive loops written here.
@Suite("convolutions")
struct ConvTests {
    /// x: [n, h, w, cin]; weights [cout, cin, kh, kw]; y: [n, oh, ow, cout].
    static func naiveConv2d(_ x: [Float], n: Int, h: Int, w: Int, cin: Int, wt: TestWeight, bias: [Float]?,
                            kh: Int, kw: Int, stride: Int, pad: Int) -> [Double] {
        let cout = wt.n, oh = (h + 2 * pad - kh) / stride + 1, ow = (w + 2 * pad - kw) / stride + 1
        var y = [Double](repeating: 0, count: n * oh * ow * cout)
        for b in 0..<n { for oy in 0..<oh { for ox in 0..<ow { for co in 0..<cout {
            var s = Double(bias?[co] ?? 0)
            for ci in 0..<cin { for ky in 0..<kh { for kx in 0..<kw {
                let iy = oy * stride - pad + ky, ix = ox * stride - pad + kx
                guard iy >= 0, iy < h, ix >= 0, ix < w else { continue }
                s += Double(x[((b * h + iy) * w + ix) * cin + ci]) * Double(wt.values[((co * cin + ci) * kh + ky) * kw + kx])
            } } }
            y[((b * oh + oy) * ow + ox) * cout + co] = s
        } } } }
        return y
    }

    struct Case: Sendable, CustomTestStringConvertible {
        var n, h, w, cin, cout, k, stride, pad: Int
        var testDescription: String { "\(n)x\(h)x\(w)x\(cin)->\(cout) k\(k) s\(stride) p\(pad)" }
    }
    static let cases: [Case] = [
        Case(n: 1, h: 5, w: 7, cin: 3, cout: 4, k: 3, stride: 1, pad: 1),
        Case(n: 2, h: 8, w: 9, cin: 17, cout: 33, k: 3, stride: 1, pad: 1),
        Case(n: 2, h: 8, w: 9, cin: 5, cout: 7, k: 3, stride: 2, pad: 1),
        Case(n: 1, h: 7, w: 7, cin: 16, cout: 16, k: 3, stride: 2, pad: 1),
        Case(n: 3, h: 4, w: 5, cin: 31, cout: 15, k: 1, stride: 1, pad: 0),
        Case(n: 1, h: 1, w: 1, cin: 2, cout: 3, k: 3, stride: 1, pad: 1),
        Case(n: 1, h: 6, w: 5, cin: 4, cout: 6, k: 3, stride: 1, pad: 0),
    ]

    @Test(arguments: cases)
    func conv2dMatchesNaive(c: Case) {
        for dtype in TestWeight.dtypes {
            let wt = TestWeight(dtype: dtype, n: c.cout, k: c.cin * c.k * c.k, seed: UInt64(c.cin * 7 + c.cout))
            var rng = Rng(UInt64(c.h * c.w))
            let x = rng.floats(c.n * c.h * c.w * c.cin), bias = rng.floats(c.cout)
            let expected = Self.naiveConv2d(x, n: c.n, h: c.h, w: c.w, cin: c.cin, wt: wt, bias: bias,
                                            kh: c.k, kw: c.k, stride: c.stride, pad: c.pad)
            var y = [Float](repeating: .nan, count: expected.count)
            wt.with { wp in
                y.withUnsafeMutableBufferPointer {
                    vck_conv2d_nhwc(x, Int64(c.n), Int64(c.h), Int64(c.w), Int64(c.cin), wp, bias, Int64(c.k), Int64(c.k),
                                    Int64(c.stride), Int64(c.pad), $0.baseAddress)
                }
            }
            let tol = dtype == Int32(VCK_W_Q8_0) ? 2e-2 : dtype == Int32(VCK_W_BF16) ? 1e-2 : 1e-5
            #expect(relMaxDiff(y, expected) < tol, "\(TestWeight.name(dtype))")
        }
    }

    /// Temporal conv (kt, 1, 1), zero padding kt/2 in time: x [nseq, t, hw, cin], w [cout, cin, kt].
    @Test(arguments: [(1, 5, 6, 3, 4), (2, 3, 7, 17, 9), (1, 1, 4, 8, 8), (3, 16, 2, 33, 5)])
    func temporalConvMatchesNaive(nseq: Int, t: Int, hw: Int, cin: Int, cout: Int) {
        let kt = 3
        for dtype in [Int32(VCK_W_F32), Int32(VCK_W_F16)] {
            let wt = TestWeight(dtype: dtype, n: cout, k: cin * kt, seed: UInt64(cin + cout))
            var rng = Rng(UInt64(t * hw))
            let x = rng.floats(nseq * t * hw * cin), bias = rng.floats(cout)
            var expected = [Double](repeating: 0, count: nseq * t * hw * cout)
            for s in 0..<nseq { for ti in 0..<t { for p in 0..<hw { for co in 0..<cout {
                var acc = Double(bias[co])
                for j in 0..<kt {
                    let tt = ti - kt / 2 + j
                    guard tt >= 0, tt < t else { continue }
                    for ci in 0..<cin {
                        acc += Double(x[((s * t + tt) * hw + p) * cin + ci]) * Double(wt.values[(co * cin + ci) * kt + j])
                    }
                }
                expected[((s * t + ti) * hw + p) * cout + co] = acc
            } } } }
            var y = [Float](repeating: .nan, count: expected.count)
            wt.with { wp in
                y.withUnsafeMutableBufferPointer {
                    vck_conv_temporal(x, Int64(nseq), Int64(t), Int64(hw), Int64(cin), wp, bias, Int64(kt), $0.baseAddress)
                }
            }
            #expect(relMaxDiff(y, expected) < 1e-5, "\(TestWeight.name(dtype))")
        }
    }
}
