// The canonical tensor-name space and the one table of it: every tensor a model of a given
// configuration has, in state-dict order, named exactly as the official checkpoints name it
// (formats/README.md), with its shape, structural role, whether inference reads it, where it
// belongs (spatial / temporal / ...) and the SD 2.x diffusers tensor(s) it comes from. The
// strict import check, the quantization policy, the diffusers-folder import and the LoRA
// resolver all read this table; nothing else spells tensor names.
//
// The module tree is walked the way the upstream constructors build it (parameter names, shapes,
// registration order), at AILab-CVC/VideoCrafter@11bcd76:
//   lvdm/models/ddpm3d.py                    LatentDiffusion buffers (register_schedule, scale_arr)
//   lvdm/modules/networks/openaimodel3d.py   UNetModel, ResBlock, TemporalConvBlock, Up/Downsample
//   lvdm/modules/attention.py                SpatialTransformer, TemporalTransformer,
//                                            BasicTransformerBlock, CrossAttention, FeedForward/GEGLU
//   lvdm/modules/networks/ae_modules.py      Encoder, Decoder, ResnetBlock, AttnBlock
//   lvdm/models/autoencoder.py               AutoencoderKL (quant_conv, post_quant_conv)
// and open_clip 2.22.0 src/open_clip/model.py + transformer.py (CLIP text tower: positional_embedding,
// text_projection, logit_scale, transformer.resblocks.N, token_embedding, ln_final). SD 2.x
// (ldm.modules.diffusionmodules.openaimodel) is the same UNet without the temporal modules, so one
// walk covers vc2, vc1 and sd21.
// The diffusers side follows huggingface/diffusers@58eb52c scripts/convert_diffusers_to_original_
// stable_diffusion.py (UNet/VAE tables) and src/diffusers/pipelines/stable_diffusion/
// convert_from_ckpt.py (convert_open_clip_checkpoint: the fused in_proj row slices). Because the
// LDM side is the real module list, the VideoCrafter2 index shifts fall out by themselves: a
// TemporalTransformer after each SpatialTransformer moves SD's `middle_block.2` to `middle_block.3`
// and the upsamplers of `output_blocks.5/8` from `.2` to `.3`. Parameter names inside each module
// kind are data (the rule tables `Rules`), not string rewriting.
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

/// Where a canonical tensor belongs.
public enum TensorOrigin: String, Sendable, Codable {
    /// A tensor with an SD 2.x counterpart (spatial UNet, VAE, text encoder).
    case spatial
    /// A VideoCrafter temporal module: `init_attn`, the TemporalTransformers, `temopral_conv`.
    case temporal
    /// VideoCrafter-only conditioning (`fps_embedding`): no SD counterpart, not a temporal layer.
    case videoConditioning
    /// The open_clip text block(s) the `penultimate` layer choice never runs.
    case skippedLayer
    /// Stored but never used at inference (`text_projection`, `logit_scale`).
    case unused
    /// DDPM schedule buffers (derived from the diffusion configuration).
    case scheduleBuffer

    /// Modules that SD 2.x LoRAs never target and that a merge leaves alone by default.
    public var isVideoOnly: Bool { self == .temporal || self == .videoConditioning }
}

/// A diffusers sub-model folder of a `StableDiffusionPipeline`.
public enum DiffusersComponent: String, Sendable, Codable, CaseIterable {
    case unet
    case vae
    case textEncoder = "text_encoder"

    /// The weights file inside the pipeline folder.
    public var weightsFile: String {
        switch self {
        case .unet: return "unet/diffusion_pytorch_model.safetensors"
        case .vae: return "vae/diffusion_pytorch_model.safetensors"
        case .textEncoder: return "text_encoder/model.safetensors"
        }
    }
}

/// How a diffusers tensor becomes (part of) the canonical tensor.
public enum NameTransform: Sendable, Equatable {
    /// Same shape, same values.
    case copy
    /// diffusers Linear [O, I] <-> LDM 1x1 conv [O, I, 1, 1] (VAE mid-block attention).
    case reshape
    /// The diffusers tensor is these rows of the canonical one (q/k/v of the fused `in_proj`).
    case rows(Range<Int>)
}

/// One diffusers tensor that feeds a canonical tensor.
public struct DiffusersSource: Sendable, Equatable {
    public var component: DiffusersComponent
    public var key: String
    public var shape: [Int]
    public var transform: NameTransform

    /// The folder-qualified name (`unet/conv_in.weight`, `text_encoder/text_model...`).
    public var folderName: String { "\(component.rawValue)/\(key)" }
}

/// One expected tensor.
public struct TensorSpec: Sendable, Equatable {
    public var name: String
    public var shape: [Int]
    public var component: ModelComponent
    public var role: TensorRole
    public var use: TensorUse
    public var origin: TensorOrigin
    /// The SD 2.x diffusers tensors holding its values: empty when there is no counterpart, one
    /// for a copy or reshape, three (q, k, v rows, in row order) for a fused `in_proj`.
    public var sources: [DiffusersSource]

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
    /// text), with shapes and diffusers sources. `c` must pass `validateStructure()`.
    public static func expected(for c: ModelConfig) -> [TensorSpec] {
        var b = TableBuilder()
        b.component = .schedule
        b.use = .schedule
        b.origin = .scheduleBuffer
        for n in scheduleBufferNames { b.tensor(n, [c.diffusion.timesteps], .buffer) }
        if c.diffusion.useScale {
            // ddpm3d builds scale_arr from linspace over mid_step and pads it with `timesteps`
            // constant values ("bug" branch), hence timesteps + mid_step entries.
            let d = c.diffusion
            b.tensor("scale_arr", [d.fixScaleBug ? d.timesteps : d.timesteps + d.midStep], .buffer)
        }
        unet(&b, c.unet)
        vae(&b, c.vae)
        text(&b, c.text)
        return b.specs
    }

    /// The expected tensors by name.
    public static func expectedByName(for c: ModelConfig) -> [String: TensorSpec] {
        Dictionary(expected(for: c).map { ($0.name, $0) }, uniquingKeysWith: { a, _ in a })
    }

    // MARK: UNet (openaimodel3d.UNetModel.__init__)

    static func unet(_ b: inout TableBuilder, _ u: UNetConfig) {
        b.component = .unet
        b.diffusers = .unet
        b.prefix = unetPrefix
        b.use = .inference
        b.origin = .spatial
        let mc = u.modelChannels, ted = u.timeEmbedDim, levels = u.channelMult.count
        b.add([ParamRule("0", "linear_1", [ted, mc]), ParamRule("2", "linear_2", [ted, ted])], at: "time_embed", diffusers: "time_embedding")
        if u.fpsCond {
            b.add([ParamRule("0", nil, [ted, mc]), ParamRule("2", nil, [ted, ted])], at: "fps_embedding", diffusers: nil, origin: .videoConditioning)
        }
        b.add([ParamRule("", "", [mc, u.inChannels, 3, 3])], at: "input_blocks.0.0", diffusers: "conv_in")
        var initAttn = b.child()
        if u.additionAttention {
            // TemporalTransformer(model_channels, n_heads=8, d_head=num_head_channels, depth=transformer_depth);
            // use_linear is not passed, so proj_in/proj_out are kernel-1 Conv1d.
            initAttn.add(Rules.temporalTransformer(u, channels: mc, heads: 8, headDim: u.numHeadChannels, depth: u.transformerDepth, useLinear: false),
                         at: "init_attn.0", diffusers: nil, origin: .temporal)
        }
        // Input blocks; `skips` mirrors upstream's input_block_chans for the skip connections.
        var skips = [mc]
        var ch = mc, ds = 1, index = 1
        for (level, mult) in u.channelMult.enumerated() {
            let d = "down_blocks.\(level)"
            for j in 0..<u.numResBlocks {
                let p = "input_blocks.\(index)"
                b.add(Rules.resBlock(u, in: ch, out: mult * mc, temporal: u.temporalConv), at: "\(p).0", diffusers: "\(d).resnets.\(j)")
                ch = mult * mc
                if u.attentionResolutions.contains(ds) {
                    b.add(Rules.spatialTransformer(u, channels: ch), at: "\(p).1", diffusers: "\(d).attentions.\(j)")
                    if u.temporalAttention {
                        b.add(Rules.temporalTransformer(u, channels: ch), at: "\(p).2", diffusers: nil, origin: .temporal)
                    }
                }
                skips.append(ch)
                index += 1
            }
            if level != levels - 1 {
                if u.resblockUpdown {
                    b.add(Rules.resBlock(u, in: ch, out: ch, temporal: false), at: "input_blocks.\(index).0", diffusers: nil)
                } else if u.convResample {
                    b.add([ParamRule("op", "conv", [ch, ch, 3, 3])], at: "input_blocks.\(index).0", diffusers: "\(d).downsamplers.0")
                } // else: average pooling, no parameters
                skips.append(ch)
                ds *= 2
                index += 1
            }
        }
        b.specs += initAttn.specs // registered after input_blocks
        // Middle block: [Res, Spatial, (Temporal), Res] -- the second ResBlock's index follows.
        var mid = 0
        b.add(Rules.resBlock(u, in: ch, out: ch, temporal: u.temporalConv), at: "middle_block.\(mid)", diffusers: "mid_block.resnets.0"); mid += 1
        b.add(Rules.spatialTransformer(u, channels: ch), at: "middle_block.\(mid)", diffusers: "mid_block.attentions.0"); mid += 1
        if u.temporalAttention {
            b.add(Rules.temporalTransformer(u, channels: ch), at: "middle_block.\(mid)", diffusers: nil, origin: .temporal); mid += 1
        }
        b.add(Rules.resBlock(u, in: ch, out: ch, temporal: u.temporalConv), at: "middle_block.\(mid)", diffusers: "mid_block.resnets.1")
        // Output blocks: [Res, (Spatial, (Temporal)), (Upsample)] -- the upsampler's index follows.
        index = 0
        for (level, mult) in u.channelMult.enumerated().reversed() {
            let up = "up_blocks.\(levels - 1 - level)" // diffusers runs the deepest level first
            for i in 0...u.numResBlocks {
                let p = "output_blocks.\(index)"
                b.add(Rules.resBlock(u, in: ch + skips.removeLast(), out: mc * mult, temporal: u.temporalConv),
                      at: "\(p).0", diffusers: "\(up).resnets.\(i)")
                ch = mc * mult
                var layer = 1
                if u.attentionResolutions.contains(ds) {
                    b.add(Rules.spatialTransformer(u, channels: ch), at: "\(p).\(layer)", diffusers: "\(up).attentions.\(i)"); layer += 1
                    if u.temporalAttention {
                        b.add(Rules.temporalTransformer(u, channels: ch), at: "\(p).\(layer)", diffusers: nil, origin: .temporal); layer += 1
                    }
                }
                if level != 0 && i == u.numResBlocks {
                    if u.resblockUpdown {
                        b.add(Rules.resBlock(u, in: ch, out: ch, temporal: false), at: "\(p).\(layer)", diffusers: nil)
                    } else if u.convResample {
                        b.add([ParamRule("conv", "conv", [ch, ch, 3, 3])], at: "\(p).\(layer)", diffusers: "\(up).upsamplers.0")
                    }
                    ds /= 2
                }
                index += 1
            }
        }
        b.add([ParamRule("0", "conv_norm_out", [ch]), ParamRule("2", "conv_out", [u.outChannels, mc, 3, 3])], at: "out", diffusers: "")
    }

    // MARK: VAE (AutoencoderKL: encoder, decoder, quant_conv, post_quant_conv)

    static func vae(_ b: inout TableBuilder, _ v: VAEConfig) {
        b.component = .vae
        b.diffusers = .vae
        b.prefix = vaePrefix
        b.origin = .spatial
        let n = v.chMult.count
        let inMult = [1] + v.chMult
        func mid(_ side: String, _ c: Int) {
            b.add(Rules.vaeResBlock(in: c, out: c), at: "\(side).mid.block_1", diffusers: "\(side).mid_block.resnets.0")
            b.add(Rules.vaeAttention(c), at: "\(side).mid.attn_1", diffusers: "\(side).mid_block.attentions.0")
            b.add(Rules.vaeResBlock(in: c, out: c), at: "\(side).mid.block_2", diffusers: "\(side).mid_block.resnets.1")
        }
        // Encoder
        b.use = .vaeEncoder
        b.add([ParamRule("conv_in", "conv_in", [v.ch, v.inChannels, 3, 3])], at: "encoder", diffusers: "encoder")
        var res = v.resolution
        var bin = v.ch
        for level in 0..<n {
            bin = v.ch * inMult[level]
            let bout = v.ch * v.chMult[level]
            var attn: [Int] = []
            for i in 0..<v.numResBlocks {
                b.add(Rules.vaeResBlock(in: bin, out: bout), at: "encoder.down.\(level).block.\(i)",
                      diffusers: "encoder.down_blocks.\(level).resnets.\(i)")
                bin = bout
                if v.attnResolutions.contains(res) { attn.append(bin) }
            }
            // Attention outside the mid block has no SD counterpart (SD's VAE has none).
            for (i, c) in attn.enumerated() { b.add(Rules.vaeAttention(c), at: "encoder.down.\(level).attn.\(i)", diffusers: nil) }
            if level != n - 1 {
                b.add([ParamRule("conv", "conv", [bin, bin, 3, 3])], at: "encoder.down.\(level).downsample",
                      diffusers: "encoder.down_blocks.\(level).downsamplers.0")
                res /= 2
            }
        }
        mid("encoder", bin)
        b.add([ParamRule("norm_out", "conv_norm_out", [bin]),
               ParamRule("conv_out", "conv_out", [v.doubleZ ? 2 * v.zChannels : v.zChannels, bin, 3, 3])], at: "encoder", diffusers: "encoder")
        // Decoder (LDM numbers its levels bottom-up, diffusers top-down).
        b.use = .inference
        bin = v.ch * v.chMult[n - 1]
        res = v.resolution >> (n - 1)
        b.add([ParamRule("conv_in", "conv_in", [bin, v.zChannels, 3, 3])], at: "decoder", diffusers: "decoder")
        mid("decoder", bin)
        // Built from the deepest level up, stored with `up.insert(0, ...)`: emitted in index order.
        var built: [[TensorSpec]] = Array(repeating: [], count: n)
        for level in (0..<n).reversed() {
            var lb = b.child()
            let up = "decoder.up_blocks.\(n - 1 - level)"
            let bout = v.ch * v.chMult[level]
            var attn: [Int] = []
            for i in 0...v.numResBlocks {
                lb.add(Rules.vaeResBlock(in: bin, out: bout), at: "decoder.up.\(level).block.\(i)", diffusers: "\(up).resnets.\(i)")
                bin = bout
                if v.attnResolutions.contains(res) { attn.append(bin) }
            }
            for (i, c) in attn.enumerated() { lb.add(Rules.vaeAttention(c), at: "decoder.up.\(level).attn.\(i)", diffusers: nil) }
            if level != 0 {
                lb.add([ParamRule("conv", "conv", [bin, bin, 3, 3])], at: "decoder.up.\(level).upsample", diffusers: "\(up).upsamplers.0")
                res *= 2
            }
            built[level] = lb.specs
        }
        for l in built { b.specs += l }
        b.add([ParamRule("norm_out", "conv_norm_out", [bin]), ParamRule("conv_out", "conv_out", [v.outCh, bin, 3, 3])],
              at: "decoder", diffusers: "decoder")
        b.use = .vaeEncoder
        b.add([ParamRule("quant_conv", "quant_conv", [2 * v.embedDim, 2 * v.zChannels, 1, 1])], at: "", diffusers: "")
        b.use = .inference
        b.add([ParamRule("post_quant_conv", "post_quant_conv", [v.zChannels, v.embedDim, 1, 1])], at: "", diffusers: "")
    }

    // MARK: text (open_clip CLIP without the visual tower <-> transformers CLIPTextModel)

    /// The diffusers model has only the blocks that run (`layersRun`).
    static func text(_ b: inout TableBuilder, _ t: TextEncoderConfig) {
        b.component = .text
        b.diffusers = .textEncoder
        b.prefix = textPrefix
        let w = t.width
        b.use = .inference
        b.origin = .spatial
        b.add([ParamRule("positional_embedding", "embeddings.position_embedding.weight", [t.contextLength, w], parameter: .embedding)],
              at: "", diffusers: "text_model")
        b.use = .textHead
        b.origin = .unused
        b.add([ParamRule("text_projection", nil, [w, t.embedDim], parameter: .weight),
               ParamRule("logit_scale", nil, [], parameter: .scalar)], at: "", diffusers: nil)
        for i in 0..<t.layers {
            let runs = i < t.layersRun
            b.use = runs ? .inference : .skippedTextBlock
            b.origin = runs ? .spatial : .skippedLayer
            let p = "transformer.resblocks.\(i)"
            let hf = runs ? "text_model.encoder.layers.\(i)" : nil
            b.add([ParamRule("ln_1", "layer_norm1", [w])], at: p, diffusers: hf)
            // The fused in_proj is the q, k, v projections stacked by rows.
            for (param, shape, suffix, role) in [("in_proj_weight", [3 * w, w], "weight", TensorRole.weight), ("in_proj_bias", [3 * w], "bias", .bias)] {
                let sources = hf.map { h in
                    ["q_proj", "k_proj", "v_proj"].enumerated().map { k, proj in
                        DiffusersSource(component: .textEncoder, key: "\(h).self_attn.\(proj).\(suffix)",
                                        shape: [w] + shape.dropFirst(), transform: .rows(k * w ..< (k + 1) * w))
                    }
                } ?? []
                b.tensor("\(p).attn.\(param)", shape, role, sources: sources)
            }
            b.add([ParamRule("attn.out_proj", "self_attn.out_proj", [w, w]),
                   ParamRule("ln_2", "layer_norm2", [w]),
                   ParamRule("mlp.c_fc", "mlp.fc1", [4 * w, w]),
                   ParamRule("mlp.c_proj", "mlp.fc2", [w, 4 * w])], at: p, diffusers: hf)
        }
        b.use = .inference
        b.origin = .spatial
        b.add([ParamRule("token_embedding", "embeddings.token_embedding", [t.vocabSize, w], bias: false, role: .embedding),
               ParamRule("ln_final", "final_layer_norm", [w])], at: "", diffusers: "text_model")
    }
}

// MARK: - rule tables

/// One parameterised submodule: LDM suffix, diffusers suffix (nil: no counterpart) and weight
/// shape. A module emits `<suffix>.weight` (and, with `bias`, `<suffix>.bias` of shape
/// [shape[0]]); a bare `parameter` emits `<suffix>` itself with that role.
struct ParamRule {
    var ldm: String
    var diffusers: String?
    var shape: [Int]
    var bias: Bool
    var transform: NameTransform
    var origin: TensorOrigin?
    /// The weight's role; nil: a norm for rank 1, a weight otherwise.
    var role: TensorRole?
    /// Non-nil for a bare parameter (no `.weight` suffix, no bias).
    var parameter: TensorRole?

    init(_ ldm: String, _ diffusers: String?, _ shape: [Int], bias: Bool = true, transform: NameTransform = .copy,
         origin: TensorOrigin? = nil, role: TensorRole? = nil, parameter: TensorRole? = nil) {
        self.ldm = ldm; self.diffusers = diffusers; self.shape = shape; self.bias = bias
        self.transform = transform; self.origin = origin; self.role = role; self.parameter = parameter
    }

    /// The same rule inside submodule `ldm` (diffusers `diffusers`).
    func nested(_ ldm: String, _ diffusers: String) -> ParamRule {
        var r = self
        r.ldm = ldm + "." + self.ldm
        r.diffusers = self.diffusers.map { diffusers + "." + $0 }
        return r
    }
}

/// Accumulates specs under the current prefix / component / use / origin.
struct TableBuilder {
    var specs: [TensorSpec] = []
    var prefix = ""
    var component = ModelComponent.unet
    var diffusers: DiffusersComponent?
    var use = TensorUse.inference
    var origin = TensorOrigin.spatial

    /// An empty builder with the same settings.
    func child() -> TableBuilder {
        var c = self
        c.specs = []
        return c
    }

    mutating func tensor(_ name: String, _ shape: [Int], _ role: TensorRole, origin: TensorOrigin? = nil, sources: [DiffusersSource] = []) {
        specs.append(TensorSpec(name: prefix + name, shape: shape, component: component, role: role, use: use,
                                origin: origin ?? self.origin, sources: sources))
    }

    /// Expands `rules` of the module at LDM path `ldm` (diffusers path `dpath`; nil when the
    /// module has no counterpart) into its tensors.
    mutating func add(_ rules: [ParamRule], at ldm: String, diffusers dpath: String?, origin: TensorOrigin? = nil) {
        for r in rules {
            let o = r.origin ?? origin
            let name = join(ldm, r.ldm)
            let dName = dpath.flatMap { d in r.diffusers.map { join(d, $0) } }
            func source(_ key: String, _ shape: [Int], _ t: NameTransform) -> [DiffusersSource] {
                guard let dName, let diffusers else { return [] }
                return [DiffusersSource(component: diffusers, key: join(dName, key), shape: shape, transform: t)]
            }
            if let role = r.parameter {
                tensor(name, r.shape, role, origin: o, sources: source("", r.shape, r.transform))
                continue
            }
            let isNorm = r.shape.count == 1
            // A reshape stores the 1x1 conv [O, I, 1, 1] as a Linear [O, I].
            let dShape = r.transform == .reshape ? Array(r.shape.prefix(2)) : r.shape
            tensor(name + ".weight", r.shape, r.role ?? (isNorm ? .norm : .weight), origin: o, sources: source("weight", dShape, r.transform))
            if r.bias {
                let bShape = [r.shape.first ?? 0]
                tensor(name + ".bias", bShape, isNorm ? .norm : .bias, origin: o, sources: source("bias", bShape, .copy))
            }
        }
    }

    private func join(_ a: String, _ b: String) -> String { a.isEmpty ? b : (b.isEmpty ? a : a + "." + b) }
}

/// Parameters of each module kind, in registration order, with their diffusers names.
enum Rules {
    /// ResBlock(channels, emb_channels, out_channels, use_temporal_conv, tempspatial_aware) <->
    /// diffusers ResnetBlock2D. `temopral_conv` is VideoCrafter's TemporalConvBlock: GroupNorm +
    /// Conv3d (the Sequential indices skip SiLU/Dropout), kernels (3,1,1) or (3,3,3) for the first
    /// two when tempspatial_aware; the last two are always (3,1,1).
    static func resBlock(_ u: UNetConfig, in cin: Int, out cout: Int, temporal: Bool) -> [ParamRule] {
        var r = [
            ParamRule("in_layers.0", "norm1", [cin]),
            ParamRule("in_layers.2", "conv1", [cout, cin, 3, 3]),
            ParamRule("emb_layers.1", "time_emb_proj", [u.useScaleShiftNorm ? 2 * cout : cout, u.timeEmbedDim]),
            ParamRule("out_layers.0", "norm2", [cout]),
            ParamRule("out_layers.3", "conv2", [cout, cout, 3, 3]),
        ]
        if cin != cout { r.append(ParamRule("skip_connection", "conv_shortcut", [cout, cin, 1, 1])) }
        if temporal {
            let k: [Int] = u.tempspatialAware ? [3, 3, 3] : [3, 1, 1]
            for (i, (conv, kernel)) in [("conv1.2", k), ("conv2.3", k), ("conv3.3", [3, 1, 1]), ("conv4.3", [3, 1, 1])].enumerated() {
                r.append(ParamRule("temopral_conv.conv\(i + 1).0", nil, [cout], origin: .temporal))
                r.append(ParamRule("temopral_conv.\(conv)", nil, [cout, cout] + kernel, origin: .temporal))
            }
        }
        return r
    }

    /// SpatialTransformer (diffusers Transformer2DModel): text cross-attention, `use_linear`
    /// projections or 1x1 Conv2d.
    static func spatialTransformer(_ u: UNetConfig, channels ch: Int) -> [ParamRule] {
        let (h, d) = u.heads(for: ch)
        return transformer(channels: ch, heads: h, headDim: d, context: u.contextDim, depth: u.transformerDepth,
                           projKernel: u.useLinear ? nil : [1, 1], relativePosition: nil)
    }

    /// TemporalTransformer: Conv1d projections when `use_linear` is off, self-attention only with
    /// `temporal_selfatt_only`, relative-position tables with `use_relative_position` (VideoCrafter1).
    /// temporal_transformer_depth is 1 upstream (not exposed by the config).
    static func temporalTransformer(_ u: UNetConfig, channels ch: Int, heads: Int? = nil, headDim: Int? = nil,
                                    depth: Int = 1, useLinear: Bool? = nil) -> [ParamRule] {
        let (h0, d0) = u.heads(for: ch)
        let h = heads ?? h0, d = headDim ?? d0
        return transformer(channels: ch, heads: h, headDim: d, context: u.temporalSelfAttOnly ? nil : u.contextDim, depth: depth,
                           projKernel: (useLinear ?? u.useLinear) ? nil : [1], relativePosition: u.useRelativePosition ? u.temporalLength : nil)
    }

    /// norm, proj_in, BasicTransformerBlocks, proj_out (the same names in LDM and diffusers).
    static func transformer(channels c: Int, heads: Int, headDim: Int, context: Int?, depth: Int, projKernel: [Int]?,
                            relativePosition: Int?) -> [ParamRule] {
        let inner = heads * headDim
        let k = projKernel ?? []
        var r = [ParamRule("norm", "norm", [c]), ParamRule("proj_in", "proj_in", [inner, c] + k)]
        for d in 0..<depth {
            let p = "transformer_blocks.\(d)"
            r += transformerBlock(inner: inner, headDim: headDim, context: context ?? inner, relativePosition: relativePosition)
                .map { $0.nested(p, p) }
        }
        r.append(ParamRule("proj_out", "proj_out", [c, inner] + k))
        return r
    }

    /// BasicTransformerBlock: attn1 (self), ff (GEGLU, mult 4), attn2 (cross or self), norm1-3.
    static func transformerBlock(inner: Int, headDim: Int, context: Int, relativePosition: Int?) -> [ParamRule] {
        func attention(_ a: String, _ kv: Int) -> [ParamRule] {
            var r = [
                ParamRule("to_q", "to_q", [inner, inner], bias: false),
                ParamRule("to_k", "to_k", [inner, kv], bias: false),
                ParamRule("to_v", "to_v", [inner, kv], bias: false),
                ParamRule("to_out.0", "to_out.0", [inner, inner]),
            ]
            if let L = relativePosition {
                r.append(ParamRule("relative_position_k.embeddings_table", nil, [2 * L + 1, headDim], origin: .temporal, parameter: .embedding))
                r.append(ParamRule("relative_position_v.embeddings_table", nil, [2 * L + 1, headDim], origin: .temporal, parameter: .embedding))
            }
            return r.map { $0.nested(a, a) }
        }
        let ff = inner * 4
        return attention("attn1", inner)
            + [ParamRule("ff.net.0.proj", "ff.net.0.proj", [2 * ff, inner]), ParamRule("ff.net.2", "ff.net.2", [inner, ff])]
            + attention("attn2", context)
            + [ParamRule("norm1", "norm1", [inner]), ParamRule("norm2", "norm2", [inner]), ParamRule("norm3", "norm3", [inner])]
    }

    /// ldm ResnetBlock (VAE) <-> diffusers ResnetBlock2D.
    static func vaeResBlock(in cin: Int, out cout: Int) -> [ParamRule] {
        var r = [
            ParamRule("norm1", "norm1", [cin]),
            ParamRule("conv1", "conv1", [cout, cin, 3, 3]),
            ParamRule("norm2", "norm2", [cout]),
            ParamRule("conv2", "conv2", [cout, cout, 3, 3]),
        ]
        if cin != cout { r.append(ParamRule("nin_shortcut", "conv_shortcut", [cout, cin, 1, 1])) }
        return r
    }

    /// ldm AttnBlock (1x1 convs) <-> diffusers Attention (Linear, so weights are reshaped).
    static func vaeAttention(_ c: Int) -> [ParamRule] {
        [
            ParamRule("norm", "group_norm", [c]),
            ParamRule("q", "to_q", [c, c, 1, 1], transform: .reshape),
            ParamRule("k", "to_k", [c, c, 1, 1], transform: .reshape),
            ParamRule("v", "to_v", [c, c, 1, 1], transform: .reshape),
            ParamRule("proj_out", "to_out.0", [c, c, 1, 1], transform: .reshape),
        ]
    }
}

// MARK: - lookup

/// The table of a configuration indexed by canonical name and by diffusers tensor (the LoRA
/// resolver and the diffusers-folder import read it this way).
public struct ModelTensorNames: Sendable {
    public let kind: ModelKind
    /// `ModelTensors.expected(for:)`, in state-dict order.
    public let tensors: [TensorSpec]
    private let byName: [String: Int]
    private let byDiffusers: [String: (tensor: Int, source: Int)]

    /// The whole model: schedule buffers, UNet, VAE (encoder and decoder), text tower. Refuses
    /// configurations whose modules have no defined diffusers correspondence.
    public init(config c: ModelConfig) throws {
        try c.validateStructure()
        try c.unet.validate(); try c.vae.validate(); try c.text.validate()
        let u = c.unet
        guard !u.resblockUpdown, !u.useScaleShiftNorm, u.convResample, !u.tempspatialAware else {
            throw ConfigError("unet: resblock_updown, use_scale_shift_norm, conv_resample=false and tempspatial_aware are not supported")
        }
        if c.kind == .sd21, u.temporalConv || u.temporalAttention || u.additionAttention || u.fpsCond {
            throw ConfigError("unet: an SD 2.1 model has no temporal_conv / temporal_attention / addition_attention / fps_cond")
        }
        kind = c.kind
        tensors = ModelTensors.expected(for: c)
        var byName: [String: Int] = [:]
        var byDiffusers: [String: (Int, Int)] = [:]
        for (i, t) in tensors.enumerated() {
            guard byName.updateValue(i, forKey: t.name) == nil else {
                throw ConfigError("name table: canonical tensor '\(t.name)' enumerated twice")
            }
            for (j, s) in t.sources.enumerated() {
                guard byDiffusers.updateValue((i, j), forKey: s.folderName) == nil else {
                    throw ConfigError("name table: diffusers tensor '\(s.folderName)' feeds two canonical tensors")
                }
            }
        }
        self.byName = byName
        self.byDiffusers = byDiffusers
    }

    public func tensor(named name: String) -> TensorSpec? { byName[name].map { tensors[$0] } }

    /// The canonical tensor a diffusers tensor feeds, and how.
    public func canonical(component: DiffusersComponent, key: String) -> (tensor: TensorSpec, source: DiffusersSource)? {
        guard let (i, j) = byDiffusers["\(component.rawValue)/\(key)"] else { return nil }
        return (tensors[i], tensors[i].sources[j])
    }

    /// Origin of a canonical name (nil for names the configuration does not produce).
    public func origin(of name: String) -> TensorOrigin? { tensor(named: name)?.origin }
}
