import CVCKernels
import Testing

/// vck_attention (flash tiles, online softmax) against vck_attention_ref (full score rows, double
/// accumulation) at awkward sizes, strided layouts and with the causal mask, on the AVX-512 path
/// and the portable path.
@Suite("Flash attention kernel")
struct AttentionKernelTests {
    /// Deterministic values in [-1, 1).
    static func values(_ n: Int, seed: UInt64) -> [Float] {
        var x = [Float](repeating: 0, count: n)
        vck_fill_uniform(&x, n, seed, -1, 1)
        return x
    }

    struct Layout {
        var seqStride: Int
        var rowStride: Int
        var count: Int
    }

    /// Runs kernel and reference on the same operands; returns (max |diff|, max |ref|) and checks
    /// that padding elements of the output were not touched.
    static func compare(nseq: Int, heads: Int, sq: Int, sk: Int, d: Int, scale: Float, causal: Bool,
                        qL: Layout, kL: Layout, oL: Layout, offset: Int = 0) -> (Double, Double, Bool) {
        let q = values(qL.count, seed: 11), k = values(kL.count, seed: 12), v = values(kL.count, seed: 13)
        let canary: Float = 12345
        var out = [Float](repeating: canary, count: oL.count)
        var ref = [Float](repeating: canary, count: oL.count)
        q.withUnsafeBufferPointer { qp in k.withUnsafeBufferPointer { kp in v.withUnsafeBufferPointer { vp in
            out.withUnsafeMutableBufferPointer { op in
                vck_attention(Int64(nseq), Int64(heads), Int64(sq), Int64(sk), Int64(d),
                              qp.baseAddress! + offset, Int64(qL.seqStride), Int64(qL.rowStride),
                              kp.baseAddress! + offset, Int64(kL.seqStride), Int64(kL.rowStride),
                              vp.baseAddress! + offset, Int64(kL.seqStride), Int64(kL.rowStride),
                              op.baseAddress! + offset, Int64(oL.seqStride), Int64(oL.rowStride), scale, causal ? 1 : 0)
            }
            ref.withUnsafeMutableBufferPointer { rp in
                vck_attention_ref(Int64(nseq), Int64(heads), Int64(sq), Int64(sk), Int64(d),
                                  qp.baseAddress! + offset, Int64(qL.seqStride), Int64(qL.rowStride),
                                  kp.baseAddress! + offset, Int64(kL.seqStride), Int64(kL.rowStride),
                                  vp.baseAddress! + offset, Int64(kL.seqStride), Int64(kL.rowStride),
                                  rp.baseAddress! + offset, Int64(oL.seqStride), Int64(oL.rowStride), scale, causal ? 1 : 0)
            }
        } } }
        var maxDiff = 0.0, maxRef = 0.0, untouchedSame = true
        for i in 0..<oL.count {
            if ref[i] == canary || out[i] == canary {
                if ref[i] != out[i] { untouchedSame = false }
                continue
            }
            maxDiff = max(maxDiff, Double(abs(out[i] - ref[i])))
            if out[i].isNaN { maxDiff = .infinity }
            maxRef = max(maxRef, Double(abs(ref[i])))
        }
        return (maxDiff, maxRef, untouchedSame)
    }

    /// Contiguous [nseq, rows, heads*d] operands with a gap of 3 floats after each row.
    static func packed(nseq: Int, rows: Int, width: Int) -> Layout {
        let rowStride = width + 3
        return Layout(seqStride: rows * rowStride, rowStride: rowStride, count: nseq * rows * rowStride)
    }

    static let sizes = [1, 7, 16, 17, 77, 100]

    @Test(arguments: [16, 64, 40])
    func awkwardSizesMatchTheReference(d: Int) {
        for mask in [UInt32.max, 0] {
            vck_cpu_set_mask(mask)
            defer { vck_cpu_set_mask(.max) }
            for sq in Self.sizes {
                for sk in Self.sizes {
                    let heads = 2, nseq = 2
                    for scale: Float in [1 / Float(d).squareRoot(), 3] {
                        let (diff, refMax, same) = Self.compare(
                            nseq: nseq, heads: heads, sq: sq, sk: sk, d: d, scale: scale, causal: false,
                            qL: Self.packed(nseq: nseq, rows: sq, width: heads * d),
                            kL: Self.packed(nseq: nseq, rows: sk, width: heads * d),
                            oL: Self.packed(nseq: nseq, rows: sq, width: heads * d))
                        #expect(diff <= 1e-5 * max(refMax, 1), "mask \(mask) sq \(sq) sk \(sk) d \(d) scale \(scale): max diff \(diff)")
                        #expect(same, "sq \(sq) sk \(sk) d \(d): padding written")
                    }
                }
            }
        }
    }

    @Test func causalMatchesTheReference() {
        for mask in [UInt32.max, 0] {
            vck_cpu_set_mask(mask)
            defer { vck_cpu_set_mask(.max) }
            for (sq, sk) in [(1, 1), (7, 7), (16, 16), (17, 17), (77, 77), (100, 100), (130, 130), (17, 40), (40, 17), (100, 7)] {
                for d in [16, 40, 64] {
                    let (diff, refMax, same) = Self.compare(
                        nseq: 3, heads: 2, sq: sq, sk: sk, d: d, scale: 0.7, causal: true,
                        qL: Self.packed(nseq: 3, rows: sq, width: 2 * d),
                        kL: Self.packed(nseq: 3, rows: sk, width: 2 * d),
                        oL: Self.packed(nseq: 3, rows: sq, width: 2 * d))
                    #expect(diff <= 1e-5 * max(refMax, 1), "causal mask \(mask) sq \(sq) sk \(sk) d \(d): max diff \(diff)")
                    #expect(same)
                }
            }
        }
    }

    /// The temporal pattern: frames x pixels x channels, one sequence per pixel (sequence stride
    /// C, row stride pixels*C), heads side by side in the channels, at an offset into the buffer.
    @Test func stridedTemporalLayoutMatchesTheReference() {
        let frames = 16, pixels = 37, heads = 5, d = 64, c = heads * d
        let l = Layout(seqStride: c, rowStride: pixels * c, count: frames * pixels * c + 10)
        let (diff, refMax, same) = Self.compare(nseq: pixels, heads: heads, sq: frames, sk: frames, d: d,
                                                scale: 0.125, causal: false, qL: l, kL: l, oL: l, offset: 10)
        #expect(diff <= 1e-5 * max(refMax, 1), "temporal: max diff \(diff)")
        #expect(same)
        // Cross-attention style: the keys of every sequence are the same rows (sequence stride 0).
        let kv = Layout(seqStride: 0, rowStride: c, count: 77 * c)
        let ql = Layout(seqStride: 300 * c, rowStride: c, count: 3 * 300 * c)
        let (diff2, refMax2, _) = Self.compare(nseq: 3, heads: heads, sq: 300, sk: 77, d: d, scale: 0.125, causal: false,
                                               qL: ql, kL: kv, oL: ql)
        #expect(diff2 <= 1e-5 * max(refMax2, 1), "shared keys: max diff \(diff2)")
    }

    /// Several key blocks with a sharp softmax: the running max changes between blocks, so the
    /// rescaling of earlier partial sums is exercised.
    @Test func longSequencesWithSharpScoresMatchTheReference() {
        for (sq, sk) in [(300, 1000), (64, 257), (129, 130)] {
            let d = 64, heads = 1
            let (diff, refMax, _) = Self.compare(nseq: 1, heads: heads, sq: sq, sk: sk, d: d, scale: 2,
                                                 causal: false,
                                                 qL: Self.packed(nseq: 1, rows: sq, width: d),
                                                 kL: Self.packed(nseq: 1, rows: sk, width: d),
                                                 oL: Self.packed(nseq: 1, rows: sq, width: d))
            #expect(diff <= 1e-5 * max(refMax, 1), "sq \(sq) sk \(sk): max diff \(diff)")
        }
    }
}
