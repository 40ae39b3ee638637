import Testing
import CVCKernels
import VCTensor
import VCTestSupport

/// Ops.conv2dSame (per-tap GEMMs over padded bands) against Ops.conv2d (im2col) at awkward sizes.
@Suite("Same convolution through per-tap GEMMs")
struct ConvTapsTests {
    static func values(_ n: Int, seed: UInt64) -> [Float] {
        var s = seed &* 0x9e37_79b9_7f4a_7c15 | 1
        return (0..<n).map { _ in
            s = s &* 6364136223846793005 &+ 1442695040888963407
            return Float(Int64(s >> 40) % 2001) / 1000 - 1
        }
    }

    static func tensor(_ shape: [Int], seed: UInt64) throws -> Tensor {
        try Tensor(shape: shape, floats: values(shape.reduce(1, *), seed: seed))
    }

    @Test(arguments: [
        // (n, h, w, cin, cout, kh, kw)
        (1, 1, 1, 1, 1, 3, 3), (1, 1, 7, 3, 5, 3, 3), (2, 7, 5, 17, 33, 3, 3), (1, 15, 16, 16, 7, 3, 3),
        (3, 4, 31, 8, 16, 3, 3), (1, 9, 33, 5, 3, 1, 1), (1, 5, 5, 2, 3, 5, 5),
    ])
    func matchesIm2colConvolution(_ c: (Int, Int, Int, Int, Int, Int, Int)) throws {
        let (n, h, w, cin, cout, kh, kw) = c
        let x = try Self.tensor([n, h, w, cin], seed: 1)
        let wt = try Self.tensor([cout, cin, kh, kw], seed: 2)
        let b = try Self.tensor([cout], seed: 3)
        for dtype in [DType.f32, .f16, .bf16] {
            let wd = try wt.converted(to: dtype)
            let ref = try Ops.conv2d(x, wd, b, stride: 1, padding: kh / 2).floats()
            let taps = try Ops.convTaps(wd)
            let ours = try Ops.conv2dSame(x, taps: taps, kernel: (kh, kw), b)
            #expect(ours.shape == [n, h, w, cout])
            let cmp = Comparison(ours.floats(), ref)
            #expect(cmp.maxAbs <= 1e-5 * max(1, cmp.refMaxAbs), "\(c) \(dtype): \(cmp)")
            // Packed taps give exactly the unpacked result (PackedWeight is bit-identical).
            let packed = try Ops.conv2dSame(x, packedTaps: try Ops.packTaps(taps), kernel: (kh, kw), b)
            #expect(packed.floats() == ours.floats(), "\(c) \(dtype) packed")
            if dtype == .f16 {
                // f16 taps widened to f32 (what the VAE packs): the same values in the same order.
                let widened = try Ops.conv2dSame(x, packedTaps: try Ops.packTaps(try taps.converted(to: .f32)), kernel: (kh, kw), b)
                #expect(widened.floats().map(\.bitPattern) == ours.floats().map(\.bitPattern), "\(c) f16 widened")
            }
        }
    }

    /// Several bands (1, 2, 3 rows, and a last partial band) give the single-band result.
    @Test func bandsJoinSeamlessly() throws {
        let x = try Self.tensor([2, 7, 9, 5], seed: 7)
        let taps = try Ops.convTaps(try Self.tensor([6, 5, 3, 3], seed: 8))
        let b = try Self.tensor([6], seed: 9)
        let whole = try Ops.conv2dSame(x, taps: taps, kernel: (3, 3), b).floats()
        for rows in [1, 2, 3, 6, 7, 8] {
            let banded = try Ops.conv2dSame(x, taps: taps, kernel: (3, 3), b, bandRows: rows).floats()
            #expect(Comparison(banded, whole).maxAbs <= 1e-6, "band of \(rows) rows")
        }
    }

    /// q8_0 and bf16 taps prepare (quantize / round) each padded pixel once for all nine taps
    /// (vck_linear_shifted): bit for bit what nine separate products over the shifted padded
    /// rows give, summed in tap order, in every GEMM mode (exact and balanced bf16 take the
    /// per-tap path), across bands of 2 rows.
    @Test(arguments: [(1, 5, 7, 64, 40), (2, 3, 9, 40, 17), (1, 6, 33, 96, 48)])
    func quantizedTapsMatchSeparateProducts(_ c: (Int, Int, Int, Int, Int)) throws {
        // Every instruction set the dispatcher can pick here: all, AVX2 only, scalar.
        let avx2 = UInt32(VCK_CPU_AVX2) | UInt32(VCK_CPU_FMA) | UInt32(VCK_CPU_F16C) | UInt32(VCK_CPU_SSE42)
        for mask in [UInt32.max, avx2, 0] {
            vck_cpu_set_thread_mask(mask)
            defer { vck_cpu_set_thread_mask(.max) }
            try quantizedTapsMatchSeparateProducts(c, mask: mask)
        }
    }

    func quantizedTapsMatchSeparateProducts(_ c: (Int, Int, Int, Int, Int), mask: UInt32) throws {
        let (n, h, w, cin, cout) = c
        let x = try Self.tensor([n, h, w, cin], seed: 11), xv = x.floats()
        let taps = try Ops.convTaps(try Self.tensor([cout, cin, 3, 3], seed: 12))   // [9, Cout, Cin]
        let bv = Self.values(cout, seed: 13), b = try Tensor(shape: [cout], floats: bv)
        let wp = w + 2, m = (h - 1) * wp + w
        for dtype in [DType.q8_0, .bf16] {
            let packed = try (0..<9).map { try PackedWeight(try taps.rows($0, 1).reshaped([cout, cin]).converted(to: dtype)) }
            for mode in Ops.GEMMPrecision.allCases {
                let ours = try Ops.withGEMMPrecision(mode) {
                    try Ops.conv2dSame(x, packedTaps: packed, kernel: (3, 3), b, bandRows: 2).floats()
                }
                var ref = [Float](repeating: 0, count: n * h * w * cout)
                for img in 0..<n {
                    var padded = [Float](repeating: 0, count: (h + 2) * wp * cin)    // [(H+2)*(W+2), Cin]
                    for y in 0..<h { for xx in 0..<w { for ci in 0..<cin {
                        padded[((y + 1) * wp + xx + 1) * cin + ci] = xv[((img * h + y) * w + xx) * cin + ci]
                    } } }
                    var acc = [Float](repeating: 0, count: m * cout)
                    for t in 0..<9 {
                        let off = (t / 3) * wp + t % 3
                        let rows = try Tensor(shape: [m, cin], floats: Array(padded[(off * cin)..<((off + m) * cin)]))
                        let y = try Ops.withGEMMPrecision(mode) { try Ops.linear(rows, packed[t]).floats() }   // [m, Cout]
                        acc = t == 0 ? y : zip(acc, y).map { $0 + $1 }
                    }
                    for oy in 0..<h { for ox in 0..<w { for co in 0..<cout {
                        ref[((img * h + oy) * w + ox) * cout + co] = acc[(oy * wp + ox) * cout + co] + bv[co]
                    } } }
                }
                let differing = zip(ours, ref).filter { $0.bitPattern != $1.bitPattern }.count
                #expect(ours.count == ref.count && differing == 0,
                        "\(c) \(dtype) \(mode) cpu mask \(mask): \(differing) of \(ref.count) differ")
            }
        }
    }

    /// GroupNorm + activation and the nearest x2 upsample applied in the band copy give the
    /// result of convolving the materialised normalised, upsampled input, bit for bit (the same
    /// per-pixel arithmetic), for f32 and q8_0 taps, with two images per statistics sample and
    /// bands of 3 rows.
    @Test(arguments: [(false, true), (true, false), (true, true)])
    func normAndUpsampleFoldIntoTheBandCopy(_ c: (Bool, Bool)) throws {
        let (up, normed) = c
        let (n, h, w, cin, cout) = (4, 5, 7, 64, 24)
        let x = try Self.tensor([n, h, w, cin], seed: 21)
        let gamma = try Self.tensor([cin], seed: 22), beta = try Self.tensor([cin], seed: 23)
        let taps = try Ops.convTaps(try Self.tensor([cout, cin, 3, 3], seed: 24))
        let b = try Self.tensor([cout], seed: 25)
        let norm = normed ? try Ops.groupNormStatistics(x, samples: 2, groups: 8, weight: gamma, bias: beta, eps: 1e-6) : nil
        var input = x
        if let norm { input = try Ops.groupNormApply(input, norm, activation: .silu) }
        if up { input = try Ops.upsampleNearest2x(input) }
        for dtype in [DType.f32, .q8_0] {
            let packed = try (0..<9).map { try PackedWeight(try taps.rows($0, 1).reshaped([cout, cin]).converted(to: dtype)) }
            let fused = try Ops.conv2dSame(x, packedTaps: packed, kernel: (3, 3), b, upsample2x: up, norm: norm,
                                           activation: .silu, bandRows: 3)
            let plain = try Ops.conv2dSame(input, packedTaps: packed, kernel: (3, 3), b, bandRows: 3)
            #expect(fused.shape == [n, up ? 2 * h : h, up ? 2 * w : w, cout])
            let (f, p) = (fused.floats(), plain.floats())
            let differing = zip(f, p).filter { $0.bitPattern != $1.bitPattern }.count
            #expect(f.count == p.count && differing == 0, "\(c) \(dtype): \(differing) of \(p.count) differ")
        }
        // Statistics of 4 samples do not fit 2 images.
        let four = try Ops.groupNormStatistics(x, samples: 4, groups: 8, weight: gamma, bias: beta, eps: 1e-6)
        #expect(throws: TensorError.self) {
            try Ops.conv2dSame(try x.rows(0, 2), packedTaps: try Ops.packTaps(taps), kernel: (3, 3), b, norm: four)
        }
    }

    /// A 1x3 kernel pads only along W: checked against a hand-written loop.
    @Test func nonSquareKernelMatchesDirectLoop() throws {
        let (h, w, cin, cout) = (3, 5, 2, 3)
        let x = try Self.tensor([1, h, w, cin], seed: 4), wt = try Self.tensor([cout, cin, 1, 3], seed: 5)
        let xv = x.floats(), wv = wt.floats()
        var ref = [Float](repeating: 0, count: h * w * cout)
        for oy in 0..<h { for ox in 0..<w { for co in 0..<cout {
            var s: Float = 0
            for ci in 0..<cin { for kx in 0..<3 where ox + kx - 1 >= 0 && ox + kx - 1 < w {
                s += xv[(oy * w + ox + kx - 1) * cin + ci] * wv[(co * cin + ci) * 3 + kx]
            } }
            ref[(oy * w + ox) * cout + co] = s
        } } }
        let ours = try Ops.conv2dSame(x, taps: try Ops.convTaps(wt), kernel: (1, 3), nil).floats()
        #expect(Comparison(ours, ref).maxAbs <= 1e-6)
    }

    @Test func refusesWhatItCannotRun() throws {
        let w = try Self.tensor([4, 3, 3, 3], seed: 6)
        #expect(throws: TensorError.self) { try Ops.convTaps(try w.converted(to: .q8_0)) }
        let taps = try Ops.convTaps(w)
        #expect(throws: TensorError.self) { try Ops.conv2dSame(Tensor(zeros: [1, 4, 4, 5]), taps: taps, kernel: (3, 3), nil) }
        #expect(throws: TensorError.self) { try Ops.conv2dSame(Tensor(zeros: [1, 4, 4, 3]), taps: taps, kernel: (2, 2), nil) }
    }
}
