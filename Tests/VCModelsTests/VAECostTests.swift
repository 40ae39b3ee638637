import Testing
import VCModels

@Suite("VAE FLOP count")
struct VAECostTests {
    /// PyTorch's own count of the same decoder (`count_flops.py` on the meta device, 2 x MAC,
    /// ../shared/research/peer-baselines.md appendix): 1,563.52126976 GFLOP for a 40x64 latent
    /// and 2,514.518933504 GFLOP for 64x64. The spec's hand count agrees (775 GMAC of
    /// convolutions + 7 GMAC of mid attention per 320x512 frame).
    @Test func fullSizeCountMatchesPyTorchsCounter() {
        let config = VAEConfig()
        for (h, w, gflop) in [(40, 64, 1563.52126976), (64, 64, 2514.518933504)] {
            let m = VAEDecoder.decodeMACs(config: config, latentHeight: h, latentWidth: w)
            #expect(abs(2 * (m.gemm + m.attention) / 1e9 - gflop) < 1e-6, "\(h)x\(w)")
        }
        let m = VAEDecoder.decodeMACs(config: config, latentHeight: 40, latentWidth: 64)
        #expect(abs(m.attention / 1e9 - 6.7108864) < 1e-9)   // 2 x 2560^2 x 512
    }
}
