import CVCKernels

// Stride-1 "same" convolution through per-tap GEMMs (vck_conv2d_taps_nhwc): the weight is
// reordered once, at load, to tap-major [kh*kw, Cout, Cin]; each call then runs kh*kw plain
// GEMMs over a zero-padded band of the input instead of building an im2col matrix.
extension Ops {
    /// Reorders a conv weight `[Cout, Cin, kh, kw]` (PyTorch order; f32, f16 or bf16, kept as is)
    /// to tap-major `[kh*kw, Cout, Cin]` for `conv2dSame`. q8_0 blocks run along Cin*kh*kw and
    /// cannot be reordered exactly, so q8_0 weights are refused (use `conv2d`).
    public static func convTaps(_ w: Tensor) throws -> Tensor {
        guard w.rank == 4 else { throw TensorError.shapeMismatch("conv taps of \(w.shape) ([Cout, Cin, kh, kw] expected)") }
        guard w.dtype == .f32 || w.dtype == .f16 || w.dtype == .bf16 else {
            throw TensorError.unsupportedDType(w.dtype, "conv taps need f32, f16 or bf16 weights")
        }
        let (cout, cin, taps) = (w.shape[0], w.shape[1], w.shape[2] * w.shape[3])
        let y = Tensor(zeros: [taps, cout, cin], dtype: w.dtype)
        vck_repack_conv_taps(w.raw, y.raw, w.dtype.elementSize, Int64(cout), Int64(cin), Int64(taps))
        return y
    }

    /// Convolution with stride 1 and zero padding kernel/2 on each side (odd kernel), for
    /// tap-major weights from `convTaps`: x [N, H, W, Cin], taps [kh*kw, Cout, Cin] -> [N, H, W, Cout].
    /// Equals `conv2d(x, w, b, stride: 1, padding: kernel/2)` up to the order of the sums.
    /// `bandRows` (output rows per GEMM band) is automatic when 0; tests set it to cross bands.
    public static func conv2dSame(_ x: Tensor, taps: Tensor, kernel: (h: Int, w: Int), _ b: Tensor?, bandRows: Int = 0) throws -> Tensor {
        try requireF32(x, "conv2d input")
        let (kh, kw) = kernel
        guard x.rank == 4, taps.rank == 3, kh > 0, kw > 0, kh % 2 == 1, kw % 2 == 1,
              taps.shape[0] == kh * kw, taps.shape[2] == x.shape[3], bandRows >= 0,
              taps.dtype == .f32 || taps.dtype == .f16 || taps.dtype == .bf16 else {
            throw TensorError.shapeMismatch("same conv of \(x.shape) (NHWC) with \(kh)x\(kw) taps \(taps.shape) \(taps.dtype.rawValue)")
        }
        let (n, h, wd, cin, cout) = (x.shape[0], x.shape[1], x.shape[2], x.shape[3], taps.shape[1])
        let code: Int32 = taps.dtype == .f32 ? Int32(VCK_W_F32) : taps.dtype == .f16 ? Int32(VCK_W_F16) : Int32(VCK_W_BF16)
        let tapBytes = cout * cin * taps.dtype.elementSize
        let weights = (0..<(kh * kw)).map {
            vck_weight(data: UnsafeRawPointer(taps.raw + $0 * tapBytes), dtype: code, n: Int64(cout), k: Int64(cin))
        }
        let y = Tensor(zeros: [n, h, wd, cout])
        let bp = try biasPointer(b, n: cout, what: "conv2d")
        weights.withUnsafeBufferPointer {
            vck_conv2d_taps_nhwc(x.f32, Int64(n), Int64(h), Int64(wd), Int64(cin), $0.baseAddress, bp, Int64(kh), Int64(kw),
                                 Int64(bandRows), y.f32)
        }
        return y
    }
}

extension Ops {
    /// Packs each tap of tap-major weights `[kh*kw, Cout, Cin]` (from `convTaps`) once for the
    /// GEMM kernels, so `conv2dSame(_:packedTaps:kernel:_:)` does not repack them on every call.
    public static func packTaps(_ taps: Tensor) throws -> [PackedWeight] {
        guard taps.rank == 3 else { throw TensorError.shapeMismatch("packTaps of \(taps.shape) ([taps, Cout, Cin] expected)") }
        return try (0..<taps.shape[0]).map { try PackedWeight(try taps.rows($0, 1).reshaped([taps.shape[1], taps.shape[2]])) }
    }

    /// `conv2dSame` with taps packed by `packTaps` (same results), optionally of act(GroupNorm(x))
    /// (`norm`: statistics from `groupNormStatistics` with x viewed as [norm.samples, ...] images)
    /// of the nearest x2 upsampled x (`upsample2x`: the output is [N, 2H, 2W, Cout]), neither
    /// materialised: [N, H, W, Cin] -> [N, H', W', Cout].
    public static func conv2dSame(_ x: Tensor, packedTaps: [PackedWeight], kernel: (h: Int, w: Int), _ b: Tensor?,
                                  upsample2x: Bool = false, norm: NormAffine? = nil, activation: Activation = .none,
                                  bandRows: Int = 0) throws -> Tensor {
        try requireF32(x, "conv2d input")
        let (kh, kw) = kernel
        guard x.rank == 4, kh > 0, kw > 0, kh % 2 == 1, kw % 2 == 1, packedTaps.count == kh * kw, bandRows >= 0,
              let first = packedTaps.first, first.shape.count == 2,
              packedTaps.allSatisfy({ $0.shape == first.shape }) else {
            throw TensorError.shapeMismatch("same conv of \(x.shape) (NHWC) with \(packedTaps.count) packed \(kh)x\(kw) taps")
        }
        let (n, h, wd, cin, cout) = (x.shape[0], x.shape[1], x.shape[2], x.shape[3], first.shape[0])
        if let norm, norm.samples <= 0 || n % norm.samples != 0 {
            throw TensorError.shapeMismatch("group norm of \(norm.samples) samples over \(n) images")
        }
        let weights = try packedTaps.map { try $0.cWeight(k: cin, what: "same conv tap") }
        let (oh, ow) = upsample2x ? (2 * h, 2 * wd) : (h, wd)
        let y = Tensor(uninitialized: [n, oh, ow, cout])   // every element is written
        let bp = try biasPointer(b, n: cout, what: "conv2d")
        var pn = try prenorm(norm, channels: cin, imagesPerSample: norm.map { n / $0.samples } ?? 1, activation: activation)
        withExtendedLifetime((packedTaps, norm)) {
            weights.withUnsafeBufferPointer { wp in
                withOptionalPointer(&pn) { pp in
                    vck_conv2d_taps_nhwc_ex(x.f32, Int64(n), Int64(h), Int64(wd), Int64(cin), wp.baseAddress, bp, Int64(kh), Int64(kw),
                                            Int64(bandRows), upsample2x ? 1 : 0, pp, y.f32)
                }
            }
        }
        return y
    }
}
