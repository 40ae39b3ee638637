import CVCKernels
import Testing

/// q8_0 blocks: quantize / dequantize / dot, SIMD vs scalar twin (bit-exact) and against the
/// ggml q8_0 definition computed here (d = fp16(amax / 127), q = round-half-away(x / d)).
@Suite("q8_0 blocks")
struct Q8Tests {
    static func blocks(_ k: Int) -> Int { (k + 31) / 32 }

    static func quantize(_ x: [Float], ref: Bool) -> [vck_block_q8_0] {
        var out = [vck_block_q8_0](repeating: vck_block_q8_0(), count: blocks(x.count))
        x.withUnsafeBufferPointer { s in out.withUnsafeMutableBufferPointer { d in
            if ref { vck_quantize_row_q8_0_ref(s.baseAddress, d.baseAddress, s.count) } else { vck_quantize_row_q8_0(s.baseAddress, d.baseAddress, s.count) }
        } }
        return out
    }
    static func dequantize(_ b: [vck_block_q8_0], k: Int, ref: Bool) -> [Float] {
        var out = [Float](repeating: 0, count: k)
        b.withUnsafeBufferPointer { s in out.withUnsafeMutableBufferPointer { d in
            if ref { vck_dequantize_row_q8_0_ref(s.baseAddress, d.baseAddress, k) } else { vck_dequantize_row_q8_0(s.baseAddress, d.baseAddress, k) }
        } }
        return out
    }
    static func qs(_ b: vck_block_q8_0) -> [Int8] { withUnsafeBytes(of: b.qs) { Array($0.bindMemory(to: Int8.self)) } }
    static func bytes(_ b: [vck_block_q8_0]) -> [UInt8] { b.withUnsafeBytes { Array($0) } }

    /// The definition, written out independently of the C code.
    static func expected(_ x: [Float]) -> [(d: UInt16, q: [Int8])] {
        stride(from: 0, to: x.count, by: 32).map { start in
            let blk = Array(x[start..<min(start + 32, x.count)])
            let amax = blk.map { $0.magnitude }.max() ?? 0
            let d = amax / 127
            let q: [Int8] = (0..<32).map { i in
                guard i < blk.count, d != 0 else { return 0 }
                return Int8((blk[i] / d).rounded(.toNearestOrAwayFromZero))
            }
            return (Float16(d).bitPattern, q)
        }
    }

    @Test(arguments: [1, 7, 15, 16, 17, 31, 32, 33, 36, 63, 64, 65, 100, 1023, 1025])
    func quantizeMatchesDefinition(k: Int) {
        var rng = Rng(UInt64(k) &* 31)
        var x = rng.floats(k, scale: 3)
        if k > 40 { for i in 32..<min(64, k) { x[i] = 0 } } // an all-zero block
        let simd = Self.quantize(x, ref: false), ref = Self.quantize(x, ref: true)
        #expect(Self.bytes(simd) == Self.bytes(ref))
        let exp = Self.expected(x)
        #expect(exp.count == ref.count)
        for (b, e) in zip(ref, exp) {
            #expect(b.d == e.d)
            #expect(Self.qs(b) == e.q)
        }
        // Dequantize: SIMD == scalar == d * q.
        let dq = Self.dequantize(simd, k: k, ref: false)
        #expect(bits(dq) == bits(Self.dequantize(simd, k: k, ref: true)))
        let manual: [Float] = (0..<k).map { i in Float(Float16(bitPattern: exp[i / 32].d)) * Float(exp[i / 32].q[i % 32]) }
        #expect(bits(dq) == bits(manual))
        // Round trip error is at most half a step (plus the fp16 rounding of d).
        for i in 0..<k {
            let amax = x[(i / 32 * 32)..<min(i / 32 * 32 + 32, k)].map(\.magnitude).max() ?? 0
            #expect(abs(dq[i] - x[i]) <= amax / 127 * 0.57 + 1e-6) // half a step + fp16(d) error
        }
    }

    @Test(arguments: [1, 7, 31, 32, 33, 36, 64, 65, 1023])
    func dotMatchesScalarAndFloat(k: Int) {
        var rng = Rng(UInt64(k) &+ 99)
        let a = Self.quantize(rng.floats(k, scale: 2), ref: true)
        let b = Self.quantize(rng.floats(k, scale: 0.5), ref: true)
        let (simd, ref) = a.withUnsafeBufferPointer { pa in b.withUnsafeBufferPointer { pb in
            (vck_dot_q8_0(pa.baseAddress, pb.baseAddress, k), vck_dot_q8_0_ref(pa.baseAddress, pb.baseAddress, k))
        } }
        #expect(simd.bitPattern == ref.bitPattern)
        let fa = Self.dequantize(a, k: k, ref: true), fb = Self.dequantize(b, k: k, ref: true)
        let exact = zip(fa, fb).reduce(0.0) { $0 + Double($1.0) * Double($1.1) }
        #expect(abs(Double(ref) - exact) <= 1e-5 * max(1, abs(exact)))
    }

    @Test func partialLastBlockIsZeroPadded() {
        let x: [Float] = (0..<36).map { Float($0) - 10 } // K = 36: one full block + 4 values
        for ref in [true, false] {
            let q = Self.quantize(x, ref: ref)
            #expect(q.count == 2)
            #expect(Self.qs(q[1])[4...].allSatisfy { $0 == 0 })
            // block 1 holds 22...25: d = 25/127, q = round(v * 127 / 25)
            #expect(Self.qs(q[1])[0..<4] == [112, 117, 122, 127])
        }
        #expect(vck_q8_0_row_bytes(36) == 68)
        #expect(vck_q8_0_row_bytes(32) == 34)
        #expect(vck_q8_0_row_bytes(1) == 34)
    }

    @Test func nonFiniteInputsAreDefined() {
        var x = [Float](repeating: 0.5, count: 64)
        x[3] = .nan; x[40] = .infinity
        let s = Self.quantize(x, ref: false), r = Self.quantize(x, ref: true)
        #expect(Self.bytes(s) == Self.bytes(r))
        #expect(Self.qs(r[0])[3] == 0)            // NaN quantizes to 0, the rest of the block is intact
        #expect(Self.qs(r[0])[0] == 127)
        #expect(r[1].d == 0x7c00)                 // an infinite amax gives an infinite scale
    }
}

@Suite("CRC-32C")
struct CRCTests {
    static func crc(_ b: [UInt8], _ initial: UInt32 = 0, ref: Bool) -> UInt32 {
        b.withUnsafeBytes { ref ? vck_crc32c_ref(initial, $0.baseAddress, $0.count) : vck_crc32c(initial, $0.baseAddress, $0.count) }
    }

    @Test func standardCheckValue() {
        let s = Array("123456789".utf8)
        #expect(Self.crc(s, ref: true) == 0xE306_9283)
        #expect(Self.crc(s, ref: false) == 0xE306_9283)
        #expect(Self.crc([], ref: false) == 0)
        // RFC 3720 B.4: 32 bytes of zeros -> 0x8A9136AA, 32 bytes of 0xFF -> 0x62A8AB43
        #expect(Self.crc([UInt8](repeating: 0, count: 32), ref: false) == 0x8A91_36AA)
        #expect(Self.crc([UInt8](repeating: 0xff, count: 32), ref: false) == 0x62A8_AB43)
    }

    @Test(arguments: awkwardSizes)
    func simdMatchesScalarAndContinues(n: Int) {
        var rng = Rng(UInt64(n))
        let b = (0..<n).map { _ in UInt8(truncatingIfNeeded: rng.next()) }
        let whole = Self.crc(b, ref: false)
        #expect(whole == Self.crc(b, ref: true))
        let cut = n / 3
        let part = Self.crc(Array(b[cut...]), Self.crc(Array(b[..<cut]), ref: false), ref: false)
        #expect(part == whole)
        #expect(withFeatures(0) { Self.crc(b, ref: false) } == whole)
    }
}
