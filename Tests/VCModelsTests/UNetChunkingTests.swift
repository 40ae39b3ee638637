import Testing
import VCModels
import VCTensor
import VCTestSupport

/// The memory-bounded UNet path: transformers run in token chunks (whole frames for spatial
/// attention, pixel ranges of all frames for temporal attention, feed-forward in row blocks).
/// Tiny chunks must give the result of one chunk per call (and stay at the reference).
@Suite("UNet token chunking")
struct UNetChunkingTests {
    @Test func tinyChunksMatchOneChunkAndTheReference() throws {
        let base = try UNetTests()
        var whole = try base.unet()
        whole.chunkTokens = 1 << 30
        var chunked = whole
        // 37 tokens: 1 frame per spatial chunk at 8x16 and 4x8, 4 frames (crossing the batch-item
        // boundary at batch 2) at 2x4, 7 pixels per temporal chunk, 37-row feed-forward blocks.
        chunked.chunkTokens = 37
        let x0 = try base.latents()
        let x1 = try Tensor(shape: x0.shape, floats: x0.floats().map { 0.3 - 0.9 * $0 })
        let c0 = try base.context()
        let c1 = try Tensor(shape: c0.shape, floats: c0.floats().reversed().map { $0 * 0.5 })
        let xb = try Tensor(shape: [2 * UNetTests.frames, 8, 16, 4], floats: x0.floats() + x1.floats())
        let cb = try Tensor(shape: [2, 77, 32], floats: c0.floats() + c1.floats())
        let a = try whole(x: xb, timesteps: [981, 301], context: cb, fps: [28, 12], frames: UNetTests.frames)
        let b = try chunked(x: xb, timesteps: [981, 301], context: cb, fps: [28, 12], frames: UNetTests.frames)
        let cmp = Comparison(b.floats(), a.floats())
        print("chunked vs whole, batch 2: \(cmp)")
        #expect(cmp.maxAbs <= 1e-5)
        // Item 0 of the chunked batch is still the reference eps.
        let n = a.count / 2
        let ref = Comparison(Array(b.floats()[0..<n]), try base.goldenChannelsLast("unet.t981.eps"))
        print("chunked item 0 vs golden: \(ref)")
        #expect(ref.maxAbs <= 5e-5 && ref.relRMS <= 2e-5)
    }
}
