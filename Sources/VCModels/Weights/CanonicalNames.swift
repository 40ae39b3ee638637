// Canonical (LDM / VideoCrafter) tensor names of a model, enumerated from its configuration, with
// each tensor's origin (spatial / temporal / ...) and the SD 2.x diffusers tensor it comes from.
// The LoRA resolver (LoRA.swift) is built on this table: unlike an SD-only mapping it follows the
// VideoCrafter2 module list, so diffusers/kohya names land on VC2's shifted indices.
//
// The module tree is walked the way the upstream constructors build it:
//   UNet: AILab-CVC/VideoCrafter@11bcd76 lvdm/modules/networks/openaimodel3d.py (UNetModel.__init__,
//         ResBlock, TemporalConvBlock) and lvdm/modules/attention.py (SpatialTransformer,
//         TemporalTransformer); with the temporal switches off it is SD 2.1's
//         ldm/modules/diffusionmodules/openaimodel.py layout.
//   VAE:  lvdm/modules/networks/ae_modules.py (Encoder, Decoder) = SD's ldm AutoencoderKL.
//   Text: mlfoundations/open_clip v2.22.0 transformer.py (TextTransformer, ResidualAttentionBlock).
// The diffusers side follows huggingface/diffusers@58eb52c scripts/convert_diffusers_to_original_
// stable_diffusion.py (UNet/VAE tables) and src/diffusers/pipelines/stable_diffusion/
// convert_from_ckpt.py (convert_open_clip_checkpoint: the fused in_proj row slices).
//
// Because the LDM side is enumerated from the real module list, the VideoCrafter2 index shifts
// fall out by themselves: a TemporalTransformer after each SpatialTransformer moves SD's
// `middle_block.2` to `middle_block.3` and the upsamplers of `output_blocks.5/8` from `.2` to `.3`.
// Parameter names inside each module kind are data (the rule tables below), not string rewriting.
import VCTensor

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

/// A canonical tensor: its LDM/VideoCrafter key, shape, origin and diffusers source(s).
public struct CanonicalTensor: Sendable, Equatable {
    public var name: String
    /// nil when the configuration does not determine it (`text_projection`'s embedding width).
    public var shape: [Int]?
    public var origin: TensorOrigin
    /// Empty for tensors without a diffusers counterpart; three for a fused `in_proj`.
    public var sources: [DiffusersSource]
}

/// Every canonical tensor of a model configuration, with the SD 2.x diffusers mapping.
public struct ModelTensorNames: Sendable {
    public static let unetPrefix = "model.diffusion_model."
    public static let vaePrefix = "first_stage_model."
    public static let textPrefix = "cond_stage_model.model."

    public let kind: ModelKind
    public let tensors: [CanonicalTensor]
    private let byName: [String: Int]
    private let byDiffusers: [String: (tensor: Int, source: Int)]

    /// Enumerates the whole model: UNet, VAE (encoder and decoder), text tower, schedule buffers.
    public init(config: ModelConfig) throws {
        var all = try ModelTensorNames.unet(config.unet, kind: config.kind)
        all += try ModelTensorNames.vae(config.vae)
        all += try ModelTensorNames.textEncoder(config.text)
        all += ModelTensorNames.scheduleBuffers(config.diffusion, kind: config.kind)
        try self.init(kind: config.kind, tensors: all)
    }

    /// A name table over an explicit list (names must be unique).
    public init(kind: ModelKind, tensors: [CanonicalTensor]) throws {
        self.kind = kind
        self.tensors = tensors
        var byName: [String: Int] = [:]
        var byDiffusers: [String: (Int, Int)] = [:]
        for (i, t) in tensors.enumerated() {
            guard byName.updateValue(i, forKey: t.name) == nil else {
                throw ConfigError("name table: canonical tensor '\(t.name)' enumerated twice")
            }
            for (j, s) in t.sources.enumerated() {
                let k = "\(s.component.rawValue)/\(s.key)"
                guard byDiffusers.updateValue((i, j), forKey: k) == nil else {
                    throw ConfigError("name table: diffusers tensor '\(k)' feeds two canonical tensors")
                }
            }
        }
        self.byName = byName
        self.byDiffusers = byDiffusers
    }

    public func tensor(named name: String) -> CanonicalTensor? { byName[name].map { tensors[$0] } }

    /// The canonical tensor a diffusers tensor feeds, and how.
    public func canonical(component: DiffusersComponent, key: String) -> (tensor: CanonicalTensor, source: DiffusersSource)? {
        guard let (i, j) = byDiffusers["\(component.rawValue)/\(key)"] else { return nil }
        return (tensors[i], tensors[i].sources[j])
    }

    /// Origin of a canonical name (nil for names the configuration does not produce).
    public func origin(of name: String) -> TensorOrigin? { tensor(named: name)?.origin }
}

// MARK: - rule tables

/// One parameterised submodule: LDM suffix, diffusers suffix (nil: no counterpart) and weight
/// shape; `bias` adds `<suffix>.bias` of shape [weight.shape[0]].
struct ParamRule {
    var ldm: String
    var diffusers: String?
    var shape: [Int]
    var bias: Bool
    var transform: NameTransform
    var origin: TensorOrigin?

    init(_ ldm: String, _ diffusers: String?, _ shape: [Int], bias: Bool = true, transform: NameTransform = .copy, origin: TensorOrigin? = nil) {
        self.ldm = ldm; self.diffusers = diffusers; self.shape = shape; self.bias = bias
        self.transform = transform; self.origin = origin
    }
}

/// Collects canonical tensors of one component.
struct TensorList {
    var items: [CanonicalTensor] = []
    let ldmPrefix: String
    let component: DiffusersComponent

    /// Expands `rules` of a module at LDM path `ldm` (diffusers path `diffusers`, nil when the
    /// module has no counterpart) into weight (+ bias) tensors of origin `origin`.
    mutating func add(_ rules: [ParamRule], ldm: String, diffusers: String?, origin: TensorOrigin) {
        for r in rules {
            let o = r.origin ?? origin
            let dPath = diffusers.flatMap { d in r.diffusers.map { join(d, $0) } }
            let dShape: [Int]
            if case .reshape = r.transform { dShape = Array(r.shape.prefix(2)) } else { dShape = r.shape }
            emit(join(ldm, r.ldm) + ".weight", r.shape, o, dPath.map { ($0 + ".weight", dShape, r.transform) })
            if r.bias {
                let bShape = [r.shape.first ?? 0]
                emit(join(ldm, r.ldm) + ".bias", bShape, o, dPath.map { ($0 + ".bias", bShape, NameTransform.copy) })
            }
        }
    }

    mutating func emit(_ ldm: String, _ shape: [Int]?, _ origin: TensorOrigin, _ source: (String, [Int], NameTransform)?) {
        let sources = source.map { [DiffusersSource(component: component, key: $0.0, shape: $0.1, transform: $0.2)] } ?? []
        items.append(CanonicalTensor(name: ldmPrefix + ldm, shape: shape, origin: origin, sources: sources))
    }

    private func join(_ a: String, _ b: String) -> String { a.isEmpty ? b : (b.isEmpty ? a : a + "." + b) }
}

enum Rules {
    /// ResBlock (LDM) <-> ResnetBlock2D (diffusers); `temopral_conv` is VideoCrafter's
    /// TemporalConvBlock (GroupNorm + Conv3d (3,1,1); the Sequential indices skip SiLU/Dropout).
    static func resBlock(cin: Int, cout: Int, temb: Int, temporalConv: Bool) -> [ParamRule] {
        var r = [
            ParamRule("in_layers.0", "norm1", [cin]),
            ParamRule("in_layers.2", "conv1", [cout, cin, 3, 3]),
            ParamRule("emb_layers.1", "time_emb_proj", [cout, temb]),
            ParamRule("out_layers.0", "norm2", [cout]),
            ParamRule("out_layers.3", "conv2", [cout, cout, 3, 3]),
        ]
        if cin != cout { r.append(ParamRule("skip_connection", "conv_shortcut", [cout, cin, 1, 1])) }
        if temporalConv {
            for (i, conv) in ["conv1.2", "conv2.3", "conv3.3", "conv4.3"].enumerated() {
                r.append(ParamRule("temopral_conv.conv\(i + 1).0", nil, [cout], origin: .temporal))
                r.append(ParamRule("temopral_conv.\(conv)", nil, [cout, cout, 3, 1, 1], origin: .temporal))
            }
        }
        return r
    }

    /// BasicTransformerBlock (same names in LDM and diffusers). `context` is attn2's key/value
    /// width (the text width for spatial blocks, `inner` for self-attention-only temporal blocks).
    static func transformerBlock(inner: Int, context: Int) -> [ParamRule] {
        let ff = inner * 4
        return [
            ParamRule("attn1.to_q", "attn1.to_q", [inner, inner], bias: false),
            ParamRule("attn1.to_k", "attn1.to_k", [inner, inner], bias: false),
            ParamRule("attn1.to_v", "attn1.to_v", [inner, inner], bias: false),
            ParamRule("attn1.to_out.0", "attn1.to_out.0", [inner, inner]),
            ParamRule("attn2.to_q", "attn2.to_q", [inner, inner], bias: false),
            ParamRule("attn2.to_k", "attn2.to_k", [inner, context], bias: false),
            ParamRule("attn2.to_v", "attn2.to_v", [inner, context], bias: false),
            ParamRule("attn2.to_out.0", "attn2.to_out.0", [inner, inner]),
            ParamRule("ff.net.0.proj", "ff.net.0.proj", [2 * ff, inner]),
            ParamRule("ff.net.2", "ff.net.2", [inner, ff]),
            ParamRule("norm1", "norm1", [inner]),
            ParamRule("norm2", "norm2", [inner]),
            ParamRule("norm3", "norm3", [inner]),
        ]
    }

    /// SpatialTransformer / TemporalTransformer (and diffusers Transformer2DModel). `projKernelDims`
    /// is 0 for linear projections, 1 for Conv1d (temporal, use_linear off) and 2 for 1x1 Conv2d.
    static func transformer(channels c: Int, inner: Int, context: Int, depth: Int, projKernelDims: Int) -> [ParamRule] {
        let k = Array(repeating: 1, count: projKernelDims)
        var r = [ParamRule("norm", "norm", [c]), ParamRule("proj_in", "proj_in", [inner, c] + k)]
        for d in 0..<depth {
            for p in transformerBlock(inner: inner, context: context) {
                var q = p
                q.ldm = "transformer_blocks.\(d).\(p.ldm)"
                q.diffusers = p.diffusers.map { "transformer_blocks.\(d).\($0)" }
                r.append(q)
            }
        }
        r.append(ParamRule("proj_out", "proj_out", [c, inner] + k))
        return r
    }

    /// ldm ResnetBlock (VAE) <-> diffusers ResnetBlock2D.
    static func vaeResBlock(cin: Int, cout: Int) -> [ParamRule] {
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

    /// open_clip ResidualAttentionBlock minus the fused in_proj (handled separately) <->
    /// transformers CLIPEncoderLayer.
    static func textBlock(width w: Int) -> [ParamRule] {
        [
            ParamRule("ln_1", "layer_norm1", [w]),
            ParamRule("attn.out_proj", "self_attn.out_proj", [w, w]),
            ParamRule("ln_2", "layer_norm2", [w]),
            ParamRule("mlp.c_fc", "mlp.fc1", [4 * w, w]),
            ParamRule("mlp.c_proj", "mlp.fc2", [w, 4 * w]),
        ]
    }
}

// MARK: - enumeration

extension ModelTensorNames {
    /// The UNet (`model.diffusion_model.*`). With `temporalConv`, `temporalAttention`,
    /// `additionAttention` and `fpsCond` off this is SD 2.x's UNet.
    public static func unet(_ c: UNetConfig, kind: ModelKind) throws -> [CanonicalTensor] {
        try c.validate()
        guard !c.resblockUpdown, !c.useScaleShiftNorm, c.convResample, !c.tempspatialAware else {
            throw ConfigError("unet: resblock_updown, use_scale_shift_norm, conv_resample=false and tempspatial_aware are not supported")
        }
        if kind == .sd21, c.temporalConv || c.temporalAttention || c.additionAttention || c.fpsCond {
            throw ConfigError("unet: an SD 2.1 model has no temporal_conv / temporal_attention / addition_attention / fps_cond")
        }
        var out = TensorList(ldmPrefix: unetPrefix, component: .unet)
        let mc = c.modelChannels, temb = c.timeEmbedDim, levels = c.channelMult.count, nrb = c.numResBlocks
        let proj = c.useLinear ? 0 : 2
        let tproj = c.useLinear ? 0 : 1 // TemporalTransformer uses Conv1d when use_linear is off

        func spatial(_ ch: Int) -> [ParamRule] {
            let (h, d) = c.heads(for: ch)
            return Rules.transformer(channels: ch, inner: h * d, context: c.contextDim, depth: c.transformerDepth, projKernelDims: proj)
        }
        func temporal(_ ch: Int) -> [ParamRule] {
            let (h, d) = c.heads(for: ch)
            // temporal_transformer_depth is 1 upstream (not exposed by the config).
            return Rules.transformer(channels: ch, inner: h * d, context: c.temporalSelfAttOnly ? h * d : c.contextDim,
                                     depth: 1, projKernelDims: tproj)
        }
        func res(_ cin: Int, _ cout: Int) -> [ParamRule] {
            Rules.resBlock(cin: cin, cout: cout, temb: temb, temporalConv: c.temporalConv)
        }

        out.add([ParamRule("0", "linear_1", [temb, mc]), ParamRule("2", "linear_2", [temb, temb])],
                ldm: "time_embed", diffusers: "time_embedding", origin: .spatial)
        if c.fpsCond {
            out.add([ParamRule("0", nil, [temb, mc]), ParamRule("2", nil, [temb, temb])],
                    ldm: "fps_embedding", diffusers: nil, origin: .videoConditioning)
        }
        out.add([ParamRule("0", "", [mc, c.inChannels, 3, 3])], ldm: "input_blocks.0", diffusers: "conv_in", origin: .spatial)
        if c.additionAttention {
            guard c.numHeadChannels > 0 else { throw ConfigError("unet: addition_attention needs num_head_channels") }
            // init_attn: TemporalTransformer(model_channels, n_heads=8, d_head=num_head_channels),
            // constructed without use_linear (Conv1d projections), self-attention only.
            let inner = 8 * c.numHeadChannels
            out.add(Rules.transformer(channels: mc, inner: inner, context: c.temporalSelfAttOnly ? inner : c.contextDim,
                                      depth: c.transformerDepth, projKernelDims: 1),
                    ldm: "init_attn.0", diffusers: nil, origin: .temporal)
        }

        // Input blocks. `chans` mirrors upstream's input_block_chans for the skip connections.
        var chans = [mc], ch = mc, ds = 1, block = 1
        for (level, mult) in c.channelMult.enumerated() {
            let attn = c.attentionResolutions.contains(ds)
            for j in 0..<nrb {
                let cout = mult * mc
                let d = "down_blocks.\(level)"
                out.add(res(ch, cout), ldm: "input_blocks.\(block).0", diffusers: "\(d).resnets.\(j)", origin: .spatial)
                ch = cout
                if attn {
                    out.add(spatial(ch), ldm: "input_blocks.\(block).1", diffusers: "\(d).attentions.\(j)", origin: .spatial)
                    if c.temporalAttention {
                        out.add(temporal(ch), ldm: "input_blocks.\(block).2", diffusers: nil, origin: .temporal)
                    }
                }
                chans.append(ch); block += 1
            }
            if level != levels - 1 {
                out.add([ParamRule("op", "conv", [ch, ch, 3, 3])], ldm: "input_blocks.\(block).0",
                        diffusers: "down_blocks.\(level).downsamplers.0", origin: .spatial)
                chans.append(ch); block += 1; ds *= 2
            }
        }

        // Middle block: [Res, Spatial, (Temporal), Res] -- the second ResBlock's index follows.
        var mid = 0
        out.add(res(ch, ch), ldm: "middle_block.\(mid)", diffusers: "mid_block.resnets.0", origin: .spatial); mid += 1
        out.add(spatial(ch), ldm: "middle_block.\(mid)", diffusers: "mid_block.attentions.0", origin: .spatial); mid += 1
        if c.temporalAttention {
            out.add(temporal(ch), ldm: "middle_block.\(mid)", diffusers: nil, origin: .temporal); mid += 1
        }
        out.add(res(ch, ch), ldm: "middle_block.\(mid)", diffusers: "mid_block.resnets.1", origin: .spatial)

        // Output blocks: [Res, (Spatial, (Temporal)), (Upsample)] -- the upsampler's index follows.
        block = 0
        for (level, mult) in c.channelMult.enumerated().reversed() {
            let up = "up_blocks.\(levels - 1 - level)"
            let attn = c.attentionResolutions.contains(ds)
            for i in 0...nrb {
                let ich = chans.removeLast()
                let cout = mc * mult
                var sub = 0
                out.add(res(ch + ich, cout), ldm: "output_blocks.\(block).\(sub)", diffusers: "\(up).resnets.\(i)", origin: .spatial); sub += 1
                ch = cout
                if attn {
                    out.add(spatial(ch), ldm: "output_blocks.\(block).\(sub)", diffusers: "\(up).attentions.\(i)", origin: .spatial); sub += 1
                    if c.temporalAttention {
                        out.add(temporal(ch), ldm: "output_blocks.\(block).\(sub)", diffusers: nil, origin: .temporal); sub += 1
                    }
                }
                if level > 0, i == nrb {
                    out.add([ParamRule("conv", "conv", [ch, ch, 3, 3])], ldm: "output_blocks.\(block).\(sub)",
                            diffusers: "\(up).upsamplers.0", origin: .spatial)
                    ds /= 2
                }
                block += 1
            }
        }
        out.add([ParamRule("0", "conv_norm_out", [ch]), ParamRule("2", "conv_out", [c.outChannels, mc, 3, 3])],
                ldm: "out", diffusers: "", origin: .spatial)
        return out.items
    }

    /// The KL autoencoder (`first_stage_model.*`), encoder and decoder.
    public static func vae(_ c: VAEConfig) throws -> [CanonicalTensor] {
        try c.validate()
        var out = TensorList(ldmPrefix: vaePrefix, component: .vae)
        let levels = c.chMult.count, nrb = c.numResBlocks
        func mid(_ side: String, _ ch: Int) {
            out.add(Rules.vaeResBlock(cin: ch, cout: ch), ldm: "\(side).mid.block_1", diffusers: "\(side).mid_block.resnets.0", origin: .spatial)
            out.add(Rules.vaeAttention(ch), ldm: "\(side).mid.attn_1", diffusers: "\(side).mid_block.attentions.0", origin: .spatial)
            out.add(Rules.vaeResBlock(cin: ch, cout: ch), ldm: "\(side).mid.block_2", diffusers: "\(side).mid_block.resnets.1", origin: .spatial)
        }

        // Encoder
        var ch = c.ch
        out.add([ParamRule("conv_in", "conv_in", [c.ch, c.inChannels, 3, 3])], ldm: "encoder", diffusers: "encoder", origin: .spatial)
        for (level, mult) in c.chMult.enumerated() {
            let cout = c.ch * mult
            for j in 0..<nrb {
                out.add(Rules.vaeResBlock(cin: ch, cout: cout), ldm: "encoder.down.\(level).block.\(j)",
                        diffusers: "encoder.down_blocks.\(level).resnets.\(j)", origin: .spatial)
                ch = cout
            }
            if level != levels - 1 {
                out.add([ParamRule("conv", "conv", [ch, ch, 3, 3])], ldm: "encoder.down.\(level).downsample",
                        diffusers: "encoder.down_blocks.\(level).downsamplers.0", origin: .spatial)
            }
        }
        mid("encoder", ch)
        let zOut = c.doubleZ ? 2 * c.zChannels : c.zChannels
        out.add([ParamRule("norm_out", "conv_norm_out", [ch]), ParamRule("conv_out", "conv_out", [zOut, ch, 3, 3])],
                ldm: "encoder", diffusers: "encoder", origin: .spatial)

        // Decoder (LDM numbers its levels bottom-up, diffusers top-down).
        ch = c.ch * (c.chMult.last ?? 1)
        out.add([ParamRule("conv_in", "conv_in", [ch, c.zChannels, 3, 3])], ldm: "decoder", diffusers: "decoder", origin: .spatial)
        mid("decoder", ch)
        for (level, mult) in c.chMult.enumerated().reversed() {
            let cout = c.ch * mult
            let up = "decoder.up_blocks.\(levels - 1 - level)"
            for j in 0...nrb {
                out.add(Rules.vaeResBlock(cin: ch, cout: cout), ldm: "decoder.up.\(level).block.\(j)",
                        diffusers: "\(up).resnets.\(j)", origin: .spatial)
                ch = cout
            }
            if level != 0 {
                out.add([ParamRule("conv", "conv", [ch, ch, 3, 3])], ldm: "decoder.up.\(level).upsample",
                        diffusers: "\(up).upsamplers.0", origin: .spatial)
            }
        }
        out.add([ParamRule("norm_out", "conv_norm_out", [ch]), ParamRule("conv_out", "conv_out", [c.outCh, ch, 3, 3])],
                ldm: "decoder", diffusers: "decoder", origin: .spatial)

        out.add([ParamRule("quant_conv", "quant_conv", [2 * c.embedDim, zOut, 1, 1]),
                 ParamRule("post_quant_conv", "post_quant_conv", [c.zChannels, c.embedDim, 1, 1])],
                ldm: "", diffusers: "", origin: .spatial)
        return out.items
    }

    /// The open_clip text tower (`cond_stage_model.model.*`) <-> transformers CLIPTextModel
    /// (`text_model.*`). The diffusers model has only the blocks that run (`layersRun`).
    public static func textEncoder(_ c: TextEncoderConfig) throws -> [CanonicalTensor] {
        try c.validate()
        var out = TensorList(ldmPrefix: textPrefix, component: .textEncoder)
        let w = c.width
        out.emit("token_embedding.weight", [c.vocabSize, w], .spatial, ("text_model.embeddings.token_embedding.weight", [c.vocabSize, w], .copy))
        out.emit("positional_embedding", [c.contextLength, w], .spatial, ("text_model.embeddings.position_embedding.weight", [c.contextLength, w], .copy))
        for l in 0..<c.layers {
            let ldm = "transformer.resblocks.\(l)"
            let runs = l < c.layersRun
            let hf = runs ? "text_model.encoder.layers.\(l)" : nil
            let origin: TensorOrigin = runs ? .spatial : .skippedLayer
            for (param, shape, suffix) in [("in_proj_weight", [3 * w, w], "weight"), ("in_proj_bias", [3 * w], "bias")] {
                let sources = hf.map { h in
                    ["q_proj", "k_proj", "v_proj"].enumerated().map { i, p in
                        DiffusersSource(component: .textEncoder, key: "\(h).self_attn.\(p).\(suffix)",
                                        shape: [w] + shape.dropFirst(), transform: .rows(i * w ..< (i + 1) * w))
                    }
                } ?? []
                out.items.append(CanonicalTensor(name: textPrefix + "\(ldm).attn.\(param)", shape: shape, origin: origin, sources: sources))
            }
            out.add(Rules.textBlock(width: w), ldm: ldm, diffusers: hf, origin: origin)
        }
        out.add([ParamRule("ln_final", "final_layer_norm", [w])], ldm: "", diffusers: "text_model", origin: .spatial)
        out.emit("text_projection", nil, .unused, nil)
        out.emit("logit_scale", [], .unused, nil)
        return out.items
    }

    /// LatentDiffusion's registered schedule buffers (plus VideoCrafter's `scale_arr`).
    public static func scheduleBuffers(_ d: DiffusionConfig, kind: ModelKind) -> [CanonicalTensor] {
        let names = ["betas", "alphas_cumprod", "alphas_cumprod_prev", "sqrt_alphas_cumprod",
                     "sqrt_one_minus_alphas_cumprod", "log_one_minus_alphas_cumprod", "sqrt_recip_alphas_cumprod",
                     "sqrt_recipm1_alphas_cumprod", "posterior_variance", "posterior_log_variance_clipped",
                     "posterior_mean_coef1", "posterior_mean_coef2"]
        var out = names.map { CanonicalTensor(name: $0, shape: [d.timesteps], origin: .scheduleBuffer, sources: []) }
        if kind != .sd21, d.useScale {
            // VideoCrafter's ddpm3d builds scale_arr from linspace over mid_step and pads it with
            // `timesteps` constant values ("bug" branch), hence timesteps + mid_step entries.
            out.append(CanonicalTensor(name: "scale_arr", shape: [d.fixScaleBug ? d.timesteps : d.timesteps + d.midStep],
                                       origin: .scheduleBuffer, sources: []))
        }
        return out
    }
}
