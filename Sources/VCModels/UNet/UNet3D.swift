// The VideoCrafter2 3D UNet: an SD-2.1 style 2-D UNet run per frame, with a temporal conv block
// in every ResBlock, a temporal transformer after every spatial transformer, `init_attn` after
// the input conv and an fps embedding added to the time embedding.
// Ports AILab-CVC/VideoCrafter@11bcd76 lvdm/modules/networks/openaimodel3d.py (`UNetModel`
// __init__ block list and forward, `TimestepEmbedSequential`, `Downsample`, `Upsample`).
//
// Layout: activations are channels-last [B*T, H, W, C] with the frames of a batch item
// consecutive (row = b*T + t), which is the official `(b t) c h w` order, so per-frame ops see
// B*T images and temporal ops see B samples of T*H*W rows.
import VCTensor

/// Errors of a UNet call or of a configuration this port does not implement.
public enum UNetError: Error, Equatable, CustomStringConvertible {
    /// Latent height/width not divisible by 2^(levels-1): the skip concatenations would not line up.
    case latentSizeNotDivisible(height: Int, width: Int, factor: Int)
    case badInput(String)
    case unsupported(String)

    public var description: String {
        switch self {
        case let .latentSizeNotDivisible(h, w, f):
            return "unet: latent size \(h)x\(w) is not divisible by \(f) (the UNet halves it \(f.trailingZeroBitCount) times; "
                + "pixel height and width must be multiples of \(f * 8))"
        case let .badInput(m): return "unet: \(m)"
        case let .unsupported(m): return "unet: \(m) is not supported"
        }
    }
}

/// The VideoCrafter2 UNet, built from a `UNetConfig` and weights named
/// `model.diffusion_model.*` (strict: every tensor checked, none left over).
public struct UNet3D: Sendable {
    enum Layer: Sendable {
        case conv(Conv2d)
        case res(ResBlock)
        case spatial(SpatialTransformer)
        case temporal(TemporalTransformer)
        case downsample(Conv2d)
        case upsample(Conv2d)
    }

    struct Block: Sendable {
        let name: String
        let layers: [Layer]
    }

    public static let prefix = "model.diffusion_model."

    public let config: UNetConfig
    let timeEmbed: TimestepMLP
    let fpsEmbed: TimestepMLP?
    let initAttn: TemporalTransformer?
    let inputBlocks: [Block]
    let middleBlock: Block
    let outputBlocks: [Block]
    let outNorm: GroupNorm
    let outConv: Conv2d

    /// Tokens per chunk inside the transformers (whole frames for the spatial ones, a pixel range
    /// of all frames for the temporal ones): bounds the attention and feed-forward temporaries.
    public var chunkTokens = 4096

    /// The latent height and width must be multiples of this (2^(levels-1), 8 for VideoCrafter2).
    public var sizeMultiple: Int { 1 << (config.channelMult.count - 1) }

    public init(config: UNetConfig, weights: any TensorSource) throws {
        try config.validate()
        guard !config.useScaleShiftNorm else { throw UNetError.unsupported("use_scale_shift_norm") }
        guard !config.resblockUpdown else { throw UNetError.unsupported("resblock_updown") }
        guard config.convResample else { throw UNetError.unsupported("conv_resample = false") }
        guard !config.tempspatialAware else { throw UNetError.unsupported("tempspatial_aware (3x3x3 temporal convs)") }
        guard config.temporalSelfAttOnly else { throw UNetError.unsupported("temporal_selfatt_only = false") }
        guard !config.useCausalAttention else { throw UNetError.unsupported("use_causal_attention") }
        guard !config.additionAttention || config.numHeadChannels > 0 else {
            throw UNetError.unsupported("addition_attention without num_head_channels")
        }
        self.config = config
        let b = WeightBinder(weights)
        let p = Self.prefix
        let mc = config.modelChannels, embDim = config.timeEmbedDim
        let depth = config.transformerDepth
        // temporal_transformer_depth is not in the official configs; the class default is 1.
        let temporalDepth = 1

        timeEmbed = TimestepMLP(b, p + "time_embed", in: mc, out: embDim)
        fpsEmbed = config.fpsCond ? TimestepMLP(b, p + "fps_embedding", in: mc, out: embDim) : nil

        func res(_ name: String, _ cin: Int, _ cout: Int) -> Layer {
            .res(ResBlock(b, p + name, name: name, in: cin, out: cout, embDim: embDim, temporalConv: config.temporalConv))
        }
        func attention(_ name: String, _ ch: Int) -> [Layer] {
            let (heads, dim) = config.heads(for: ch)
            var layers: [Layer] = [.spatial(SpatialTransformer(b, "\(p)\(name).1", channels: ch, heads: heads, headDim: dim,
                                                               depth: depth, contextDim: config.contextDim, useLinear: config.useLinear))]
            if config.temporalAttention {
                layers.append(.temporal(TemporalTransformer(b, "\(p)\(name).2", channels: ch, heads: heads, headDim: dim,
                                                            depth: temporalDepth, useLinear: config.useLinear)))
            }
            return layers
        }

        // input_blocks.0: conv_in; init_attn: 8 heads of num_head_channels, Conv1d projections.
        var inputs = [Block(name: "input_blocks.0",
                            layers: [.conv(Conv2d(b, p + "input_blocks.0.0", in: config.inChannels, out: mc))])]
        initAttn = config.additionAttention
            ? TemporalTransformer(b, p + "init_attn.0", channels: mc, heads: 8, headDim: config.numHeadChannels,
                                  depth: depth, useLinear: false)
            : nil
        var skipChannels = [mc]
        var ch = mc, ds = 1
        for (level, mult) in config.channelMult.enumerated() {
            for _ in 0..<config.numResBlocks {
                let name = "input_blocks.\(inputs.count)"
                var layers = [res("\(name).0", ch, mult * mc)]
                ch = mult * mc
                if config.attentionResolutions.contains(ds) { layers += attention(name, ch) }
                inputs.append(Block(name: name, layers: layers))
                skipChannels.append(ch)
            }
            if level != config.channelMult.count - 1 {
                let name = "input_blocks.\(inputs.count)"
                inputs.append(Block(name: name, layers: [.downsample(Conv2d(b, "\(p)\(name).0.op", in: ch, out: ch, stride: 2, padding: 1))]))
                skipChannels.append(ch)
                ds *= 2
            }
        }
        inputBlocks = inputs

        // middle_block: Res, ST, TT, Res (the second ResBlock is index 3 because of the TT).
        var middle = [res("middle_block.0", ch, ch)] + attention("middle_block", ch)
        middle.append(res("middle_block.\(middle.count)", ch, ch))
        middleBlock = Block(name: "middle_block", layers: middle)

        var outputs: [Block] = []
        for (level, mult) in config.channelMult.enumerated().reversed() {
            for i in 0...config.numResBlocks {
                let name = "output_blocks.\(outputs.count)"
                let ich = skipChannels.removeLast()
                var layers = [res("\(name).0", ch + ich, mc * mult)]
                ch = mc * mult
                if config.attentionResolutions.contains(ds) { layers += attention(name, ch) }
                if level > 0 && i == config.numResBlocks {
                    layers.append(.upsample(Conv2d(b, "\(p)\(name).\(layers.count).conv", in: ch, out: ch)))
                    ds /= 2
                }
                outputs.append(Block(name: name, layers: layers))
            }
        }
        outputBlocks = outputs
        outNorm = GroupNorm(b, p + "out.0", channels: ch, groups: 32, eps: 1e-5)
        outConv = Conv2d(b, p + "out.2", in: mc, out: config.outChannels)

        try b.finish(prefix: p)
    }

    /// One UNet evaluation.
    /// - x: latents [B*T, h, w, in_channels], channels-last, row = b*T + t.
    /// - timesteps: one DDPM index per batch item; fps: one frame rate per batch item.
    /// - context: [B, L, context_dim] (the text tokens; shared by the T frames of an item).
    /// - observer: receives the intermediate tensors (channels-last) under the reference hook
    ///   names (`time_sinusoid`, `emb`, `input_blocks.k`, `input_blocks.k.j`, `init_attn`,
    ///   `middle_block`, `output_blocks.k`, `X.0.temopral_conv.in/out`, `out`, ...).
    /// Returns eps [B*T, h, w, out_channels].
    public func callAsFunction(x: Tensor, timesteps: [Int], context: Tensor, fps: [Int], frames: Int,
                               observer: ((String, Tensor) -> Void)? = nil) throws -> Tensor {
        let batch = timesteps.count
        guard batch > 0, frames > 0 else { throw UNetError.badInput("no timesteps or frames") }
        guard x.dtype == .f32, x.rank == 4, x.shape[0] == batch * frames, x.shape[3] == config.inChannels else {
            throw UNetError.badInput("latents \(x.shape) \(x.dtype.rawValue) must be f32 [\(batch)*\(frames), h, w, \(config.inChannels)] for \(batch) timesteps of \(frames) frames")
        }
        let (h, w) = (x.shape[1], x.shape[2])
        guard h > 0, w > 0, h % sizeMultiple == 0, w % sizeMultiple == 0 else {
            throw UNetError.latentSizeNotDivisible(height: h, width: w, factor: sizeMultiple)
        }
        guard context.dtype == .f32, context.rank == 3, context.shape[0] == batch, context.shape[1] > 0,
              context.shape[2] == config.contextDim else {
            throw UNetError.badInput("context \(context.shape) must be [\(batch), tokens, \(config.contextDim)]")
        }
        guard fpsEmbed == nil || fps.count == batch else {
            throw UNetError.badInput("\(fps.count) fps values for \(batch) batch items")
        }

        // Time and fps embeddings, one row per batch item (the official code repeats them T times).
        let tSin = try timestepSinusoid(timesteps, dim: config.modelChannels)   // [B, mc]
        observer?("time_sinusoid", tSin)
        var emb = try timeEmbed(tSin)                                           // [B, 4 mc]
        observer?("time_embed", emb)
        if let fpsEmbed {
            let fSin = try timestepSinusoid(fps, dim: config.modelChannels)
            observer?("fps_sinusoid", fSin)
            let fEmb = try fpsEmbed(fSin)
            observer?("fps_embed", fEmb)
            emb = try Ops.add(emb, fEmb)
        }
        observer?("emb", emb)
        let embSiLU = try Ops.silu(emb)   // the SiLU every ResBlock's emb_layers starts with

        func run(_ block: Block, _ input: Tensor) throws -> Tensor {
            var hcur = input
            for (j, layer) in block.layers.enumerated() {
                switch layer {
                case let .conv(conv): hcur = try conv(hcur)
                case let .res(r): hcur = try r(hcur, embSiLU: embSiLU, batch: batch, frames: frames, observer: observer)
                case let .spatial(st): hcur = try st(hcur, context: context, batch: batch, frames: frames, chunkTokens: chunkTokens)
                case let .temporal(tt): hcur = try tt(hcur, batch: batch, frames: frames, chunkTokens: chunkTokens)
                case let .downsample(conv): hcur = try conv(hcur)                              // [N, H, W, C] -> [N, H/2, W/2, C]
                case let .upsample(conv):
                    // [N, H, W, C] -> [N, 2H, 2W, C]: nearest x2 read inside the conv's gather.
                    hcur = try Ops.conv2d(hcur, conv.weight, conv.bias, stride: 1, padding: 1, upsample2x: true, norm: nil)
                }
                observer?("\(block.name).\(j)", hcur)
            }
            observer?(block.name, hcur)
            return hcur
        }

        var hs: [Tensor] = []
        var hcur = x
        for (k, block) in inputBlocks.enumerated() {
            hcur = try run(block, hcur)
            if k == 0, let initAttn {
                hcur = try initAttn(hcur, batch: batch, frames: frames, chunkTokens: chunkTokens)
                observer?("init_attn", hcur)
            }
            hs.append(hcur)
        }
        hcur = try run(middleBlock, hcur)
        for block in outputBlocks {
            guard let skip = hs.popLast() else { throw UNetError.badInput("skip stack underflow") }
            hcur = try run(block, Ops.concatChannels(hcur, skip))   // cat([h, skip], channels)
        }
        let so = try Ops.groupNormStatistics(hcur, samples: batch * frames, groups: outNorm.groups, weight: outNorm.weight,
                                             bias: outNorm.bias, eps: outNorm.eps)
        let y = try Ops.conv2d(hcur, outConv.weight, outConv.bias, stride: 1, padding: 1, upsample2x: false,
                               norm: so, activation: .silu)                     // [B*T, h, w, out]
        observer?("out", y)
        return y
    }
}
