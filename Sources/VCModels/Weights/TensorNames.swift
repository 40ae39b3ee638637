// The canonical tensor-name space: every tensor a model of a given configuration has, with its
// shape, in state-dict order, named exactly as the official checkpoints name it (formats/README.md).
//
// Ports the module structure (parameter names, shapes and registration order) of, at
// AILab-CVC/VideoCrafter@11bcd76:
//   lvdm/models/ddpm3d.py                    LatentDiffusion buffers (register_schedule, scale_arr)
//   lvdm/modules/networks/openaimodel3d.py   UNetModel, ResBlock, TemporalConvBlock, Up/Downsample
//   lvdm/modules/attention.py                SpatialTransformer, TemporalTransformer,
//                                            BasicTransformerBlock, CrossAttention, FeedForward/GEGLU
//   lvdm/modules/networks/ae_modules.py      Encoder, Decoder, ResnetBlock, AttnBlock
//   lvdm/models/autoencoder.py               AutoencoderKL (quant_conv, post_quant_conv)
// and open_clip 2.22.0 src/open_clip/model.py + transformer.py (CLIP text tower:
// positional_embedding, text_projection, logit_scale, transformer.resblocks.N, token_embedding,
// ln_final). SD 2.x (ldm.modules.diffusionmodules.openaimodel) is the same UNet without the
// temporal modules, so one generator covers vc2, vc1 and sd21.
//
// The spelling `temopral_conv` (sic) is upstream's and is canonical; see KnownSpellings for the
// accepted alternates.

/// Which network a tensor belongs to.
public enum ModelComponent: String, Sendable, CaseIterable, Codable {
    case unet, text, vae, schedule
}

/// What a tensor is, structurally (drives the quantization policy).
public enum TensorRole: String, Sendable, Codable {
    /// The matrix of a Linear layer or the kernel of a convolution (rank >= 2).
    case weight
    /// A bias vector.
    case bias
    /// GroupNorm / LayerNorm affine parameters.
    case norm
    /// A lookup table: token and position embeddings, relative-position tables.
    case embedding
    /// A DDPM schedule buffer.
    case buffer
    /// A 0-d parameter (`logit_scale`).
    case scalar
}

/// Whether text-to-video / text-to-image inference reads a tensor, and if not, why not.
public enum TensorUse: String, Sendable, Codable {
    case inference
    /// The VAE encoder and `quant_conv`: generation only decodes.
    case vaeEncoder
    /// Text blocks after the ones the configured `layer` runs (block 23 of ViT-H with "penultimate").
    case skippedTextBlock
    /// `text_projection` and `logit_scale`: CLIP's contrastive head, unused for conditioning.
    case textHead
    /// DDPM schedule buffers: recomputed from the configuration (and checked against these).
    case schedule
}

/// One expected tensor.
public struct TensorSpec: Sendable, Equatable {
    public var name: String
    public var shape: [Int]
    public var component: ModelComponent
    public var role: TensorRole
    public var use: TensorUse

    public var isUsedByInference: Bool { use == .inference }
}

public enum ModelTensors {
    public static let unetPrefix = "model.diffusion_model."
    public static let vaePrefix = "first_stage_model."
    public static let textPrefix = "cond_stage_model.model."
    /// The DDPM buffers every LatentDiffusion registers, in registration order.
    public static let scheduleBufferNames = [
        "betas", "alphas_cumprod", "alphas_cumprod_prev", "sqrt_alphas_cumprod", "sqrt_one_minus_alphas_cumprod",
        "log_one_minus_alphas_cumprod", "sqrt_recip_alphas_cumprod", "sqrt_recipm1_alphas_cumprod",
        "posterior_variance", "posterior_log_variance_clipped", "posterior_mean_coef1", "posterior_mean_coef2",
    ]

    /// Every tensor of a model with configuration `c`, in state-dict order (buffers, UNet, VAE,
    /// text), with shapes. `c` must pass `validateStructure()`.
    public static func expected(for c: ModelConfig) -> [TensorSpec] {
        var b = SpecBuilder()
        b.component = .schedule
        b.use = .schedule
        for n in scheduleBufferNames { b.add(n, [c.diffusion.timesteps], .buffer) }
        if c.diffusion.useScale {
            let d = c.diffusion
            b.add("scale_arr", [d.midStep + (d.fixScaleBug ? d.timesteps - d.midStep : d.timesteps)], .buffer)
        }
        unet(&b, c)
        vae(&b, c.vae)
        text(&b, c.text)
        return b.specs
    }

    /// The expected tensors by name.
    public static func expectedByName(for c: ModelConfig) -> [String: TensorSpec] {
        Dictionary(expected(for: c).map { ($0.name, $0) }, uniquingKeysWith: { a, _ in a })
    }

    // MARK: UNet (openaimodel3d.UNetModel.__init__)

    static func unet(_ b: inout SpecBuilder, _ c: ModelConfig) {
        let u = c.unet
        b.component = .unet
        b.use = .inference
        b.prefix = unetPrefix
        let mc = u.modelChannels, ted = u.timeEmbedDim
        b.linear("time_embed.0", mc, ted)
        b.linear("time_embed.2", ted, ted)
        if u.fpsCond {
            b.linear("fps_embedding.0", mc, ted)
            b.linear("fps_embedding.2", ted, ted)
        }
        b.conv("input_blocks.0.0", u.inChannels, mc, [3, 3])
        var initAttn = SpecBuilder()
        if u.additionAttention {
            // TemporalTransformer(model_channels, n_heads=8, d_head=num_head_channels, depth=transformer_depth);
            // use_linear is not passed, so proj_in/proj_out are kernel-1 Conv1d.
            initAttn = b.child()
            temporalTransformer(&initAttn, "init_attn.0", u, channels: mc, heads: 8, headDim: u.numHeadChannels,
                                depth: u.transformerDepth, useLinear: false)
        }
        var inputChannels = [mc]
        var ch = mc, ds = 1, index = 1
        for (level, mult) in u.channelMult.enumerated() {
            for _ in 0..<u.numResBlocks {
                let p = "input_blocks.\(index)"
                resBlock(&b, "\(p).0", u, in: ch, out: mult * mc, temporal: u.temporalConv)
                ch = mult * mc
                if u.attentionResolutions.contains(ds) {
                    let (h, d) = u.heads(for: ch)
                    spatialTransformer(&b, "\(p).1", u, channels: ch, heads: h, headDim: d)
                    if u.temporalAttention {
                        temporalTransformer(&b, "\(p).2", u, channels: ch, heads: h, headDim: d, depth: 1, useLinear: u.useLinear)
                    }
                }
                inputChannels.append(ch)
                index += 1
            }
            if level != u.channelMult.count - 1 {
                downsample(&b, "input_blocks.\(index).0", u, channels: ch)
                inputChannels.append(ch)
                ds *= 2
                index += 1
            }
        }
        b.specs += initAttn.specs // registered after input_blocks
        let (h, d) = u.heads(for: ch)
        resBlock(&b, "middle_block.0", u, in: ch, out: ch, temporal: u.temporalConv)
        spatialTransformer(&b, "middle_block.1", u, channels: ch, heads: h, headDim: d)
        if u.temporalAttention {
            temporalTransformer(&b, "middle_block.2", u, channels: ch, heads: h, headDim: d, depth: 1, useLinear: u.useLinear)
        }
        resBlock(&b, "middle_block.\(u.temporalAttention ? 3 : 2)", u, in: ch, out: ch, temporal: u.temporalConv)
        index = 0
        for (level, mult) in u.channelMult.enumerated().reversed() {
            for i in 0...u.numResBlocks {
                let skip = inputChannels.removeLast()
                let p = "output_blocks.\(index)"
                resBlock(&b, "\(p).0", u, in: ch + skip, out: mc * mult, temporal: u.temporalConv)
                ch = mc * mult
                var layer = 1
                if u.attentionResolutions.contains(ds) {
                    let (h, d) = u.heads(for: ch)
                    spatialTransformer(&b, "\(p).1", u, channels: ch, heads: h, headDim: d)
                    layer = 2
                    if u.temporalAttention {
                        temporalTransformer(&b, "\(p).2", u, channels: ch, heads: h, headDim: d, depth: 1, useLinear: u.useLinear)
                        layer = 3
                    }
                }
                if level != 0 && i == u.numResBlocks {
                    upsample(&b, "\(p).\(layer)", u, channels: ch)
                    ds /= 2
                }
                index += 1
            }
        }
        b.norm("out.0", ch)
        b.conv("out.2", mc, u.outChannels, [3, 3])
    }

    /// ResBlock(channels, emb_channels, out_channels, use_temporal_conv, tempspatial_aware).
    static func resBlock(_ b: inout SpecBuilder, _ p: String, _ u: UNetConfig, in ch: Int, out: Int, temporal: Bool) {
        b.norm("\(p).in_layers.0", ch)
        b.conv("\(p).in_layers.2", ch, out, [3, 3])
        b.linear("\(p).emb_layers.1", u.timeEmbedDim, u.useScaleShiftNorm ? 2 * out : out)
        b.norm("\(p).out_layers.0", out)
        b.conv("\(p).out_layers.3", out, out, [3, 3])
        if out != ch { b.conv("\(p).skip_connection", ch, out, [1, 1]) }
        if temporal {
            // TemporalConvBlock(out, out): GroupNorm + Conv3d, kernels (3,1,1) or (3,3,3) for the
            // first two when tempspatial_aware; the last two are always (3,1,1).
            let k: [Int] = u.tempspatialAware ? [3, 3, 3] : [3, 1, 1]
            let t = "\(p).temopral_conv"
            b.norm("\(t).conv1.0", out); b.conv("\(t).conv1.2", out, out, k)
            b.norm("\(t).conv2.0", out); b.conv("\(t).conv2.3", out, out, k)
            b.norm("\(t).conv3.0", out); b.conv("\(t).conv3.3", out, out, [3, 1, 1])
            b.norm("\(t).conv4.0", out); b.conv("\(t).conv4.3", out, out, [3, 1, 1])
        }
    }

    static func downsample(_ b: inout SpecBuilder, _ p: String, _ u: UNetConfig, channels ch: Int) {
        if u.resblockUpdown {
            resBlock(&b, p, u, in: ch, out: ch, temporal: false)
        } else if u.convResample {
            b.conv("\(p).op", ch, ch, [3, 3])
        } // else: average pooling, no parameters
    }

    static func upsample(_ b: inout SpecBuilder, _ p: String, _ u: UNetConfig, channels ch: Int) {
        if u.resblockUpdown {
            resBlock(&b, p, u, in: ch, out: ch, temporal: false)
        } else if u.convResample {
            b.conv("\(p).conv", ch, ch, [3, 3])
        }
    }

    static func spatialTransformer(_ b: inout SpecBuilder, _ p: String, _ u: UNetConfig, channels ch: Int, heads: Int, headDim: Int) {
        let inner = heads * headDim
        b.norm("\(p).norm", ch)
        if u.useLinear { b.linear("\(p).proj_in", ch, inner) } else { b.conv("\(p).proj_in", ch, inner, [1, 1]) }
        for d in 0..<u.transformerDepth {
            transformerBlock(&b, "\(p).transformer_blocks.\(d)", dim: inner, heads: heads, headDim: headDim,
                             context: u.contextDim, relativePosition: nil)
        }
        if u.useLinear { b.linear("\(p).proj_out", inner, ch) } else { b.conv("\(p).proj_out", inner, ch, [1, 1]) }
    }

    static func temporalTransformer(_ b: inout SpecBuilder, _ p: String, _ u: UNetConfig, channels ch: Int, heads: Int,
                                    headDim: Int, depth: Int, useLinear: Bool) {
        let inner = heads * headDim
        b.norm("\(p).norm", ch)
        if useLinear { b.linear("\(p).proj_in", ch, inner) } else { b.conv("\(p).proj_in", ch, inner, [1]) }
        for d in 0..<depth {
            transformerBlock(&b, "\(p).transformer_blocks.\(d)", dim: inner, heads: heads, headDim: headDim,
                             context: u.temporalSelfAttOnly ? nil : u.contextDim,
                             relativePosition: u.useRelativePosition ? u.temporalLength : nil)
        }
        if useLinear { b.linear("\(p).proj_out", inner, ch) } else { b.conv("\(p).proj_out", inner, ch, [1]) }
    }

    /// BasicTransformerBlock: attn1 (self), ff (GEGLU, mult 4), attn2 (cross or self), norm1-3.
    static func transformerBlock(_ b: inout SpecBuilder, _ p: String, dim: Int, heads: Int, headDim: Int,
                                 context: Int?, relativePosition: Int?) {
        attention(&b, "\(p).attn1", query: dim, context: dim, heads: heads, headDim: headDim, relativePosition: relativePosition)
        b.linear("\(p).ff.net.0.proj", dim, dim * 4 * 2)
        b.linear("\(p).ff.net.2", dim * 4, dim)
        attention(&b, "\(p).attn2", query: dim, context: context ?? dim, heads: heads, headDim: headDim, relativePosition: relativePosition)
        b.norm("\(p).norm1", dim)
        b.norm("\(p).norm2", dim)
        b.norm("\(p).norm3", dim)
    }

    static func attention(_ b: inout SpecBuilder, _ p: String, query: Int, context: Int, heads: Int, headDim: Int,
                          relativePosition: Int?) {
        let inner = heads * headDim
        b.linear("\(p).to_q", query, inner, bias: false)
        b.linear("\(p).to_k", context, inner, bias: false)
        b.linear("\(p).to_v", context, inner, bias: false)
        b.linear("\(p).to_out.0", inner, query)
        if let L = relativePosition {
            b.add("\(p).relative_position_k.embeddings_table", [2 * L + 1, headDim], .embedding)
            b.add("\(p).relative_position_v.embeddings_table", [2 * L + 1, headDim], .embedding)
        }
    }

    // MARK: VAE (AutoencoderKL: encoder, decoder, quant_conv, post_quant_conv)

    static func vae(_ b: inout SpecBuilder, _ v: VAEConfig) {
        b.component = .vae
        b.prefix = vaePrefix
        let n = v.chMult.count
        let inMult = [1] + v.chMult
        // Encoder
        b.use = .vaeEncoder
        b.conv("encoder.conv_in", v.inChannels, v.ch, [3, 3])
        var res = v.resolution
        var bin = v.ch
        for level in 0..<n {
            bin = v.ch * inMult[level]
            let bout = v.ch * v.chMult[level]
            var attn: [Int] = []
            for i in 0..<v.numResBlocks {
                resnetBlock(&b, "encoder.down.\(level).block.\(i)", in: bin, out: bout)
                bin = bout
                if v.attnResolutions.contains(res) { attn.append(bin) }
            }
            for (i, c) in attn.enumerated() { attnBlock(&b, "encoder.down.\(level).attn.\(i)", c) }
            if level != n - 1 {
                b.conv("encoder.down.\(level).downsample.conv", bin, bin, [3, 3])
                res /= 2
            }
        }
        resnetBlock(&b, "encoder.mid.block_1", in: bin, out: bin)
        attnBlock(&b, "encoder.mid.attn_1", bin)
        resnetBlock(&b, "encoder.mid.block_2", in: bin, out: bin)
        b.norm("encoder.norm_out", bin)
        b.conv("encoder.conv_out", bin, v.doubleZ ? 2 * v.zChannels : v.zChannels, [3, 3])
        // Decoder
        b.use = .inference
        bin = v.ch * v.chMult[n - 1]
        res = v.resolution >> (n - 1)
        b.conv("decoder.conv_in", v.zChannels, bin, [3, 3])
        resnetBlock(&b, "decoder.mid.block_1", in: bin, out: bin)
        attnBlock(&b, "decoder.mid.attn_1", bin)
        resnetBlock(&b, "decoder.mid.block_2", in: bin, out: bin)
        // Built from the deepest level up, stored with `up.insert(0, ...)`: emitted in index order.
        var levels: [[TensorSpec]] = Array(repeating: [], count: n)
        for level in (0..<n).reversed() {
            var lb = b.child()
            let bout = v.ch * v.chMult[level]
            var attn: [Int] = []
            for i in 0...v.numResBlocks {
                resnetBlock(&lb, "decoder.up.\(level).block.\(i)", in: bin, out: bout)
                bin = bout
                if v.attnResolutions.contains(res) { attn.append(bin) }
            }
            for (i, c) in attn.enumerated() { attnBlock(&lb, "decoder.up.\(level).attn.\(i)", c) }
            if level != 0 {
                lb.conv("decoder.up.\(level).upsample.conv", bin, bin, [3, 3])
                res *= 2
            }
            levels[level] = lb.specs
        }
        for l in levels { b.specs += l }
        b.norm("decoder.norm_out", bin)
        b.conv("decoder.conv_out", bin, v.outCh, [3, 3])
        b.use = .vaeEncoder
        b.conv("quant_conv", 2 * v.zChannels, 2 * v.embedDim, [1, 1])
        b.use = .inference
        b.conv("post_quant_conv", v.embedDim, v.zChannels, [1, 1])
    }

    static func resnetBlock(_ b: inout SpecBuilder, _ p: String, in cin: Int, out cout: Int) {
        b.norm("\(p).norm1", cin)
        b.conv("\(p).conv1", cin, cout, [3, 3])
        b.norm("\(p).norm2", cout)
        b.conv("\(p).conv2", cout, cout, [3, 3])
        if cin != cout { b.conv("\(p).nin_shortcut", cin, cout, [1, 1]) }
    }

    static func attnBlock(_ b: inout SpecBuilder, _ p: String, _ c: Int) {
        b.norm("\(p).norm", c)
        for n in ["q", "k", "v", "proj_out"] { b.conv("\(p).\(n)", c, c, [1, 1]) }
    }

    // MARK: text (open_clip CLIP without the visual tower)

    static func text(_ b: inout SpecBuilder, _ t: TextEncoderConfig) {
        b.component = .text
        b.prefix = textPrefix
        let w = t.width
        b.use = .inference
        b.add("positional_embedding", [t.contextLength, w], .embedding)
        b.use = .textHead
        b.add("text_projection", [w, t.embedDim], .weight)
        b.add("logit_scale", [], .scalar)
        for i in 0..<t.layers {
            b.use = i < t.layersRun ? .inference : .skippedTextBlock
            let p = "transformer.resblocks.\(i)"
            b.norm("\(p).ln_1", w)
            b.add("\(p).attn.in_proj_weight", [3 * w, w], .weight)
            b.add("\(p).attn.in_proj_bias", [3 * w], .bias)
            b.linear("\(p).attn.out_proj", w, w)
            b.norm("\(p).ln_2", w)
            b.linear("\(p).mlp.c_fc", w, 4 * w)
            b.linear("\(p).mlp.c_proj", 4 * w, w)
        }
        b.use = .inference
        b.add("token_embedding.weight", [t.vocabSize, w], .embedding)
        b.norm("ln_final", w)
    }
}

/// Accumulates specs under the current prefix / component / use.
struct SpecBuilder {
    var specs: [TensorSpec] = []
    var prefix = ""
    var component = ModelComponent.unet
    var use = TensorUse.inference

    /// An empty builder with the same prefix, component and use.
    func child() -> SpecBuilder {
        var c = SpecBuilder()
        c.prefix = prefix; c.component = component; c.use = use
        return c
    }

    mutating func add(_ name: String, _ shape: [Int], _ role: TensorRole) {
        specs.append(TensorSpec(name: prefix + name, shape: shape, component: component, role: role, use: use))
    }

    mutating func linear(_ p: String, _ inFeatures: Int, _ outFeatures: Int, bias: Bool = true) {
        add("\(p).weight", [outFeatures, inFeatures], .weight)
        if bias { add("\(p).bias", [outFeatures], .bias) }
    }

    mutating func conv(_ p: String, _ cin: Int, _ cout: Int, _ kernel: [Int]) {
        add("\(p).weight", [cout, cin] + kernel, .weight)
        add("\(p).bias", [cout], .bias)
    }

    mutating func norm(_ p: String, _ c: Int) {
        add("\(p).weight", [c], .norm)
        add("\(p).bias", [c], .norm)
    }
}

/// Source spellings that differ from the canonical names, and names that are known to be safe to
/// drop. Every rule is documented in formats/README.md; a test checks each against the official
/// key list.
public enum KnownSpellings {
    public struct Rule: Sendable, Equatable {
        /// How the source spells it.
        public var alternate: String
        /// The canonical spelling.
        public var canonical: String
        /// A prefix rule rewrites the start of the name; an infix rule any `.alternate.` segment.
        public var isPrefix: Bool
        public var note: String
    }

    public static let rules: [Rule] = [
        Rule(alternate: "temporal_conv", canonical: "temopral_conv", isPrefix: false,
             note: "the corrected spelling some re-exports use for upstream's `temopral_conv` (ResBlock temporal convolutions)"),
        Rule(alternate: "_forward_module.", canonical: "", isPrefix: true,
             note: "DeepSpeed / Lightning strategy wrapper prefix (the official loader strips it too)"),
    ]

    /// Names with no meaning for inference that some checkpoints carry; dropped without error.
    public static let ignorable: [String] = ["model_ema.decay", "model_ema.num_updates"]

    /// The canonical spelling of a source name (unchanged when no rule applies).
    public static func canonical(_ name: String) -> String {
        var n = name
        for r in rules where r.isPrefix && n.hasPrefix(r.alternate) {
            n = r.canonical + n.dropFirst(r.alternate.count)
        }
        for r in rules where !r.isPrefix {
            n = n.replacingSegment(r.alternate, with: r.canonical)
        }
        return n
    }

    public static func isIgnorable(_ name: String) -> Bool { ignorable.contains(name) }
}

extension String {
    /// Replaces the dot-separated path segment `old` by `new` (whole segments only).
    func replacingSegment(_ old: String, with new: String) -> String {
        guard contains(old) else { return self }
        let parts = split(separator: ".", omittingEmptySubsequences: false).map { $0 == Substring(old) ? Substring(new) : $0 }
        return parts.joined(separator: ".")
    }
}
