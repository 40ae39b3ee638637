// A port of PyTorch's CPU random generator as used by `torch.manual_seed(seed)` followed by
// `torch.randn(shape)` (float32), bit for bit, including the state carried between calls.
//
// Ported from pytorch/pytorch (the v1.13 code the golden bundle was produced with; unchanged in
// the parts used here through 2.x):
//   aten/src/ATen/core/MT19937RNGEngine.h         mt19937 seeding and tempering
//   aten/src/ATen/CPUGeneratorImpl.cpp            random() / random64() (hi word first)
//   aten/src/ATen/core/TransformationHelper.h     uniform_real: (v & (2^digits - 1)) * 2^-digits
//   aten/src/ATen/core/DistributionsHelper.h      normal_distribution<double> with cached sine
//   aten/src/ATen/native/cpu/DistributionTemplates.h  normal_kernel / normal_fill /
//                                                  normal_fill_16 / normal_fill_16_AVX2
//   aten/src/ATen/native/cpu/avx_mathfun.h        log256_ps, sincos256_ps (Cephes polynomials)
// Checked against golden `rng.*` and `sample.x_T` / `sample.step*.noise` of fixtures/vc2-tiny-a.

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// PyTorch's CPU generator: `TorchGenerator(seed: s)` is `torch.manual_seed(s)`, and
/// `randn(count:)` is `torch.randn(n)` on the CPU in float32.
///
/// `torch.randn` takes one of two paths:
/// - fewer than 16 values: one `normal_distribution<double>` draw per value, from two 53-bit
///   uniforms each (Box-Muller), and the sine half is kept for the next value — also for the
///   next call;
/// - 16 or more values: fill the tensor with 24-bit uniforms, then Box-Muller in blocks of 16
///   (`u1 = 1 - d[j]`, `u2 = d[j + 8]`). A tail that is not a multiple of 16 is recomputed by
///   drawing 16 fresh uniforms over the last 16 values. This path neither reads nor writes the
///   cached normal.
public struct TorchGenerator: Sendable {
    /// Which `normal_fill_16` the 16-or-more path reproduces.
    public enum NormalKernel: Sendable, Equatable {
        /// `normal_fill_16_AVX2` with avx_mathfun's `log256_ps`/`sincos256_ps`, as compiled
        /// by GCC (multiply-adds contracted to FMA). What torch runs on any x86-64 CPU with
        /// AVX2 (AVX-512 machines are dispatched to it too); it matches the golden bundle.
        case avx2
        /// The portable `normal_fill_16` (float `log`/`cos`/`sin` of the platform libm), what
        /// torch runs without AVX2 (e.g. on arm64). Bit-exact only with the same libm.
        case portable
    }

    private static let stateSize = 624
    private static let shift = 397

    private var state: [UInt32]
    private var position: Int
    private var cachedNormal: Double?
    /// The kernel used for draws of 16 or more values.
    public let kernel: NormalKernel
    /// The seed (only its low 32 bits reach mt19937, as in torch).
    public let seed: UInt64

    /// `torch.manual_seed(seed)`: mt19937 initialised with the low 32 bits of the seed, the
    /// cached normal cleared.
    public init(seed: UInt64, kernel: NormalKernel = .avx2) {
        self.seed = seed
        self.kernel = kernel
        var s = [UInt32](repeating: 0, count: Self.stateSize)
        s[0] = UInt32(truncatingIfNeeded: seed)
        for i in 1..<Self.stateSize {
            let prev = s[i - 1]
            s[i] = 1_812_433_253 &* (prev ^ (prev >> 30)) &+ UInt32(i)
        }
        state = s
        position = Self.stateSize
        cachedNormal = nil
    }

    /// A seed given as a signed integer, e.g. from a command line (`torch.manual_seed(-1)`
    /// wraps the same way).
    public init(signedSeed: Int64, kernel: NormalKernel = .avx2) {
        self.init(seed: UInt64(bitPattern: signedSeed), kernel: kernel)
    }

    // MARK: - Raw words

    /// `CPUGeneratorImpl::random()`: the next tempered mt19937 word.
    public mutating func nextUInt32() -> UInt32 {
        if position >= Self.stateSize { twist() }
        var y = state[position]
        position += 1
        y ^= y >> 11
        y ^= (y << 7) & 0x9D2C_5680
        y ^= (y << 15) & 0xEFC6_0000
        y ^= y >> 18
        return y
    }

    /// `CPUGeneratorImpl::random64()`: two words, the first one is the high half.
    public mutating func nextUInt64() -> UInt64 {
        let hi = UInt64(nextUInt32())
        let lo = UInt64(nextUInt32())
        return hi << 32 | lo
    }

    private mutating func twist() {
        let n = Self.stateSize, m = Self.shift
        for k in 0..<n {
            let y = (state[k] & 0x8000_0000) | (state[(k + 1) % n] & 0x7FFF_FFFF)
            var v = state[(k + m) % n] ^ (y >> 1)
            if y & 1 != 0 { v ^= 0x9908_B0DF }
            state[k] = v
        }
        position = 0
    }

    // MARK: - Uniforms

    /// `uniform_real_distribution<float>(0, 1)`: the low 24 bits of one word times 2^-24.
    public mutating func uniformFloat() -> Float {
        Float(nextUInt32() & 0xFF_FFFF) * 0x1p-24
    }

    /// `uniform_real_distribution<double>(0, 1)`: the low 53 bits of `random64()` times 2^-53.
    public mutating func uniformDouble() -> Double {
        Double(nextUInt64() & 0x1F_FFFF_FFFF_FFFF) * 0x1p-53
    }

    // MARK: - Normals

    /// `normal_distribution<double>(0, 1)` on this generator: Box-Muller over two 53-bit
    /// uniforms, returning `r cos θ` and caching `r sin θ` for the next call.
    public mutating func normalDouble() -> Double {
        if let cached = cachedNormal {
            cachedNormal = nil
            return cached
        }
        let u1 = uniformDouble()
        let u2 = uniformDouble()
        let r = (-2.0 * log(1.0 - u2)).squareRoot()
        let theta = 2.0 * Double.pi * u1
        cachedNormal = r * sin(theta)
        return r * cos(theta)
    }

    /// `torch.randn(count)` (float32, CPU): `count` standard normal values in tensor order.
    public mutating func randn(count: Int) -> [Float] {
        guard count > 0 else { return [] }
        if count < 16 {
            // Serial path: normal_distribution<double>, cast to float.
            return (0..<count).map { _ in Float(normalDouble()) }
        }
        var data = [Float](repeating: 0, count: count)
        for i in 0..<count { data[i] = uniformFloat() }
        var start = 0
        while start + 16 <= count {
            fill16(&data, at: start)
            start += 16
        }
        if count % 16 != 0 {
            // Recompute the last 16 values from fresh uniforms.
            let tail = count - 16
            for i in 0..<16 { data[tail + i] = uniformFloat() }
            fill16(&data, at: tail)
        }
        return data
    }

    private func fill16(_ d: inout [Float], at base: Int) {
        switch kernel {
        case .avx2:
            let twoPi = Float(2.0 * Double.pi)
            for j in 0..<8 {
                let u1 = 1 - d[base + j]
                let u2 = d[base + j + 8]
                let radius = (-2 * AVXMathFun.log(u1)).squareRoot()
                let (s, c) = AVXMathFun.sincos(twoPi * u2)
                // _mm256_fmadd_ps(n, std = 1, mean = 0) is exact.
                d[base + j] = radius * c
                d[base + j + 8] = radius * s
            }
        case .portable:
            for j in 0..<8 {
                let u1 = 1 - d[base + j]
                let u2 = d[base + j + 8]
                let radius = (-2 * logf(u1)).squareRoot()
                let theta = Float(2.0 * Double.pi * Double(u2))
                d[base + j] = radius * cosf(theta)
                d[base + j + 8] = radius * sinf(theta)
            }
        }
    }
}
