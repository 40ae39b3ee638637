import CVCKernels
import Foundation
import Testing

/// SIMD activations, the parallel GroupNorm and the fused (GroupNorm + SiLU + upsample) convolution
/// gathers against their reference twins / unfused compositions, at awkward sizes.
@Suite("Norm, activation and fused conv kernels")
struct NormConvKernelTests {
    static func values(_ n: Int, seed: UInt64, _ lo: Float = -1, _ hi: Float = 1) -> [Float] {
        var x = [Float](repeating: 0, count: n)
        vck_fill_uniform(&x, n, seed, lo, hi)
        return x
    }

    static func maxRelDiff(_ a: [Float], _ b: [Float], floor: Float = 1) -> Float {
        var m: Float = 0
        for (x, y) in zip(a, b) {
            let d = abs(x - y) / max(abs(y), floor)
            if d.isNaN { return .infinity }
            m = max(m, d)
        }
        return m
    }

    @Test func siluAndGeluMatchLibm() {
        for n in [1, 7, 15, 16, 17, 31, 33, 1023, 100_003] {
            var x = Self.values(n, seed: UInt64(n), -12, 12)
            if n > 20 { x[3] = 0; x[4] = -0.0; x[5] = 95; x[6] = -95; x[7] = 1e-30; x[8] = -1e-30; x[9] = -40; x[10] = 40 }
            var a = [Float](repeating: 0, count: n), r = a
            vck_silu(x, &a, n); vck_silu_ref(x, &r, n)
            #expect(a == r, "vck_silu is the libm formula, split over the pool")
            vck_silu_fast(x, &a, n)
            // Relative to max(|ref|, 1e-3): tiny outputs compared absolutely.
            #expect(Self.maxRelDiff(a, r, floor: 1e-3) <= 2e-6, "silu n \(n)")
            vck_gelu(x, &a, n); vck_gelu_ref(x, &r, n)
            #expect(a == r, "vck_gelu is the libm formula, split over the pool")
            vck_gelu_fast(x, &a, n)
            // The libm twin computes 1 + erf, which cancels for negative x (absolute error about
            // |x| * 6e-8 there), so GELU is compared with an absolute floor of 1.
            #expect(Self.maxRelDiff(a, r, floor: 1) <= 1e-6, "gelu n \(n)")
        }
        // GELU on a fine grid against double precision: the SIMD path is accurate in relative
        // terms also where 1 + erf cancels (negative x).
        let grid = (0..<20_001).map { Float(-10 + Double($0) * 0.001) }
        var g = [Float](repeating: 0, count: grid.count)
        vck_gelu_fast(grid, &g, grid.count)
        var worst = 0.0
        for (x, y) in zip(grid, g) {
            let exact = 0.5 * Double(x) * erfc(-Double(x) / 2.0.squareRoot())
            guard abs(exact) > 1e-30 else { continue }
            // exp(-x^2/2) from a float x^2/2 carries a relative error of about x^2 * 1e-7, which
            // only matters where GELU is below 1e-6 in magnitude.
            worst = max(worst, abs(Double(y) - exact) / abs(exact) / (1e-6 + 2e-7 * Double(x * x)))
        }
        print("gelu worst relative error vs double on [-10, 10], relative to 1e-6 + 2e-7 x^2: \(worst)")
        #expect(worst <= 1)
    }

    @Test func gegluMatchesReference() {
        for (rows, f) in [(1, 1), (7, 15), (17, 33), (64, 1280), (3, 17)] {
            let x = Self.values(rows * 2 * f, seed: 5, -4, 4)
            var a = [Float](repeating: 0, count: rows * f), r = a
            vck_geglu(x, &a, Int64(rows), Int64(f)); vck_geglu_ref(x, &r, Int64(rows), Int64(f))
            #expect(Self.maxRelDiff(a, r, floor: 1) <= 2e-6, "geglu \(rows)x\(f)")
        }
    }

    @Test func groupNormMatchesReferenceForAnyThreadCount() {
        let saved = vck_get_threads()
        defer { vck_set_threads(saved) }
        for (samples, rows, c, groups) in [(1, 2, 64, 32), (2, 7, 64, 32), (3, 17, 96, 32), (2, 1023, 64, 32), (1, 33, 16, 1), (5, 40, 320, 32)] {
            let x = Self.values(samples * rows * c, seed: UInt64(rows), -2, 3)
            let gamma = Self.values(c, seed: 7, 0.5, 1.5), beta = Self.values(c, seed: 8, -0.5, 0.5)
            for act in [Int32(VCK_ACT_NONE), Int32(VCK_ACT_SILU), Int32(VCK_ACT_GELU)] {
                var r = [Float](repeating: 0, count: x.count)
                vck_group_norm_ref(x, &r, Int64(samples), Int64(rows), Int64(c), Int64(groups), gamma, beta, 1e-5, act)
                var first: [Float]? = nil
                for threads in [1, 2, 3] {
                    vck_set_threads(Int32(threads))
                    var a = [Float](repeating: 0, count: x.count)
                    vck_group_norm(x, &a, Int64(samples), Int64(rows), Int64(c), Int64(groups), gamma, beta, 1e-5, act)
                    // The twin normalises in double; ours folds the affine into float scale/shift as
                    // PyTorch's CPU GroupNorm does (x * scale + shift), which loses a few ulp more.
                    // (Groups of one or two values, where rstd ~ 1/sqrt(eps) amplifies that, are
                    // left out.)
                    #expect(Self.maxRelDiff(a, r, floor: 1) <= 1e-5, "gn \(samples)x\(rows)x\(c)/\(groups) act \(act) threads \(threads)")
                    if let f = first { #expect(f.elementsEqual(a), "thread count \(threads) changed the result") } else { first = a }
                }
            }
        }
    }

    /// conv2d_ex(x, norm, upsample) == conv2d(upsample(act(groupnorm(x)))) composed from the
    /// plain kernels.
    @Test func fusedConvMatchesUnfusedComposition() {
        for (n, h, w, cin, cout, k, stride, pad, up, perSample) in
            [(2, 5, 7, 32, 17, 3, 1, 1, false, 1), (4, 3, 4, 64, 8, 3, 1, 1, true, 2), (1, 6, 6, 32, 5, 3, 2, 1, false, 1),
             (3, 4, 5, 32, 9, 1, 1, 0, true, 3), (2, 1, 1, 64, 3, 3, 1, 1, true, 2)] {
            let x = Self.values(n * h * w * cin, seed: 21, -2, 2)
            let wt = Self.values(cout * cin * k * k, seed: 22, -0.2, 0.2)
            let bias = Self.values(cout, seed: 23)
            let gamma = Self.values(cin, seed: 24, 0.5, 1.5), beta = Self.values(cin, seed: 25, -0.5, 0.5)
            let samples = n / perSample
            var scale = [Float](repeating: 0, count: samples * cin), shift = scale
            vck_group_norm_stats(x, Int64(samples), Int64(perSample * h * w), Int64(cin), 32, gamma, beta, 1e-5, &scale, &shift)
            // Unfused: normalise + SiLU, upsample, plain conv.
            var normed = [Float](repeating: 0, count: x.count)
            vck_group_norm_ref(x, &normed, Int64(samples), Int64(perSample * h * w), Int64(cin), 32, gamma, beta, 1e-5, Int32(VCK_ACT_SILU))
            let (vh, vw) = up ? (2 * h, 2 * w) : (h, w)
            var src = normed
            if up {
                src = [Float](repeating: 0, count: n * vh * vw * cin)
                vck_upsample_nearest2x(normed, Int64(n), Int64(h), Int64(w), Int64(cin), &src)
            }
            let oh = (vh + 2 * pad - k) / stride + 1, ow = (vw + 2 * pad - k) / stride + 1
            var expected = [Float](repeating: 0, count: n * oh * ow * cout), got = expected
            wt.withUnsafeBufferPointer { wp in
                var weight = vck_weight(data: UnsafeRawPointer(wp.baseAddress!), dtype: Int32(VCK_W_F32), n: Int64(cout), k: Int64(cin * k * k))
                vck_conv2d_nhwc(src, Int64(n), Int64(vh), Int64(vw), Int64(cin), &weight, bias, Int64(k), Int64(k), Int64(stride), Int64(pad), &expected)
                scale.withUnsafeBufferPointer { sp in shift.withUnsafeBufferPointer { hp in
                    var pn = vck_prenorm(scale: sp.baseAddress, shift: hp.baseAddress, imgs_per_sample: Int64(perSample), act: Int32(VCK_ACT_SILU))
                    vck_conv2d_nhwc_ex(x, Int64(n), Int64(h), Int64(w), Int64(cin), &weight, bias, Int64(k), Int64(k), Int64(stride), Int64(pad),
                                       up ? 1 : 0, &pn, &got)
                } }
            }
            #expect(Self.maxRelDiff(got, expected, floor: 1) <= 1e-5, "conv \(n)x\(h)x\(w)x\(cin)->\(cout) k\(k) s\(stride) up \(up)")
        }
    }

    @Test func fusedTemporalConvMatchesUnfusedComposition() {
        for (nseq, t, hw, cin, cout) in [(2, 5, 7, 32, 17), (1, 1, 3, 64, 8), (3, 16, 2, 32, 32)] {
            let x = Self.values(nseq * t * hw * cin, seed: 31, -2, 2)
            let wt = Self.values(cout * cin * 3, seed: 32, -0.2, 0.2)
            let bias = Self.values(cout, seed: 33)
            let gamma = Self.values(cin, seed: 34, 0.5, 1.5), beta = Self.values(cin, seed: 35, -0.5, 0.5)
            var scale = [Float](repeating: 0, count: nseq * cin), shift = scale
            vck_group_norm_stats(x, Int64(nseq), Int64(t * hw), Int64(cin), 32, gamma, beta, 1e-5, &scale, &shift)
            var normed = [Float](repeating: 0, count: x.count)
            vck_group_norm_ref(x, &normed, Int64(nseq), Int64(t * hw), Int64(cin), 32, gamma, beta, 1e-5, Int32(VCK_ACT_SILU))
            var expected = [Float](repeating: 0, count: nseq * t * hw * cout), got = expected
            wt.withUnsafeBufferPointer { wp in
                var weight = vck_weight(data: UnsafeRawPointer(wp.baseAddress!), dtype: Int32(VCK_W_F32), n: Int64(cout), k: Int64(cin * 3))
                vck_conv_temporal(normed, Int64(nseq), Int64(t), Int64(hw), Int64(cin), &weight, bias, 3, &expected)
                scale.withUnsafeBufferPointer { sp in shift.withUnsafeBufferPointer { hp in
                    var pn = vck_prenorm(scale: sp.baseAddress, shift: hp.baseAddress, imgs_per_sample: 1, act: Int32(VCK_ACT_SILU))
                    vck_conv_temporal_ex(x, Int64(nseq), Int64(t), Int64(hw), Int64(cin), &weight, bias, 3, &pn, &got)
                } }
            }
            #expect(Self.maxRelDiff(got, expected, floor: 1) <= 1e-5, "temporal conv \(nseq)x\(t)x\(hw)x\(cin)->\(cout)")
        }
    }
}
