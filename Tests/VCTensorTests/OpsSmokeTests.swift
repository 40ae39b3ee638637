import Testing
import VCTensor
import VCTestSupport

@Suite("Ops against hand-computed values")
struct OpsSmokeTests {
    @Test func linearMatchesHandComputed() throws {
        // x = [[1, 2, 3]], W = [[1, 0, -1], [2, 1, 0]], b = [0.5, -1] -> [1-3+0.5, 2+2-1] = [-1.5, 3]
        let x = try Tensor(shape: [1, 3], floats: [1, 2, 3])
        let w = try Tensor(shape: [2, 3], floats: [1, 0, -1, 2, 1, 0])
        let b = try Tensor(shape: [2], floats: [0.5, -1])
        #expect(try Ops.linear(x, w, b).floats() == [-1.5, 3])
    }

    @Test func goldenTinyModelLoads() throws {
        let m = try Fixtures.tinyModel()
        #expect(m.tensorNames.count == 1717)
        let t = try #require(try m.tensor(named: "model.diffusion_model.input_blocks.0.0.weight"))
        #expect(t.shape == [32, 4, 3, 3])
    }
}
