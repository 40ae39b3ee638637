import CVCKernels
import Testing

/// fp16 / bf16 <-> fp32 conversions: every 16-bit pattern, SIMD against the scalar twin (bit-exact)
/// and against an independent reference (Swift's Float16, the bf16 bit layout).
@Suite("fp16/bf16 conversions")
struct ConversionTests {
    static let allHalves: [UInt16] = (0...0xffff).map { UInt16($0) }

    static func f16ToF32(_ src: [UInt16], ref: Bool) -> [Float] {
        var out = [Float](repeating: 0, count: src.count)
        src.withUnsafeBufferPointer { s in out.withUnsafeMutableBufferPointer { d in
            if ref { vck_f16_to_f32_ref(s.baseAddress, d.baseAddress, s.count) } else { vck_f16_to_f32(s.baseAddress, d.baseAddress, s.count) }
        } }
        return out
    }
    static func bf16ToF32(_ src: [UInt16], ref: Bool) -> [Float] {
        var out = [Float](repeating: 0, count: src.count)
        src.withUnsafeBufferPointer { s in out.withUnsafeMutableBufferPointer { d in
            if ref { vck_bf16_to_f32_ref(s.baseAddress, d.baseAddress, s.count) } else { vck_bf16_to_f32(s.baseAddress, d.baseAddress, s.count) }
        } }
        return out
    }
    static func f32ToF16(_ src: [Float], ref: Bool) -> [UInt16] {
        var out = [UInt16](repeating: 0, count: src.count)
        src.withUnsafeBufferPointer { s in out.withUnsafeMutableBufferPointer { d in
            if ref { vck_f32_to_f16_ref(s.baseAddress, d.baseAddress, s.count) } else { vck_f32_to_f16(s.baseAddress, d.baseAddress, s.count) }
        } }
        return out
    }
    static func f32ToBF16(_ src: [Float], ref: Bool) -> [UInt16] {
        var out = [UInt16](repeating: 0, count: src.count)
        src.withUnsafeBufferPointer { s in out.withUnsafeMutableBufferPointer { d in
            if ref { vck_f32_to_bf16_ref(s.baseAddress, d.baseAddress, s.count) } else { vck_f32_to_bf16(s.baseAddress, d.baseAddress, s.count) }
        } }
        return out
    }

    static func isHalfNaN(_ h: UInt16) -> Bool { h & 0x7c00 == 0x7c00 && h & 0x3ff != 0 }
    static func isBF16NaN(_ h: UInt16) -> Bool { h & 0x7f80 == 0x7f80 && h & 0x7f != 0 }

    @Test func f16ToF32AllPatterns() {
        #expect(hasAVX512, "the SIMD path is not exercised on this CPU")
        let simd = Self.f16ToF32(Self.allHalves, ref: false)
        let ref = Self.f16ToF32(Self.allHalves, ref: true)
        #expect(bits(simd) == bits(ref))
        var wrong = 0
        for h in Self.allHalves {
            let v = ref[Int(h)]
            if Self.isHalfNaN(h) {
                if !v.isNaN { wrong += 1 }
            } else if v.bitPattern != Float(Float16(bitPattern: h)).bitPattern {
                wrong += 1
            }
        }
        #expect(wrong == 0)
    }

    @Test func bf16ToF32AllPatterns() {
        let simd = Self.bf16ToF32(Self.allHalves, ref: false)
        let ref = Self.bf16ToF32(Self.allHalves, ref: true)
        #expect(bits(simd) == bits(ref))
        #expect(bits(ref) == Self.allHalves.map { UInt32($0) << 16 })
        #expect(Self.allHalves.filter(Self.isBF16NaN).allSatisfy { ref[Int($0)].isNaN })
    }

    /// Every fp16 value converts back to itself; every midpoint between neighbours rounds to the
    /// even one; a hair above/below the midpoint rounds away/towards. NaN stays NaN.
    @Test func f32ToF16RoundsToNearestEven() {
        var inputs: [Float] = [], expected: [UInt16] = []
        for h in Self.allHalves where !Self.isHalfNaN(h) {
            let v = Float(Float16(bitPattern: h))
            inputs.append(v); expected.append(h)
            // Neighbour of larger magnitude (same sign) when it is finite.
            let mag = h & 0x7fff
            guard mag < 0x7c00 else { continue }
            let up = h + 1
            let vu = Float(Float16(bitPattern: up)) // may be infinity for the largest finite value
            // exact in fp32; past the largest finite value the midpoint is 65520 (ties to even -> inf)
            let mid: Float = vu.isInfinite ? v + (v.sign == .minus ? -16 : 16) : (v + vu) / 2
            let even = (h & 1) == 0 ? h : up
            inputs.append(mid); expected.append(even)
            inputs.append(mid.nextUp.magnitude > mid.magnitude ? mid.nextUp : mid.nextDown); expected.append(up)
            inputs.append(mid.nextUp.magnitude > mid.magnitude ? mid.nextDown : mid.nextUp); expected.append(h)
        }
        for ref in [true, false] {
            let out = Self.f32ToF16(inputs, ref: ref)
            let bad = zip(out, expected).filter { $0 != $1 }.count
            #expect(bad == 0, "ref=\(ref): \(bad) of \(inputs.count) wrong")
        }
        // Hand-picked: 1 + 2^-11 is halfway between 1 and 1 + 2^-10 -> 1 (even); 1 + 3*2^-11 -> 1 + 2^-9.
        #expect(Self.f32ToF16([1 + 0x1p-11, 1 + 3 * 0x1p-11, 65504, 65519.99, 65520, 0x1p-25, 0x1.8p-25, -0x1p-24],
                              ref: false) == [0x3c00, 0x3c02, 0x7bff, 0x7bff, 0x7c00, 0x0000, 0x0001, 0x8001])
        let nan = Self.f32ToF16([.nan, -.nan, .signalingNaN, .infinity, -.infinity], ref: false)
        #expect(nan[0..<3].allSatisfy(Self.isHalfNaN))
        #expect(Array(nan[3...]) == [0x7c00, 0xfc00])
    }

    /// Random fp32 bit patterns: SIMD == scalar twin == Swift's Float16(Float) (round to nearest even).
    @Test func f32ToF16RandomPatternsMatchSwift() {
        var rng = Rng(7)
        let inputs: [Float] = (0..<300_000).map { _ in Float(bitPattern: UInt32(truncatingIfNeeded: rng.next())) }
        let simd = Self.f32ToF16(inputs, ref: false), ref = Self.f32ToF16(inputs, ref: true)
        #expect(simd == ref)
        var bad = 0
        for (x, h) in zip(inputs, ref) {
            if x.isNaN { if !Self.isHalfNaN(h) { bad += 1 } } else if Float16(x).bitPattern != h { bad += 1 }
        }
        #expect(bad == 0)
    }

    @Test func f32ToBF16RoundsToNearestEven() {
        var inputs: [Float] = [], expected: [UInt16] = []
        for h in Self.allHalves where !Self.isBF16NaN(h) {
            let base = UInt32(h) << 16
            inputs.append(Float(bitPattern: base)); expected.append(h)
            guard h & 0x7fff < 0x7f80 else { continue } // no neighbour above infinity
            let up = h + 1
            inputs.append(Float(bitPattern: base | 0x8000)); expected.append((h & 1) == 0 ? h : up) // tie
            inputs.append(Float(bitPattern: base | 0x8001)); expected.append(up)
            inputs.append(Float(bitPattern: base | 0x7fff)); expected.append(h)
        }
        for ref in [true, false] {
            let out = Self.f32ToBF16(inputs, ref: ref)
            let bad = zip(out, expected).filter { $0 != $1 }.count
            #expect(bad == 0, "ref=\(ref): \(bad) of \(inputs.count) wrong")
        }
        var rng = Rng(9)
        let random: [Float] = (0..<100_000).map { _ in Float(bitPattern: UInt32(truncatingIfNeeded: rng.next())) }
        #expect(Self.f32ToBF16(random, ref: false) == Self.f32ToBF16(random, ref: true))
        let special = Self.f32ToBF16([.nan, .signalingNaN, -.nan, .infinity, .greatestFiniteMagnitude], ref: false)
        #expect(special[0..<3].allSatisfy(Self.isBF16NaN))
        #expect(Array(special[3...]) == [0x7f80, 0x7f80]) // the largest float rounds up to infinity
    }

    @Test(arguments: awkwardSizes)
    func tailsMatchScalar(n: Int) {
        var rng = Rng(UInt64(n))
        let x = rng.floats(n, scale: 100)
        let h = Self.f32ToF16(x, ref: false)
        #expect(h == Self.f32ToF16(x, ref: true))
        #expect(bits(Self.f16ToF32(h, ref: false)) == bits(Self.f16ToF32(h, ref: true)))
        let b = Self.f32ToBF16(x, ref: false)
        #expect(b == Self.f32ToBF16(x, ref: true))
        #expect(bits(Self.bf16ToF32(b, ref: false)) == bits(Self.bf16ToF32(b, ref: true)))
    }
}
