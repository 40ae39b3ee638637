import Testing
import VCTensor

@Suite struct ElementwiseExtraTests {
    @Test(arguments: [1, 7, 15, 16, 17, 31, 33, 1023, 4097, 9000])
    func mulMatchesScalarProducts(n: Int) throws {
        let a = (0..<n).map { Float($0 % 13) * 0.25 - 1.5 }
        let b = (0..<n).map { Float(($0 * 7) % 11) * -0.5 + 2 }
        let y = try Ops.mul(try Tensor(shape: [n], floats: a), try Tensor(shape: [n], floats: b))
        #expect(y.floats() == zip(a, b).map { $0 * $1 })
    }

    @Test(arguments: [1, 7, 17, 33, 1023, 4096, 4097, 9000])
    func firstNonFiniteFindsTheFirstBadValue(n: Int) throws {
        var v = [Float](repeating: 0.5, count: n)
        #expect(try Tensor(shape: [n], floats: v).firstNonFinite() == nil)
        for (pos, bad) in [(n - 1, Float.nan), (n / 2, Float.infinity), (0, -Float.infinity)] {
            v[pos] = bad
            #expect(try Tensor(shape: [n], floats: v).firstNonFinite() == pos)
        }
        // f16 storage is scanned too (inf survives the conversion).
        let h = try Tensor(shape: [n], floats: v).converted(to: .f16)
        #expect(h.firstNonFinite() == 0)
    }

    @Test func mulRejectsMismatchedOperands() throws {
        #expect(throws: TensorError.self) { try Ops.mul(Tensor(zeros: [3]), Tensor(zeros: [4])) }
    }
}
