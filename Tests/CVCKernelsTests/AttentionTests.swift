import CVCKernels
import Foundation
import Testing

/// Attention against the double-precision reference `vck_attention_ref`, and the reference against
/// a hand-computed case.
@Suite("attention")
struct AttentionTests {
    struct Layout: Sendable, CustomTestStringConvertible {
        var nseq, heads, sq, sk, d: Int
        var temporal: Bool // rows strided across the sequence index, like (b t) hw c -> (b hw) t c
        var causal: Bool
        var testDescription: String { "\(nseq)x\(heads)h sq\(sq) sk\(sk) d\(d)\(temporal ? " temporal" : "")\(causal ? " causal" : "")" }
    }
    static let layouts: [Layout] = [
        Layout(nseq: 1, heads: 1, sq: 1, sk: 1, d: 1, temporal: false, causal: false),
        Layout(nseq: 2, heads: 3, sq: 7, sk: 5, d: 16, temporal: false, causal: false),
        Layout(nseq: 3, heads: 2, sq: 33, sk: 77, d: 17, temporal: false, causal: false),
        Layout(nseq: 1, heads: 8, sq: 65, sk: 65, d: 64, temporal: false, causal: false),
        Layout(nseq: 6, heads: 2, sq: 16, sk: 16, d: 40, temporal: true, causal: false),
        Layout(nseq: 5, heads: 4, sq: 9, sk: 9, d: 8, temporal: true, causal: true),
        Layout(nseq: 2, heads: 2, sq: 77, sk: 77, d: 32, temporal: false, causal: true),
        Layout(nseq: 1, heads: 1, sq: 40, sk: 300, d: 64, temporal: false, causal: false),
    ]

    @Test(arguments: layouts)
    func matchesReference(l: Layout) {
        let c = l.heads * l.d
        // Contiguous: sequence s, row i at (s*rows + i)*c. Temporal: frames i of pixel s at (i*nseq + s)*c.
        let (qSeq, qRow) = l.temporal ? (c, l.nseq * c) : (l.sq * c, c)
        let (kSeq, kRow) = l.temporal ? (c, l.nseq * c) : (l.sk * c, c)
        var rng = Rng(UInt64(l.sq * 100 + l.sk))
        let q = rng.floats(l.nseq * l.sq * c, scale: 2), k = rng.floats(l.nseq * l.sk * c, scale: 2)
        let v = rng.floats(l.nseq * l.sk * c)
        let scale = 1 / Float(l.d).squareRoot()
        func run(_ ref: Bool) -> [Float] {
            var o = [Float](repeating: .nan, count: l.nseq * l.sq * c)
            o.withUnsafeMutableBufferPointer { op in
                let f = ref ? vck_attention_ref : vck_attention
                f(Int64(l.nseq), Int64(l.heads), Int64(l.sq), Int64(l.sk), Int64(l.d),
                  q, Int64(qSeq), Int64(qRow), k, Int64(kSeq), Int64(kRow), v, Int64(kSeq), Int64(kRow),
                  op.baseAddress, Int64(qSeq), Int64(qRow), scale, l.causal ? 1 : 0)
            }
            return o
        }
        let ref = run(true)
        #expect(!ref.contains { $0.isNaN })
        #expect(maxAbsDiff(run(false), ref) < 2e-6)
        #expect(maxAbsDiff(withFeatures(0) { run(false) }, ref) < 2e-6)
    }

    /// One head, two keys: softmax([q.k0, q.k1] * scale) weights the two value rows.
    @Test func handComputed() {
        let q: [Float] = [1, 0], k: [Float] = [1, 0, 0, 1], v: [Float] = [10, 0, 0, 20]
        var o: [Float] = [0, 0]
        o.withUnsafeMutableBufferPointer {
            vck_attention_ref(1, 1, 1, 2, 2, q, 2, 2, k, 4, 2, v, 4, 2, $0.baseAddress, 2, 2, 2, 0)
        }
        let w0 = exp(2.0) / (exp(2.0) + 1) // scores 2 and 0
        #expect(abs(Double(o[0]) - 10 * w0) < 1e-5)
        #expect(abs(Double(o[1]) - 20 * (1 - w0)) < 1e-5)
        // Causal: the first query sees only the first key.
        o.withUnsafeMutableBufferPointer {
            vck_attention(1, 1, 1, 2, 2, q, 2, 2, k, 4, 2, v, 4, 2, $0.baseAddress, 2, 2, 2, 1)
        }
        #expect(o == [10, 0])
    }
}

@Suite("layout helpers")
struct LayoutTests {
    @Test(arguments: [(1, 1, 1, 1), (2, 3, 5, 7), (1, 4, 4, 33)])
    func upsampleNearest(n: Int, h: Int, w: Int, c: Int) {
        var rng = Rng(UInt64(h * w * c))
        let x = rng.floats(n * h * w * c)
        var y = [Float](repeating: .nan, count: n * 4 * h * w * c)
        y.withUnsafeMutableBufferPointer { vck_upsample_nearest2x(x, Int64(n), Int64(h), Int64(w), Int64(c), $0.baseAddress) }
        var bad = 0
        for b in 0..<n { for oy in 0..<2 * h { for ox in 0..<2 * w { for ch in 0..<c
            where y[((b * 2 * h + oy) * 2 * w + ox) * c + ch] != x[((b * h + oy / 2) * w + ox / 2) * c + ch] { bad += 1 } } } }
        #expect(bad == 0)
    }

    @Test func concatChannels() {
        var y = [Float](repeating: 0, count: 10)
        y.withUnsafeMutableBufferPointer { vck_concat_channels([1, 2, 3, 4], 2, [5, 6, 7, 8, 9, 10], 3, 2, $0.baseAddress) }
        #expect(y == [1, 2, 5, 6, 7, 3, 4, 8, 9, 10])
    }

    @Test(arguments: [(1, 1), (1, 9), (3, 2), (33, 65), (64, 64), (100, 7)])
    func transpose(rows: Int, cols: Int) {
        let x = (0..<rows * cols).map(Float.init)
        var y = [Float](repeating: .nan, count: x.count)
        y.withUnsafeMutableBufferPointer { vck_transpose(x, Int64(rows), Int64(cols), $0.baseAddress) }
        var bad = 0
        for i in 0..<rows { for j in 0..<cols where y[j * rows + i] != x[i * cols + j] { bad += 1 } }
        #expect(bad == 0)
    }
}
