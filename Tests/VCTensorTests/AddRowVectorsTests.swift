import Testing
import VCTensor

@Suite("Ops.addRowVectors")
struct AddRowVectorsTests {
    @Test func addsOneVectorPerSample() throws {
        // x: 2 samples x 3 rows x 2 channels; v: one 2-vector per sample.
        let x = try Tensor(shape: [6, 2], floats: (0..<12).map(Float.init))
        let v = try Tensor(shape: [2, 2], floats: [10, 20, -1, -2])
        let y = try Ops.addRowVectors(x, v, samples: 2)
        #expect(y.shape == [6, 2])
        #expect(y.floats() == [10, 21, 12, 23, 14, 25, 5, 5, 7, 7, 9, 9])
    }

    @Test func rejectsMismatchedShapes() throws {
        let x = Tensor(zeros: [5, 2])
        #expect(throws: TensorError.self) { _ = try Ops.addRowVectors(x, Tensor(zeros: [2, 2]), samples: 2) }
        #expect(throws: TensorError.self) { _ = try Ops.addRowVectors(Tensor(zeros: [4, 2]), Tensor(zeros: [2, 3]), samples: 2) }
    }
}
