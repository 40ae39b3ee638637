// The first-stage decoder of VideoCrafter2 (SD kl-f8 AutoencoderKL): latents -> RGB frames.
//
// Ports AILab-CVC/VideoCrafter@11bcd76 `lvdm/modules/networks/ae_modules.py` (Decoder.forward),
// `lvdm/models/autoencoder.py` (AutoencoderKL.decode: post_quant_conv, then the decoder) and
// `lvdm/models/ddpm3d.py` (decode_first_stage_2DAE: z / scale_factor, frames decoded one time
// step at a time):
//
//   z = latents / scale_factor
//   h = conv_in(post_quant_conv(z))
//   h = mid.block_2(mid.attn_1(mid.block_1(h)))
//   for level in L-1 ... 0:                 (`up.i` is stored in level order; up.{L-1} runs first)
//       h = up[level].block[0 ... num_res_blocks](h)
//       if level != 0: h = up[level].upsample(h)
//   frames = conv_out(swish(norm_out(h)))   (no tanh; about [-1, 1])
//
// Activations are channels-last `[N, H, W, C]`; frames are independent (every norm is per frame).
import VCTensor

/// One resolution level of the decoder (`decoder.up.<level>`).
struct VAEUpLevel: Sendable {
    let blocks: [VAEResnetBlock]
    let upsample: VAEUpsample?
}

/// AutoencoderKL decoder path: post_quant_conv + Decoder.
public struct VAEDecoder: Sendable {
    /// Receives named intermediate activations `[N, H, W, C]` of one `decodeBatch` call:
    /// "post_quant_conv", "conv_in", "mid.block_1", "mid.attn_1", "mid.block_2",
    /// "up.<level>.block.<i>", "up.<level>.upsample", "conv_out" (the golden `vae.dec.*` names).
    public typealias Observer = (_ name: String, _ value: Tensor) -> Void

    /// A buffer-cache limit (`Storage.withBufferCacheLimit`) for decoding frame after frame: the
    /// largest activations of a 320x512 frame (84-168 MB each) do not fit the default 128 MiB,
    /// so every frame faulted in and zeroed them afresh (about 10 % of a q8 decode). A q8 frame
    /// took 3.8 s with 128 MiB, 3.5-4.1 s with 512 MiB and 3.2-3.3 s with 1 GiB; the peak RSS
    /// (about 820 MB) was the same for 512 MiB and 1 GiB, 140 MB above 128 MiB's
    /// (docs/performance.md). The cache only holds freed buffers, up to the limit.
    public static let frameBufferCacheBytes = 1 << 30

    /// Where the autoencoder lives in an LDM / VideoCrafter checkpoint.
    public static let defaultPrefix = "first_stage_model."

    public let config: VAEConfig
    /// How the 3x3 convolutions run (`.f32` unless the loader asked otherwise).
    public let convArithmetic: VAEConvArithmetic
    let postQuantConv: Linear
    let convIn: VAEConv3x3
    let midBlock1: VAEResnetBlock
    let midAttn: VAEAttnBlock
    let midBlock2: VAEResnetBlock
    /// Indexed by level (up[0] = full resolution, runs last).
    let up: [VAEUpLevel]
    let normOut: GroupNorm
    let convOut: VAEConv3x3

    /// Binds `prefix`post_quant_conv.* and `prefix`decoder.* from `b`.
    public init(_ b: WeightBinder, config: VAEConfig, prefix: String = VAEDecoder.defaultPrefix,
                convArithmetic: VAEConvArithmetic = .f32) {
        self.config = config
        self.convArithmetic = convArithmetic
        let a = convArithmetic
        let d = "\(prefix)decoder"
        let levels = config.chMult.count
        var blockIn = config.ch * (config.chMult.last ?? 1)
        postQuantConv = Linear(b, "\(prefix)post_quant_conv", in: config.embedDim, out: config.zChannels, kernelDims: 2)
        convIn = VAEConv3x3(b, "\(d).conv_in", in: config.zChannels, out: blockIn, arithmetic: a)
        midBlock1 = VAEResnetBlock(b, "\(d).mid.block_1", in: blockIn, out: blockIn, arithmetic: a)
        midAttn = VAEAttnBlock(b, "\(d).mid.attn_1", channels: blockIn)
        midBlock2 = VAEResnetBlock(b, "\(d).mid.block_2", in: blockIn, out: blockIn, arithmetic: a)
        // Bind in execution order (level L-1 first), store by level.
        var byLevel = [VAEUpLevel?](repeating: nil, count: levels)
        for level in (0..<levels).reversed() {
            let blockOut = config.ch * config.chMult[level]
            var blocks: [VAEResnetBlock] = []
            for i in 0...config.numResBlocks {
                blocks.append(VAEResnetBlock(b, "\(d).up.\(level).block.\(i)", in: blockIn, out: blockOut, arithmetic: a))
                blockIn = blockOut
            }
            let upsample = level == 0 ? nil : VAEUpsample(b, "\(d).up.\(level).upsample", channels: blockIn, arithmetic: a)
            byLevel[level] = VAEUpLevel(blocks: blocks, upsample: upsample)
        }
        up = byLevel.compactMap { $0 }
        normOut = vaeNorm(b, "\(d).norm_out", channels: blockIn)
        convOut = VAEConv3x3(b, "\(d).conv_out", in: blockIn, out: config.outCh, arithmetic: a)
    }

    /// Tensors of the autoencoder that decoding never reads: the encoder and quant_conv.
    public static func isUnused(_ name: String, prefix: String = defaultPrefix) -> Bool {
        name.hasPrefix("\(prefix)encoder.") || name.hasPrefix("\(prefix)quant_conv.")
    }

    /// Strict load: every tensor under `prefix` is either used (with the configured shape) or part
    /// of the encoder path; otherwise a `BindingError` lists all problems. `convArithmetic`:
    /// see `VAEConvArithmetic`.
    public static func load(from source: any TensorSource, config: VAEConfig,
                            prefix: String = defaultPrefix, convArithmetic: VAEConvArithmetic = .f32) throws -> VAEDecoder {
        try config.validate()
        let b = WeightBinder(source)
        let model = VAEDecoder(b, config: config, prefix: prefix, convArithmetic: convArithmetic)
        b.ignore { isUnused($0, prefix: prefix) }
        try b.finish(prefix: prefix)
        return model
    }

    /// Decodes latents `[T, h, w, z]` in the scaled latent space (what the sampler produces) to
    /// frames `[T, 8h, 8w, 3]` (floats, about [-1, 1]): multiplies by 1/`scaleFactor` (default:
    /// the configured one), then decodes `framesPerChunk` frames at a time so that the
    /// activation memory is that of one chunk, whatever T is.
    public func decode(latents: Tensor, scaleFactor: Float? = nil, framesPerChunk: Int = 1,
                       observer: Observer? = nil) throws -> Tensor {
        guard latents.rank == 4, latents.shape[0] > 0, latents.shape[3] == config.embedDim else {
            throw TensorError.shapeMismatch("VAE decode: latents \(latents.shape), expected [T, h, w, \(config.embedDim)]")
        }
        let sf = scaleFactor ?? config.scaleFactor
        guard sf.isFinite, sf != 0, framesPerChunk > 0 else {
            throw TensorError.shapeMismatch("VAE decode: scale factor \(sf), \(framesPerChunk) frames per chunk")
        }
        let t = latents.shape[0]
        var parts: [Tensor] = []
        var f0 = 0
        while f0 < t {
            let n = min(framesPerChunk, t - f0)
            // z = 1/scale_factor * z (torch multiplies by the float32 value of 1/scale_factor).
            let z = try Ops.scale(try latents.rows(f0, n), Float(1 / Double(sf)))  // [n, h, w, z]
            parts.append(try decodeBatch(z, observer: observer))                   // [n, H, W, 3]
            f0 += n
        }
        return parts.count == 1 ? parts[0] : try Ops.concatRows(parts)
    }

    /// Runs post_quant_conv + the decoder on unscaled latents `[N, h, w, z]` as one batch ->
    /// `[N, 8h, 8w, outCh]`. With `.q8` / `.bf16` convolutions the thread's GEMM mode is `.fast`
    /// (int8 / bf16 activations) for the call: the decoder's other products follow it too where
    /// their weights are q8_0 or bf16 (the 1x1 projections of a bf16 model); f16 / f32 weights
    /// do not depend on the mode.
    public func decodeBatch(_ z: Tensor, observer: Observer? = nil) throws -> Tensor {
        guard z.rank == 4, z.shape[3] == config.embedDim else {
            throw TensorError.shapeMismatch("VAE decoder input \(z.shape), expected [N, h, w, \(config.embedDim)]")
        }
        return try Ops.withGEMMPrecision(convArithmetic == .f32 ? nil : .fast) { try run(z, observer: observer) }
    }

    private func run(_ z: Tensor, observer: Observer?) throws -> Tensor {
        var h = try postQuantConv(z)                   // [N, h, w, z]
        observer?("post_quant_conv", h)
        h = try convIn(h)                              // [N, h, w, C_top]
        observer?("conv_in", h)
        h = try midBlock1(h)
        observer?("mid.block_1", h)
        h = try midAttn(h)
        observer?("mid.attn_1", h)
        h = try midBlock2(h)
        observer?("mid.block_2", h)
        for level in up.indices.reversed() {
            for (i, block) in up[level].blocks.enumerated() {
                h = try block(h)                       // [N, H_l, W_l, C_l]
                observer?("up.\(level).block.\(i)", h)
            }
            if let upsample = up[level].upsample {
                h = try upsample(h)                    // [N, 2H_l, 2W_l, C_l]
                observer?("up.\(level).upsample", h)
            }
        }
        h = try normOut(h, samples: h.shape[0], activation: .silu)
        h = try convOut(h)                             // [N, H, W, outCh]
        observer?("conv_out", h)
        return h
    }

    /// Frames as `save_videos` writes them: clamp to [-1, 1], (x + 1) / 2, * 255, truncated to
    /// UInt8 (no rounding), in the order of `frames` (channels-last `[T, H, W, 3]` stays so).
    public static func rgb8(frames: Tensor) throws -> [UInt8] {
        guard frames.dtype == .f32 else { throw TensorError.unsupportedDType(frames.dtype, "frames must be f32") }
        return frames.floats().map { v -> UInt8 in
            let c = v.isNaN ? -1 : min(max(v, -1), 1)
            return UInt8(((c + 1) / 2) * 255)
        }
    }

    /// Multiply-adds of decoding one latent of h x w (post_quant_conv + decoder): `gemm` for the
    /// convolutions and 1x1 projections (weights), `attention` for the mid block's two
    /// [hw, hw] products. GroupNorm, swish and additions are not counted.
    public static func decodeMACs(config: VAEConfig, latentHeight h: Int, latentWidth w: Int) -> (gemm: Double, attention: Double) {
        var gemm = 0.0
        var (rh, rw) = (Double(h), Double(w))
        func conv(_ cin: Int, _ cout: Int, _ taps: Double) { gemm += rh * rw * Double(cin) * Double(cout) * taps }
        func resnet(_ cin: Int, _ cout: Int) {
            conv(cin, cout, 9); conv(cout, cout, 9)
            if cin != cout { conv(cin, cout, 1) }
        }
        var blockIn = config.ch * (config.chMult.last ?? 1)
        conv(config.embedDim, config.zChannels, 1)                 // post_quant_conv
        conv(config.zChannels, blockIn, 9)                          // conv_in
        resnet(blockIn, blockIn)                                    // mid.block_1
        conv(blockIn, blockIn, 4)                                   // mid.attn_1 q, k, v, proj_out
        let hw = rh * rw
        let attention = 2 * hw * hw * Double(blockIn)               // scores and probabilities x values
        resnet(blockIn, blockIn)                                    // mid.block_2
        for level in config.chMult.indices.reversed() {
            let blockOut = config.ch * config.chMult[level]
            for _ in 0...config.numResBlocks {
                resnet(blockIn, blockOut)
                blockIn = blockOut
            }
            if level != 0 {
                (rh, rw) = (2 * rh, 2 * rw)
                conv(blockIn, blockIn, 9)                           // upsample conv at the new size
            }
        }
        conv(blockIn, config.outCh, 9)                              // conv_out
        return (gemm, attention)
    }

    /// Names and shapes of the tensors the decoder path uses (post_quant_conv + decoder), as an
    /// LDM checkpoint stores them; `RandomWeights` uses this for benchmarks.
    public static func parameterShapes(config: VAEConfig, prefix: String = defaultPrefix) -> [String: [Int]] {
        var s: [String: [Int]] = [:]
        func conv(_ p: String, _ cin: Int, _ cout: Int, _ k: Int) { s["\(p).weight"] = [cout, cin, k, k]; s["\(p).bias"] = [cout] }
        func norm(_ p: String, _ c: Int) { s["\(p).weight"] = [c]; s["\(p).bias"] = [c] }
        func resnet(_ p: String, _ cin: Int, _ cout: Int) {
            norm("\(p).norm1", cin); conv("\(p).conv1", cin, cout, 3)
            norm("\(p).norm2", cout); conv("\(p).conv2", cout, cout, 3)
            if cin != cout { conv("\(p).nin_shortcut", cin, cout, 1) }
        }
        let d = "\(prefix)decoder"
        var blockIn = config.ch * (config.chMult.last ?? 1)
        conv("\(prefix)post_quant_conv", config.embedDim, config.zChannels, 1)
        conv("\(d).conv_in", config.zChannels, blockIn, 3)
        resnet("\(d).mid.block_1", blockIn, blockIn)
        norm("\(d).mid.attn_1.norm", blockIn)
        for n in ["q", "k", "v", "proj_out"] { conv("\(d).mid.attn_1.\(n)", blockIn, blockIn, 1) }
        resnet("\(d).mid.block_2", blockIn, blockIn)
        for level in config.chMult.indices.reversed() {
            let blockOut = config.ch * config.chMult[level]
            for i in 0...config.numResBlocks {
                resnet("\(d).up.\(level).block.\(i)", blockIn, blockOut)
                blockIn = blockOut
            }
            if level != 0 { conv("\(d).up.\(level).upsample.conv", blockIn, blockIn, 3) }
        }
        norm("\(d).norm_out", blockIn)
        conv("\(d).conv_out", blockIn, config.outCh, 3)
        return s
    }
}
