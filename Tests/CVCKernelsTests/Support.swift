import CVCKernels
import Testing

/// Deterministic generator for test data (SplitMix64).
struct Rng {
    var state: UInt64
    init(_ seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
    /// Uniform in [-1, 1).
    mutating func uniform() -> Float { Float(Double(next() >> 11) / Double(1 << 53) * 2 - 1) }
    mutating func floats(_ n: Int, scale: Float = 1) -> [Float] { (0..<n).map { _ in uniform() * scale } }
}

/// The sizes every SIMD kernel is checked at (vector tails on both sides of 16 and 32).
let awkwardSizes = [1, 2, 7, 15, 16, 17, 31, 32, 33, 63, 64, 65, 1023, 1025]

/// The dispatch paths a kernel is run on: everything the CPU has, AVX2 only, and scalar.
enum Path: String, CaseIterable, CustomTestStringConvertible {
    case best, bf16dot, avx2, scalar
    var mask: UInt32 {
        switch self {
        case .best: return 0xffff_ffff
        case .bf16dot: return ~UInt32(VCK_CPU_BF16_VIA_FMA) // vdpbf16ps even where FMA is preferred
        case .avx2: return UInt32(VCK_CPU_AVX2) | UInt32(VCK_CPU_FMA) | UInt32(VCK_CPU_F16C) | UInt32(VCK_CPU_SSE42)
        case .scalar: return 0
        }
    }
    var testDescription: String { rawValue }
}

/// Runs `body` with the dispatchers of the calling thread restricted to `mask` (other tests
/// running in parallel keep every feature).
func withFeatures<T>(_ mask: UInt32, _ body: () throws -> T) rethrows -> T {
    vck_cpu_set_thread_mask(mask)
    defer { vck_cpu_set_thread_mask(0xffff_ffff) }
    return try body()
}

var hasAVX512: Bool {
    let need = UInt32(VCK_CPU_AVX512F) | UInt32(VCK_CPU_AVX512BW) | UInt32(VCK_CPU_AVX512VL)
    return vck_cpu_detected() & need == need
}

func maxAbsDiff(_ a: [Float], _ b: [Float]) -> Double {
    precondition(a.count == b.count)
    var m = 0.0
    for (x, y) in zip(a, b) {
        let d = abs(Double(x) - Double(y))
        if d.isNaN { return .infinity }
        m = max(m, d)
    }
    return m
}

/// max |a - b| / max(1, max |b|): a relative error that does not blow up near zero.
func relMaxDiff(_ a: [Float], _ b: [Double]) -> Double {
    precondition(a.count == b.count)
    var m = 0.0, r = 1.0
    for (x, y) in zip(a, b) {
        let d = abs(Double(x) - y)
        if d.isNaN { return .infinity }
        m = max(m, d)
        r = max(r, abs(y))
    }
    return m / r
}

/// Bit patterns for exact comparisons (NaN == NaN when the bits agree).
func bits(_ a: [Float]) -> [UInt32] { a.map(\.bitPattern) }

/// Calls a C kernel with mutable/immutable float buffers.
extension Array where Element == Float {
    func ptr<R>(_ body: (UnsafePointer<Float>) throws -> R) rethrows -> R {
        try withUnsafeBufferPointer { try body($0.baseAddress!) }
    }
}
