import Foundation
import Testing
@testable import VCTensor
import VCTestSupport

private func t(_ shape: [Int], _ v: [Float]) throws -> Tensor { try Tensor(shape: shape, floats: v) }

private func close(_ a: [Float], _ b: [Float], _ tol: Float = 1e-6) -> Bool {
    a.count == b.count && zip(a, b).allSatisfy { abs($0 - $1) <= tol * max(1, abs($1)) }
}

@Suite("Ops on hand-checked cases")
struct OpsTests {
    @Test func linearEveryWeightType() throws {
        // x = [[1, 2, 3], [0, -1, 4]], W = [[1, 0, -1], [2, 1, 0.5]], b = [0.5, -1]
        let x = try t([2, 3], [1, 2, 3, 0, -1, 4])
        let w = try t([2, 3], [1, 0, -1, 2, 1, 0.5])
        let b = try t([2], [0.5, -1])
        let expected: [Float] = [1 - 3 + 0.5, 2 + 2 + 1.5 - 1, -4 + 0.5, -1 + 2 - 1]
        for dtype in [DType.f32, .f16, .bf16] { // these weights are exact in every type
            #expect(try Ops.linear(x, w.converted(to: dtype), b).floats() == expected, "\(dtype)")
        }
        // q8_0: d = amax/127 per row, so the weights are only close.
        #expect(close(try Ops.linear(x, w.converted(to: .q8_0), b).floats(), expected, 2e-2))
        // A 1x1 conv weight [N, K, 1, 1] is a linear weight; leading dims of x are kept.
        let y = try Ops.linear(x.reshaped([1, 2, 3]), w.reshaped([2, 3, 1, 1]))
        #expect(y.shape == [1, 2, 2])
        #expect(y.floats() == [-2, 5.5, -4, 1])
    }

    @Test func matmulWithTransposes() throws {
        let a = try t([2, 3], [1, 2, 3, 4, 5, 6])
        let b = try t([3, 2], [1, 0, 0, 1, 1, 1])
        #expect(try Ops.matmul(a, b).floats() == [4, 5, 10, 11])
        #expect(try Ops.matmul(a, a, transposeB: true).floats() == [14, 32, 32, 77])
        #expect(try Ops.matmul(a, a, transposeA: true).floats() == [17, 22, 27, 22, 29, 36, 27, 36, 45])
    }

    @Test func conv2dHandChecked() throws {
        // 3x3 single-channel image 1...9, a 3x3 kernel of ones, padding 1: neighbourhood sums.
        let x = try t([1, 3, 3, 1], (1...9).map(Float.init))
        let w = try t([1, 1, 3, 3], [Float](repeating: 1, count: 9))
        #expect(try Ops.conv2d(x, w, nil).floats() == [12, 21, 16, 27, 45, 33, 24, 39, 28])
        let s2 = try Ops.conv2d(x, w, try t([1], [1]), stride: 2, padding: 1)
        #expect(s2.shape == [1, 2, 2, 1])
        #expect(s2.floats() == [13, 17, 25, 29])
        // Two input channels, 1x1: a per-pixel weighted sum (channels-last in, channels-last out).
        let x2 = try t([1, 1, 2, 2], [1, 10, 2, 20])
        let w2 = try t([3, 2, 1, 1], [1, 0, 0, 1, 1, 1])
        #expect(try Ops.conv2d(x2, w2, nil, padding: 0).floats() == [1, 10, 11, 2, 20, 22])
    }

    /// conv_in of the golden UNet: input_blocks.0 is a 3x3 conv of each frame of unet.x.
    @Test func conv2dMatchesGoldenConvIn() throws {
        let golden = try Fixtures.golden(), model = try Fixtures.tinyModel()
        let x = try #require(try golden.tensor(named: "unet.x"))                       // [1, 4, 5, 8, 16]
        let expected = try #require(try golden.tensor(named: "unet.t981.input_blocks.0")) // [5, 32, 8, 16]
        let w = try #require(try model.tensor(named: "model.diffusion_model.input_blocks.0.0.weight"))
        let b = try #require(try model.tensor(named: "model.diffusion_model.input_blocks.0.0.bias"))
        // [1, 4, T, H, W] -> [T, H, W, 4]: channels-last of the 4 x (T*H*W) matrix, viewed per frame.
        let frames = try Ops.channelsLast(x.reshaped([1, 4, 5 * 8 * 16])).reshaped([5, 8, 16, 4])
        let y = try Ops.channelsFirst(Ops.conv2d(frames, w, b))
        let c = Comparison(y.floats(), expected.floats())
        #expect(c.relRMS < 1e-6, "\(c)")
        for dtype in [DType.f16, .bf16, .q8_0] {
            let q = Comparison(try Ops.channelsFirst(Ops.conv2d(frames, w.converted(to: dtype), b)).floats(), expected.floats())
            #expect(q.relRMS < (dtype == .f16 ? 2e-3 : 2e-2), "\(dtype): \(q)")
        }
    }

    @Test func temporalConvHandChecked() throws {
        // 1 sequence of 3 frames, 1 pixel, 1 channel; kernel [1, 2, 3] -> y[t] = x[t-1] + 2x[t] + 3x[t+1]
        let x = try t([3, 1, 1, 1], [1, 10, 100])
        let w = try t([1, 1, 3, 1, 1], [1, 2, 3])
        #expect(try Ops.convTemporal(x, frames: 3, w, try t([1], [0.5])).floats() == [32.5, 321.5, 210.5])
        // Two sequences of 2 frames stay separate.
        let x2 = try t([4, 1, 1, 1], [1, 2, 3, 4])
        #expect(try Ops.convTemporal(x2, frames: 2, w, nil).floats() == [8, 5, 18, 11])
    }

    @Test func normsHandChecked() throws {
        // GroupNorm, one group over two channels of two rows: values 1, 3, 5, 7 -> mean 4, var 5.
        let x = try t([2, 2], [1, 3, 5, 7])
        let r = 1 / (5 + Float(1e-5)).squareRoot()
        #expect(close(try Ops.groupNorm(x, samples: 1, groups: 1, weight: nil, bias: nil, eps: 1e-5).floats(),
                      [-3 * r, -r, r, 3 * r]))
        // Two groups (one channel each) over the 2 rows: channel 0 {1, 5}, channel 1 {3, 7}.
        let g2 = try Ops.groupNorm(x, samples: 1, groups: 2, weight: try t([2], [2, 1]), bias: try t([2], [0, 1]), eps: 0)
        #expect(close(g2.floats(), [-2, 0, 2, 2]))
        // samples = 2: each row is its own sample (per-frame statistics).
        #expect(close(try Ops.groupNorm(x, samples: 2, groups: 1, weight: nil, bias: nil, eps: 0).floats(), [-1, 1, -1, 1]))
        // With SiLU: silu(-1) and silu(1).
        let s = try Ops.groupNorm(x, samples: 2, groups: 1, weight: nil, bias: nil, eps: 0, activation: .silu)
        #expect(close(s.floats(), [-0.26894142, 0.7310586, -0.26894142, 0.7310586]))
        // LayerNorm per row.
        let ln = try Ops.layerNorm(try t([2, 2], [1, 3, 10, 10]), weight: try t([2], [1, 2]), bias: try t([2], [0, 1]), eps: 0)
        #expect(close(Array(ln.floats()[0..<2]), [-1, 3]))
    }

    @Test func pointwiseHandChecked() throws {
        #expect(close(try Ops.softmax(try t([2, 2], [0, log(3), 5, 5])).floats(), [0.25, 0.75, 0.5, 0.5]))
        #expect(close(try Ops.silu(try t([3], [0, 1, -1])).floats(), [0, 0.7310586, -0.26894142]))
        #expect(close(try Ops.gelu(try t([3], [0, 1, -1])).floats(), [0, 0.8413447, -0.15865526]))
        // GEGLU: value half first, gate half second: [2, 3 | 1, 0] -> [2 gelu(1), 3 gelu(0)]
        #expect(close(try Ops.geglu(try t([1, 4], [2, 3, 1, 0])).floats(), [1.6826894, 0]))
        #expect(try Ops.add(try t([2], [1, 2]), try t([2], [3, 4])).floats() == [4, 6])
        #expect(try Ops.addRowVector(try t([2, 2], [1, 2, 3, 4]), try t([2], [10, 20])).floats() == [11, 22, 13, 24])
        #expect(try Ops.scale(try t([2], [1, -2]), 3).floats() == [3, -6])
    }

    @Test func attentionHandChecked() throws {
        // One head, one query [1, 0], keys [1, 0] and [0, 1], values [10, 0] and [0, 20]; scale 1/sqrt 2.
        let q = try t([1, 2], [1, 0]), k = try t([2, 2], [1, 0, 0, 1]), v = try t([2, 2], [10, 0, 0, 20])
        let o = try Ops.attention(q: q, k: k, v: v, sequences: 1, heads: 1).floats()
        let w0 = Float(exp(1 / 2.0.squareRoot()) / (exp(1 / 2.0.squareRoot()) + 1))
        #expect(close(o, [10 * w0, 20 * (1 - w0)]))
        #expect(try Ops.attention(q: q, k: k, v: v, sequences: 1, heads: 1, causal: true).floats() == [10, 0])
        // Two heads of width 1 are independent.
        let q2 = try t([1, 2], [1, 1]), k2 = try t([2, 2], [0, 0, 0, 0]), v2 = try t([2, 2], [1, 2, 3, 4])
        #expect(close(try Ops.attention(q: q2, k: k2, v: v2, sequences: 1, heads: 2).floats(), [2, 3]))
    }

    @Test func layoutHandChecked() throws {
        let x = try t([1, 1, 2, 2], [1, 2, 3, 4])
        // N=1, H=1, W=2, C=2: pixels [1, 2] and [3, 4] -> 2 x 4 pixels
        #expect(try Ops.upsampleNearest2x(x).floats() == [1, 2, 1, 2, 3, 4, 3, 4, 1, 2, 1, 2, 3, 4, 3, 4])
        #expect(try Ops.concatChannels(try t([2, 1], [1, 2]), try t([2, 2], [3, 4, 5, 6])).floats() == [1, 3, 4, 2, 5, 6])
        // [1, C=2, H=1, W=3] channels-first -> [1, 1, 3, 2] channels-last and back.
        let cf = try t([1, 2, 1, 3], [1, 2, 3, 10, 20, 30])
        let cl = try Ops.channelsLast(cf)
        #expect(cl.shape == [1, 1, 3, 2])
        #expect(cl.floats() == [1, 10, 2, 20, 3, 30])
        let back = try Ops.channelsFirst(cl)
        #expect(back.shape == cf.shape && back.floats() == cf.floats())
        let table = try t([3, 2], [0, 1, 10, 11, 20, 21])
        #expect(try Ops.gatherRows(table, [2, 0, 2]).floats() == [20, 21, 0, 1, 20, 21])
        #expect(try Ops.gatherRows(table.converted(to: .f16), [1]).floats() == [10, 11])
    }

    @Test func threadsSetting() {
        let saved = Ops.threads
        defer { Ops.setThreads(saved) }
        Ops.setThreads(3)
        #expect(Ops.threads == 3)
        Ops.setThreads(0)
        #expect(Ops.threads == ProcessInfo.processInfo.activeProcessorCount)
    }
}

@Suite("Ops shape errors are thrown")
struct OpsErrorTests {
    static func throwsTensorError(_ body: () throws -> Any) -> Bool {
        do { _ = try body(); return false } catch is TensorError { return true } catch { return false }
    }

    @Test func badShapesThrow() throws {
        let x23 = try t([2, 3], [Float](repeating: 1, count: 6))
        let w = try t([4, 2], [Float](repeating: 1, count: 8))
        let img = try t([1, 4, 4, 2], [Float](repeating: 1, count: 32))
        let cases: [(String, () throws -> Any)] = [
            ("linear k", { try Ops.linear(x23, w) }),
            ("linear scalar", { try Ops.linear(try t([], [1]), w) }),
            ("linear bias", { try Ops.linear(x23, try t([4, 3], [Float](repeating: 1, count: 12)), try t([3], [1, 2, 3])) }),
            ("linear f16 input", { try Ops.linear(x23.converted(to: .f16), x23) }),
            ("linear i32 weight", { try Ops.linear(x23, try Tensor(shape: [2, 3], dtype: .i32, bytes: [UInt8](repeating: 0, count: 24))) }),
            ("matmul inner", { try Ops.matmul(x23, x23) }),
            ("matmul rank", { try Ops.matmul(x23.reshaped([6]), x23) }),
            ("conv2d cin", { try Ops.conv2d(img, try t([1, 3, 3, 3], [Float](repeating: 1, count: 27)), nil) }),
            ("conv2d rank", { try Ops.conv2d(x23, try t([1, 3, 1, 1], [1, 1, 1]), nil) }),
            ("conv2d stride 0", { try Ops.conv2d(img, try t([1, 2, 3, 3], [Float](repeating: 1, count: 18)), nil, stride: 0) }),
            ("conv2d negative padding", { try Ops.conv2d(img, try t([1, 2, 3, 3], [Float](repeating: 1, count: 18)), nil, padding: -1) }),
            ("conv2d kernel too big", { try Ops.conv2d(img, try t([1, 2, 7, 7], [Float](repeating: 1, count: 98)), nil, padding: 1) }),
            ("temporal frames", { try Ops.convTemporal(img, frames: 3, try t([1, 2, 3, 1, 1], [Float](repeating: 1, count: 6)), nil) }),
            ("temporal even kernel", { try Ops.convTemporal(img, frames: 1, try t([1, 2, 2, 1, 1], [1, 1, 1, 1]), nil) }),
            ("group norm groups", { try Ops.groupNorm(x23, samples: 1, groups: 2, weight: nil, bias: nil, eps: 1e-5) }),
            ("group norm samples", { try Ops.groupNorm(x23, samples: 4, groups: 1, weight: nil, bias: nil, eps: 1e-5) }),
            ("group norm weight", { try Ops.groupNorm(x23, samples: 1, groups: 1, weight: try t([2], [1, 1]), bias: nil, eps: 1e-5) }),
            ("layer norm bias", { try Ops.layerNorm(x23, weight: nil, bias: try t([4], [1, 1, 1, 1]), eps: 1e-5) }),
            ("geglu odd", { try Ops.geglu(x23) }),
            ("add count", { try Ops.add(x23, w) }),
            ("row vector", { try Ops.addRowVector(x23, try t([2], [1, 1])) }),
            ("concat rows", { try Ops.concatChannels(x23, w) }),
            ("upsample rank", { try Ops.upsampleNearest2x(x23) }),
            ("channelsLast rank", { try Ops.channelsLast(x23) }),
            ("channelsFirst rank", { try Ops.channelsFirst(x23) }),
            ("gather range", { try Ops.gatherRows(x23, [2]) }),
            ("gather negative", { try Ops.gatherRows(x23, [-1]) }),
            ("attention heads", { try Ops.attention(q: x23, k: x23, v: x23, sequences: 1, heads: 2) }),
            ("attention sequences", { try Ops.attention(q: x23, k: x23, v: x23, sequences: 4, heads: 1) }),
            ("attention bounds", {
                try Ops.attention(sequences: 2, heads: 1, queries: 2, keys: 2, headDim: 3,
                                  q: .init(x23, seqStride: 6, rowStride: 3), k: .init(x23, seqStride: 0, rowStride: 3),
                                  v: .init(x23, seqStride: 0, rowStride: 3), out: .init(x23, seqStride: 0, rowStride: 3), scale: 1)
            }),
            ("attention negative stride", {
                try Ops.attention(sequences: 2, heads: 1, queries: 1, keys: 1, headDim: 3,
                                  q: .init(x23, offset: 3, seqStride: -3, rowStride: 3), k: .init(x23, seqStride: 0, rowStride: 3),
                                  v: .init(x23, seqStride: 0, rowStride: 3), out: .init(x23, seqStride: 3, rowStride: 3), scale: 1)
            }),
            ("attention empty", {
                try Ops.attention(sequences: 1, heads: 1, queries: 0, keys: 1, headDim: 3,
                                  q: .init(x23, seqStride: 0, rowStride: 3), k: .init(x23, seqStride: 0, rowStride: 3),
                                  v: .init(x23, seqStride: 0, rowStride: 3), out: .init(x23, seqStride: 0, rowStride: 3), scale: 1)
            }),
            ("softmax f16", { try Ops.softmax(x23.converted(to: .f16)) }),
        ]
        for (name, body) in cases {
            #expect(Self.throwsTensorError(body), "\(name) should throw a TensorError")
        }
    }
}

@Suite("PackedWeight")
struct PackedWeightTests {
    @Test func packedWeightsGiveTheSameBits() throws {
        var rng = SystemRandomNumberGenerator()
        let x = try Tensor(shape: [2, 5, 6, 7], floats: (0..<420).map { _ in Float.random(in: -1...1, using: &rng) })
        let wc = try Tensor(shape: [9, 7, 3, 3], floats: (0..<567).map { _ in Float.random(in: -0.2...0.2, using: &rng) })
        let wt = try Tensor(shape: [9, 7, 3, 1, 1], floats: (0..<189).map { _ in Float.random(in: -0.2...0.2, using: &rng) })
        let wl = try Tensor(shape: [11, 7], floats: (0..<77).map { _ in Float.random(in: -0.2...0.2, using: &rng) })
        let b = try Tensor(shape: [9], floats: (0..<9).map { Float($0) })
        let cache = PackedWeightCache()
        for dtype in [DType.f32, .f16, .bf16, .q8_0] {
            let c = try wc.converted(to: dtype), t = try wt.converted(to: dtype), l = try wl.converted(to: dtype)
            let pc = try cache.packed(c), pt = try PackedWeight(t), pl = try PackedWeight(l)
            #expect(try Ops.conv2d(x, pc, b, stride: 2).floats() == Ops.conv2d(x, c, b, stride: 2).floats(), "\(dtype)")
            #expect(try Ops.convTemporal(x, frames: 2, pt, b).floats() == Ops.convTemporal(x, frames: 2, t, b).floats(), "\(dtype)")
            #expect(try Ops.linear(x, pl).floats() == Ops.linear(x, l).floats(), "\(dtype)")
            #expect(pl.floats() == l.floats())
            #expect(pc.shape == [9, 7, 3, 3] && pc.dtype == dtype)
            #expect(try cache.packed(c) === pc) // packed once
            #expect(pl.byteCount >= 11 * 7)
            #expect(throws: TensorError.self) { try Ops.linear(x, pc) } // takes 63 inputs, not 7
        }
        #expect(cache.count == 4)
        #expect(throws: TensorError.self) { try PackedWeight(try Tensor(shape: [2], dtype: .i32, bytes: [UInt8](repeating: 0, count: 8))) }
        #expect(throws: TensorError.self) { try PackedWeight(Tensor(zeros: [0, 3])) }
    }

    /// Convolutions larger than one 8 MiB im2col chunk pack a tensor weight once for all chunks:
    /// the same bits as a weight packed beforehand, and close to the dequantized f32 product.
    @Test func convolutionsOverSeveralChunksMatchPackedWeights() throws {
        var rng = SystemRandomNumberGenerator()
        func rand(_ n: Int, _ s: Float) -> [Float] { (0..<n).map { _ in Float.random(in: -s...s, using: &rng) } }
        // 3x3: k = 576 -> 3,640 pixels per chunk; 1 x 50 x 80 = 4,000 pixels (two chunks).
        let x = try Tensor(shape: [1, 50, 80, 64], floats: rand(4000 * 64, 1))
        let wc32 = try Tensor(shape: [24, 64, 3, 3], floats: rand(24 * 576, 0.1))
        // (3,1,1) temporal: k = 768 -> 2,730 rows per chunk; 2 x 4 frames x 400 pixels = 3,200 rows.
        let xt = try Tensor(shape: [8, 20, 20, 256], floats: rand(3200 * 256, 1))
        let wt32 = try Tensor(shape: [16, 256, 3, 1, 1], floats: rand(16 * 768, 0.1))
        let b = try Tensor(shape: [24], floats: rand(24, 1)), bt = try Tensor(shape: [16], floats: rand(16, 1))
        for dtype in [DType.f32, .q8_0] {
            let wc = try wc32.converted(to: dtype), wt = try wt32.converted(to: dtype)
            let conv = try Ops.conv2d(x, wc, b)
            #expect(try conv.floats() == Ops.conv2d(x, try PackedWeight(wc), b).floats(), "\(dtype)")
            let tconv = try Ops.convTemporal(xt, frames: 4, wt, bt)
            #expect(try tconv.floats() == Ops.convTemporal(xt, frames: 4, try PackedWeight(wt), bt).floats(), "\(dtype)")
            // Spot check against the f32 convolution with the weight's own values.
            let f32 = try Ops.conv2d(x, try wc.converted(to: .f32), b).floats(), got = try conv.floats()
            let err = zip(f32, got).map { abs($0 - $1) }.max() ?? .infinity
            #expect(err < (dtype == .f32 ? 1e-4 : 0.05), "\(dtype): max error \(err)")
        }
    }
}

/// `Ops.withPackedWeights`: tensor weights used by `linear` inside the scope are packed once and
/// reused, with the same bits as without the scope, and the copies go when the scope ends.
@Suite("packing scope")
struct PackingScopeTests {
    @Test func scopedLinearsGiveTheSameBitsAndPackOnce() throws {
        var state: UInt64 = 5
        func floats(_ n: Int, scale: Float) -> [Float] {
            (0..<n).map { _ in
                state = state &* 6364136223846793005 &+ 1442695040888963407
                return (Float(state >> 40) / Float(1 << 24) * 2 - 1) * scale
            }
        }
        let x = try Tensor(shape: [37, 70], floats: floats(37 * 70, scale: 1))
        let bias = try Tensor(shape: [19], floats: floats(19, scale: 1))
        let w32 = try Tensor(shape: [19, 70], floats: floats(19 * 70, scale: 0.2))
        let y0 = try Tensor(shape: [37, 19], floats: floats(37 * 19, scale: 1))
        for dtype in [DType.f32, .f16, .bf16, .q8_0] {
            let w = try w32.converted(to: dtype)
            let plain = try Ops.linear(x, w, bias).floats()
            let accPlain = try Tensor(shape: [37, 19], floats: y0.floats()), intoPlain = Tensor(zeros: [37, 19])
            try Ops.linear(x, w, bias, accumulateInto: accPlain)
            try Ops.linear(x, w, bias, into: intoPlain)
            let (scoped, acc, into, packed) = try Ops.withPackedWeights { () throws -> ([Float], Tensor, Tensor, Int) in
                let a = try Ops.linear(x, w, bias).floats()
                let acc = try Tensor(shape: [37, 19], floats: y0.floats()), into = Tensor(zeros: [37, 19])
                try Ops.linear(x, w, bias, accumulateInto: acc)
                try Ops.linear(x, w, bias, into: into)
                // A weight that does not fit still fails with a shape error inside the scope.
                #expect(throws: TensorError.self) { try Ops.linear(x, try w32.reshaped([70, 19]).converted(to: dtype)) }
                return (a, acc, into, Ops.packingScope?.count ?? -1)
            }
            #expect(bits(scoped) == bits(plain), "\(dtype)")
            #expect(bits(try acc.floats()) == bits(try accPlain.floats()), "\(dtype) accumulate")
            #expect(bits(try into.floats()) == bits(try intoPlain.floats()), "\(dtype) into")
            #expect(packed == 2, "\(dtype): the weight packed once (and the mis-shaped one)")
            #expect(Ops.packingScope == nil)
        }
    }

    private func bits(_ a: [Float]) -> [UInt32] { a.map(\.bitPattern) }
}
