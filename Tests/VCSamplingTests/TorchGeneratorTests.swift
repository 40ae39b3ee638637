import Foundation
import Testing
import VCFormats
import VCTensor
import VCTestSupport
@testable import VCSampling

/// Loads a golden tensor as floats (fails the test when missing).
func golden(_ file: SafetensorsFile, _ name: String) throws -> [Float] {
    try #require(try file.tensor(named: name), "golden tensor \(name) missing").floats()
}

/// Number of positions whose bit patterns differ.
func bitMismatches(_ a: [Float], _ b: [Float]) -> Int {
    zip(a, b).filter { $0.bitPattern != $1.bitPattern }.count + abs(a.count - b.count)
}

@Suite("TorchGenerator reproduces torch.manual_seed + torch.randn (CPU, float32)")
struct TorchGeneratorTests {
    static let shapes: [(name: String, count: Int)] = [
        ("7", 7), ("16", 16), ("3x5", 15), ("1x4x5x8x16", 2560), ("17", 17), ("5x7", 35),
    ]

    @Test("mt19937 matches the C++ standard's check value")
    func mt19937MatchesStandard() {
        // [rand.predef]: the 10000th output of a default-constructed mt19937 (seed 5489) is 4123659995.
        var g = TorchGenerator(seed: 5489)
        var last: UInt32 = 0
        for _ in 0..<10_000 { last = g.nextUInt32() }
        #expect(last == 4_123_659_995)
    }

    @Test("fresh seed, every golden shape, bit for bit", arguments: [UInt64(0), 42, 123])
    func singleDraws(seed: UInt64) throws {
        let g0 = try Fixtures.golden()
        for (name, count) in Self.shapes {
            var g = TorchGenerator(seed: seed)
            let got = g.randn(count: count)
            let want = try golden(g0, "rng.seed\(seed).\(name)")
            #expect(bitMismatches(got, want) == 0, "seed \(seed) shape \(name)")
        }
    }

    @Test("one seed, six consecutive calls (state and cached normal carried over)")
    func sequence() throws {
        let g0 = try Fixtures.golden()
        var g = TorchGenerator(seed: 123)
        let calls: [(String, Int)] = [("7", 7), ("16", 16), ("3x5", 15), ("1x4x5x8x16", 2560), ("7", 7), ("17", 17)]
        for (k, (name, count)) in calls.enumerated() {
            let got = g.randn(count: count)
            let want = try golden(g0, "rng.seq123.call\(k).\(name)")
            #expect(bitMismatches(got, want) == 0, "call \(k) shape \(name)")
        }
    }

    @Test("the cached sine half is used by the next small draw")
    func cachedNormalCarriesOver() {
        var a = TorchGenerator(seed: 9)
        let first = a.randn(count: 1)          // uses cos, caches sin
        let second = a.randn(count: 1)         // the cached sin, no new words
        var b = TorchGenerator(seed: 9)
        let pair = b.randn(count: 2)
        #expect(first + second == pair)
        // 16 or more values never touch the cache: a 16-draw in between leaves it in place.
        var c = TorchGenerator(seed: 9)
        _ = c.randn(count: 1)
        _ = c.randn(count: 16)
        #expect(c.randn(count: 1) == second)
    }

    @Test("the sampler's draw order: x_T, then one draw per step (seed 123)")
    func samplerNoiseOrder() throws {
        let g0 = try Fixtures.golden()
        var g = TorchGenerator(seed: 123)
        let names = ["sample.x_T"] + (0..<4).map { "sample.step\($0).noise" }
        for name in names {
            #expect(bitMismatches(g.randn(count: 2560), try golden(g0, name)) == 0, "\(name)")
        }
    }

    @Test("AVX2-kernel log and sincos stay close to libm on the ranges randn uses")
    func mathFunAccuracy() {
        var worstLog: Float = 0, worstSin: Float = 0, worstCos: Float = 0
        for i in 1...4096 {
            let u = Float(i) / 4096
            let l = AVXMathFun.log(u)
            worstLog = max(worstLog, abs(l - Float(Foundation.log(Double(u)))) / max(abs(l), 1e-3))
            let th = Float(2 * Double.pi) * (Float(i - 1) / 4096)
            let (s, c) = AVXMathFun.sincos(th)
            worstSin = max(worstSin, abs(s - Float(Foundation.sin(Double(th)))))
            worstCos = max(worstCos, abs(c - Float(Foundation.cos(Double(th)))))
        }
        #expect(worstLog < 1e-6)
        #expect(worstSin < 1e-6)
        #expect(worstCos < 1e-6)
        #expect(AVXMathFun.log(0).isNaN && AVXMathFun.log(-1).isNaN)
    }

    @Test("portable kernel: same words consumed, values within 1e-5 of the AVX2 kernel")
    func portableKernelIsClose() {
        var a = TorchGenerator(seed: 42, kernel: .avx2)
        var b = TorchGenerator(seed: 42, kernel: .portable)
        let x = a.randn(count: 1000), y = b.randn(count: 1000)
        let worst = zip(x, y).map { abs($0 - $1) }.max() ?? 1
        #expect(worst < 1e-5)
        #expect(a.nextUInt32() == b.nextUInt32())
    }

    @Test("randn moments over many values; empty draw")
    func moments() {
        var g = TorchGenerator(seed: 1)
        let v = g.randn(count: 100_000).map(Double.init)
        let mean = v.reduce(0, +) / Double(v.count)
        let variance = v.map { ($0 - mean) * ($0 - mean) }.reduce(0, +) / Double(v.count)
        #expect(abs(mean) < 0.01)
        #expect(abs(variance - 1) < 0.02)
        #expect(g.randn(count: 0).isEmpty)
    }
}
