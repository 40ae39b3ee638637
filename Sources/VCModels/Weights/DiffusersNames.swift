// diffusers pipeline folders (Stable Diffusion 2.x) in canonical LDM names and configuration.
//
// The name correspondence follows the module structures on both sides: LDM
// (Stability-AI/stablediffusion ldm/modules/diffusionmodules/openaimodel.py UNetModel,
// ldm/modules/diffusionmodules/model.py Encoder/Decoder, open_clip 2.22.0 text tower) and diffusers
// (UNet2DConditionModel with CrossAttnDownBlock2D / DownBlock2D / UNetMidBlock2DCrossAttn /
// UpBlock2D / CrossAttnUpBlock2D, AutoencoderKL, transformers CLIPTextModel); it is the
// correspondence diffusers' own scripts/convert_original_stable_diffusion_to_diffusers.py
// implements, written here from the structure. A test checks every row of
// fixtures/sd21-tiny/mapping.tsv against it.
import Foundation

public enum DiffusersNames {
    /// How a canonical tensor is made from diffusers tensors.
    public enum Transform: Sendable, Equatable {
        /// The same values and shape.
        case copy
        /// The same values in another shape (VAE attention 1x1 convs: diffusers stores [C, C]).
        case reshape([Int])
        /// The parts stacked along the first dimension (the text tower's fused q/k/v in_proj).
        case concatRows
    }

    /// Where one canonical tensor comes from: `parts` are folder-qualified diffusers names
    /// (`unet/conv_in.weight`, `text_encoder/text_model...`), in order.
    public struct Source: Sendable, Equatable {
        public var parts: [String]
        public var transform: Transform
    }

    /// Names a folder may hold that have no meaning for inference (dropped without error).
    public static let ignorable: Set<String> = ["text_encoder/text_model.embeddings.position_ids"]

    /// The diffusers source of every canonical tensor of an SD 2.x `config` that a diffusers
    /// folder holds (the text blocks `layer` skips, `text_projection`, `logit_scale` and the
    /// schedule buffers have none).
    public static func mapping(for c: ModelConfig) -> [String: Source] {
        var prefixes = unetPrefixes(c.unet) + vaePrefixes(c.vae)
        prefixes.sort { $0.ldm.count > $1.ldm.count } // longest first
        var out: [String: Source] = [:]
        for spec in ModelTensors.expected(for: c) {
            if let s = source(spec, c, prefixes) { out[spec.name] = s }
        }
        return out
    }

    enum Kind { case plain, resnet, vaeResnet, vaeAttention }

    struct Prefix { var ldm: String; var diffusers: String; var kind: Kind }

    static func unetPrefixes(_ u: UNetConfig) -> [Prefix] {
        let L = u.numResBlocks, n = u.channelMult.count
        let m = ModelTensors.unetPrefix, d = "unet/"
        var p: [Prefix] = [
            Prefix(ldm: m + "time_embed.0.", diffusers: d + "time_embedding.linear_1.", kind: .plain),
            Prefix(ldm: m + "time_embed.2.", diffusers: d + "time_embedding.linear_2.", kind: .plain),
            Prefix(ldm: m + "input_blocks.0.0.", diffusers: d + "conv_in.", kind: .plain),
            Prefix(ldm: m + "middle_block.0.", diffusers: d + "mid_block.resnets.0.", kind: .resnet),
            Prefix(ldm: m + "middle_block.1.", diffusers: d + "mid_block.attentions.0.", kind: .plain),
            Prefix(ldm: m + "middle_block.2.", diffusers: d + "mid_block.resnets.1.", kind: .resnet),
            Prefix(ldm: m + "out.0.", diffusers: d + "conv_norm_out.", kind: .plain),
            Prefix(ldm: m + "out.2.", diffusers: d + "conv_out.", kind: .plain),
        ]
        for level in 0..<n {
            let attention = u.attentionResolutions.contains(1 << level)
            for j in 0..<L {
                let k = 1 + level * (L + 1) + j
                p.append(Prefix(ldm: m + "input_blocks.\(k).0.", diffusers: d + "down_blocks.\(level).resnets.\(j).", kind: .resnet))
                if attention {
                    p.append(Prefix(ldm: m + "input_blocks.\(k).1.", diffusers: d + "down_blocks.\(level).attentions.\(j).", kind: .plain))
                }
            }
            if level != n - 1 {
                p.append(Prefix(ldm: m + "input_blocks.\((level + 1) * (L + 1)).0.op.", diffusers: d + "down_blocks.\(level).downsamplers.0.conv.", kind: .plain))
            }
            // diffusers up_blocks run deepest first: up_blocks.i is LDM level n-1-i.
            let i = n - 1 - level
            for j in 0...L {
                let k = i * (L + 1) + j
                p.append(Prefix(ldm: m + "output_blocks.\(k).0.", diffusers: d + "up_blocks.\(i).resnets.\(j).", kind: .resnet))
                if attention {
                    p.append(Prefix(ldm: m + "output_blocks.\(k).1.", diffusers: d + "up_blocks.\(i).attentions.\(j).", kind: .plain))
                }
            }
            if level != 0 {
                let k = i * (L + 1) + L
                p.append(Prefix(ldm: m + "output_blocks.\(k).\(attention ? 2 : 1).conv.", diffusers: d + "up_blocks.\(i).upsamplers.0.conv.", kind: .plain))
            }
        }
        return p
    }

    static func vaePrefixes(_ v: VAEConfig) -> [Prefix] {
        let n = v.chMult.count
        let f = ModelTensors.vaePrefix, d = "vae/"
        var p: [Prefix] = [
            Prefix(ldm: f + "quant_conv.", diffusers: d + "quant_conv.", kind: .plain),
            Prefix(ldm: f + "post_quant_conv.", diffusers: d + "post_quant_conv.", kind: .plain),
        ]
        for side in ["encoder", "decoder"] {
            p += [
                Prefix(ldm: f + "\(side).conv_in.", diffusers: d + "\(side).conv_in.", kind: .plain),
                Prefix(ldm: f + "\(side).conv_out.", diffusers: d + "\(side).conv_out.", kind: .plain),
                Prefix(ldm: f + "\(side).norm_out.", diffusers: d + "\(side).conv_norm_out.", kind: .plain),
                Prefix(ldm: f + "\(side).mid.block_1.", diffusers: d + "\(side).mid_block.resnets.0.", kind: .vaeResnet),
                Prefix(ldm: f + "\(side).mid.block_2.", diffusers: d + "\(side).mid_block.resnets.1.", kind: .vaeResnet),
                Prefix(ldm: f + "\(side).mid.attn_1.", diffusers: d + "\(side).mid_block.attentions.0.", kind: .vaeAttention),
            ]
        }
        for level in 0..<n {
            for j in 0..<v.numResBlocks {
                p.append(Prefix(ldm: f + "encoder.down.\(level).block.\(j).", diffusers: d + "encoder.down_blocks.\(level).resnets.\(j).", kind: .vaeResnet))
            }
            if level != n - 1 {
                p.append(Prefix(ldm: f + "encoder.down.\(level).downsample.conv.", diffusers: d + "encoder.down_blocks.\(level).downsamplers.0.conv.", kind: .plain))
            }
            let i = n - 1 - level
            for j in 0...v.numResBlocks {
                p.append(Prefix(ldm: f + "decoder.up.\(level).block.\(j).", diffusers: d + "decoder.up_blocks.\(i).resnets.\(j).", kind: .vaeResnet))
            }
            if level != 0 {
                p.append(Prefix(ldm: f + "decoder.up.\(level).upsample.conv.", diffusers: d + "decoder.up_blocks.\(i).upsamplers.0.conv.", kind: .plain))
            }
        }
        return p
    }

    static let resnetSuffixes = ["in_layers.0.": "norm1.", "in_layers.2.": "conv1.", "emb_layers.1.": "time_emb_proj.",
                                 "out_layers.0.": "norm2.", "out_layers.3.": "conv2.", "skip_connection.": "conv_shortcut."]
    static let vaeAttentionSuffixes = ["norm.": "group_norm.", "q.": "to_q.", "k.": "to_k.", "v.": "to_v.", "proj_out.": "to_out.0."]

    static func source(_ spec: TensorSpec, _ c: ModelConfig, _ prefixes: [Prefix]) -> Source? {
        let name = spec.name
        if name.hasPrefix(ModelTensors.textPrefix) { return textSource(spec, c.text) }
        guard let p = prefixes.first(where: { name.hasPrefix($0.ldm) }) else { return nil }
        var rest = String(name.dropFirst(p.ldm.count))
        switch p.kind {
        case .plain:
            return Source(parts: [p.diffusers + rest], transform: .copy)
        case .resnet:
            for (a, b) in resnetSuffixes where rest.hasPrefix(a) { rest = b + rest.dropFirst(a.count); break }
            return Source(parts: [p.diffusers + rest], transform: .copy)
        case .vaeResnet:
            if rest.hasPrefix("nin_shortcut.") { rest = "conv_shortcut." + rest.dropFirst("nin_shortcut.".count) }
            return Source(parts: [p.diffusers + rest], transform: .copy)
        case .vaeAttention:
            for (a, b) in vaeAttentionSuffixes where rest.hasPrefix(a) { rest = b + rest.dropFirst(a.count); break }
            // 1x1 conv weights [C, C, 1, 1] are linear weights [C, C] in diffusers.
            let isConvWeight = spec.shape.count == 4 && rest.hasSuffix(".weight")
            return Source(parts: [p.diffusers + rest], transform: isConvWeight ? .reshape(spec.shape) : .copy)
        }
    }

    static func textSource(_ spec: TensorSpec, _ t: TextEncoderConfig) -> Source? {
        let rest = String(spec.name.dropFirst(ModelTensors.textPrefix.count))
        let d = "text_encoder/text_model."
        switch rest {
        case "token_embedding.weight": return Source(parts: [d + "embeddings.token_embedding.weight"], transform: .copy)
        case "positional_embedding": return Source(parts: [d + "embeddings.position_embedding.weight"], transform: .copy)
        case "ln_final.weight", "ln_final.bias":
            return Source(parts: [d + "final_layer_norm." + rest.dropFirst("ln_final.".count)], transform: .copy)
        default: break
        }
        // transformer.resblocks.<i>.<suffix>, only for the blocks the diffusers model has.
        let parts = rest.split(separator: ".", maxSplits: 3).map(String.init)
        guard parts.count == 4, parts[0] == "transformer", parts[1] == "resblocks", let i = Int(parts[2]), i < t.layersRun else { return nil }
        let layer = d + "encoder.layers.\(i)."
        switch parts[3] {
        case "attn.in_proj_weight": return Source(parts: ["q", "k", "v"].map { layer + "self_attn.\($0)_proj.weight" }, transform: .concatRows)
        case "attn.in_proj_bias": return Source(parts: ["q", "k", "v"].map { layer + "self_attn.\($0)_proj.bias" }, transform: .concatRows)
        default:
            let renames = ["ln_1.": "layer_norm1.", "ln_2.": "layer_norm2.", "attn.out_proj.": "self_attn.out_proj.",
                           "mlp.c_fc.": "mlp.fc1.", "mlp.c_proj.": "mlp.fc2."]
            for (a, b) in renames where parts[3].hasPrefix(a) {
                return Source(parts: [layer + b + parts[3].dropFirst(a.count)], transform: .copy)
            }
            return nil
        }
    }

    // MARK: configuration

    /// The `ModelConfig` (kind sd21) of a diffusers Stable Diffusion 2.x pipeline, from the
    /// `config.json` texts of its unet, vae and text_encoder and its scheduler_config.json.
    public static func config(unet: String, vae: String, textEncoder: String, scheduler: String) throws -> LoadedConfig {
        var r = Reader(warnings: [])
        func object(_ text: String, _ what: String) throws -> [String: Any] {
            guard let o = try? JSONSerialization.jsonObject(with: Data(text.utf8)), let m = o as? [String: Any] else {
                throw ConfigError("\(what) is not a JSON object")
            }
            return m
        }
        let un = try object(unet, "unet/config.json"), va = try object(vae, "vae/config.json")
        let te = try object(textEncoder, "text_encoder/config.json"), sc = try object(scheduler, "scheduler/scheduler_config.json")
        let up = "unet/config.json"

        var u = UNetConfig()
        u.temporalConv = false; u.temporalAttention = false; u.additionAttention = false; u.fpsCond = false
        u.useRelativePosition = false; u.useCausalAttention = false; u.tempspatialAware = false
        let boc = try r.ints(un, "block_out_channels", path: up)
        guard let first = boc.first, first > 0, boc.allSatisfy({ $0 % first == 0 }) else {
            throw ConfigError("\(up): block_out_channels \(boc) are not multiples of the first")
        }
        u.modelChannels = first
        u.channelMult = boc.map { $0 / first }
        u.numResBlocks = try r.int(un, "layers_per_block", path: up)
        u.inChannels = try r.int(un, "in_channels", path: up)
        u.outChannels = try r.int(un, "out_channels", path: up)
        u.contextDim = try r.int(un, "cross_attention_dim", path: up)
        u.useLinear = try r.bool(un, "use_linear_projection", path: up, default: false)
        let down = try strings(un, "down_block_types", up), upTypes = try strings(un, "up_block_types", up)
        guard down.count == boc.count, upTypes == down.reversed().map({ $0 == "CrossAttnDownBlock2D" ? "CrossAttnUpBlock2D" : $0 == "DownBlock2D" ? "UpBlock2D" : "?" }) else {
            throw ConfigError("\(up): down_block_types \(down) / up_block_types \(upTypes) are not a mirrored SD UNet")
        }
        var levelsWithAttention: [Int] = []
        for (i, t) in down.enumerated() {
            switch t {
            case "CrossAttnDownBlock2D": levelsWithAttention.append(i)
            case "DownBlock2D": break
            default: throw ConfigError("\(up): block type \(t) is not supported")
            }
        }
        u.attentionResolutions = levelsWithAttention.map { 1 << $0 }.sorted(by: >) // as the LDM configs write it: [4, 2, 1]
        guard try r.string(un, "mid_block_type", path: up, default: "UNetMidBlock2DCrossAttn") == "UNetMidBlock2DCrossAttn" else {
            throw ConfigError("\(up): mid_block_type must be UNetMidBlock2DCrossAttn")
        }
        // diffusers' `attention_head_dim` of SD 2.x configs holds head *counts* (num_attention_heads
        // when set takes precedence). LDM expresses heads by a fixed head width: all must agree.
        let headsKey = un["num_attention_heads"] is NSNull || un["num_attention_heads"] == nil ? "attention_head_dim" : "num_attention_heads"
        let heads: [Int]
        if let h = un[headsKey] as? Int { heads = Array(repeating: h, count: boc.count) } else { heads = try r.ints(un, headsKey, path: up) }
        guard heads.count == boc.count else { throw ConfigError("\(up): \(headsKey) needs one value per block") }
        var widths = Set(levelsWithAttention.map { boc[$0] / max(heads[$0], 1) })
        widths.insert(boc[boc.count - 1] / max(heads[heads.count - 1], 1)) // the mid block uses the last level's heads
        guard widths.count == 1, let width = widths.first, width > 0,
              levelsWithAttention.allSatisfy({ boc[$0] % heads[$0] == 0 }) else {
            throw ConfigError("\(up): heads \(heads) over channels \(boc) do not give one head width (LDM num_head_channels)")
        }
        u.numHeadChannels = width
        u.numHeads = -1
        if let tl = un["transformer_layers_per_block"], !(tl is NSNull) {
            guard (tl as? Int) == 1 || ((tl as? [Any])?.allSatisfy { ($0 as? Int) == 1 } ?? false) else {
                throw ConfigError("\(up): transformer_layers_per_block other than 1 is not supported")
            }
        }
        for k in ["class_embed_type", "addition_embed_type", "time_cond_proj_dim", "encoder_hid_dim", "num_class_embeds"] {
            if let v = un[k], !(v is NSNull) { throw ConfigError("\(up): \(k) is not supported") }
        }
        guard try r.string(un, "resnet_time_scale_shift", path: up, default: "default") == "default",
              try r.string(un, "act_fn", path: up, default: "silu") == "silu",
              try r.int(un, "norm_num_groups", path: up, default: 32) == 32,
              try r.bool(un, "flip_sin_to_cos", path: up, default: true),
              try r.int(un, "freq_shift", path: up, default: 0) == 0,
              try r.int(un, "conv_in_kernel", path: up, default: 3) == 3,
              try r.int(un, "conv_out_kernel", path: up, default: 3) == 3 else {
            throw ConfigError("\(up): resnet_time_scale_shift, act_fn, norm_num_groups, flip_sin_to_cos, freq_shift or conv kernels differ from SD 2.x")
        }
        if (un["upcast_attention"] as? Bool) == true {
            r.warnings.append("\(up): upcast_attention is true: the runtime computes attention in float32 anyway")
        }

        let vp = "vae/config.json"
        var v = VAEConfig()
        let vboc = try r.ints(va, "block_out_channels", path: vp)
        guard let vfirst = vboc.first, vfirst > 0, vboc.allSatisfy({ $0 % vfirst == 0 }) else { throw ConfigError("\(vp): bad block_out_channels \(vboc)") }
        v.ch = vfirst
        v.chMult = vboc.map { $0 / vfirst }
        v.numResBlocks = try r.int(va, "layers_per_block", path: vp)
        v.zChannels = try r.int(va, "latent_channels", path: vp)
        v.embedDim = v.zChannels
        v.inChannels = try r.int(va, "in_channels", path: vp)
        v.outCh = try r.int(va, "out_channels", path: vp)
        v.resolution = try r.int(va, "sample_size", path: vp, default: 512)
        v.scaleFactor = Float(try r.double(va, "scaling_factor", path: vp, default: 0.18215))
        v.attnResolutions = []
        guard try r.bool(va, "mid_block_add_attention", path: vp, default: true), try r.bool(va, "use_quant_conv", path: vp, default: true),
              try r.bool(va, "use_post_quant_conv", path: vp, default: true), try r.int(va, "norm_num_groups", path: vp, default: 32) == 32 else {
            throw ConfigError("\(vp): only the SD kl-f8 layout (mid attention, quant convs, 32 groups) is supported")
        }

        let tp = "text_encoder/config.json"
        var t = TextEncoderConfig()
        t.width = try r.int(te, "hidden_size", path: tp)
        t.heads = try r.int(te, "num_attention_heads", path: tp)
        // SD 2.x keeps the blocks that `layer: penultimate` runs: the LDM tower has one more.
        t.layers = try r.int(te, "num_hidden_layers", path: tp) + 1
        t.layer = "penultimate"
        t.contextLength = try r.int(te, "max_position_embeddings", path: tp)
        t.vocabSize = try r.int(te, "vocab_size", path: tp)
        t.embedDim = try r.int(te, "projection_dim", path: tp, default: t.width)
        guard try r.string(te, "hidden_act", path: tp, default: "quick_gelu") == "gelu" else {
            throw ConfigError("\(tp): hidden_act must be gelu (the open_clip ViT-H text tower)")
        }
        guard try r.int(te, "intermediate_size", path: tp) == 4 * t.width else { throw ConfigError("\(tp): intermediate_size must be 4 x hidden_size") }

        let sp = "scheduler/scheduler_config.json"
        var d = DiffusionConfig()
        d.useScale = false
        d.linearStart = try r.double(sc, "beta_start", path: sp)
        d.linearEnd = try r.double(sc, "beta_end", path: sp)
        d.timesteps = try r.int(sc, "num_train_timesteps", path: sp)
        guard try r.string(sc, "beta_schedule", path: sp) == "scaled_linear" else {
            throw ConfigError("\(sp): beta_schedule must be scaled_linear (LDM's \"linear\")")
        }
        switch try r.string(sc, "prediction_type", path: sp, default: "epsilon") {
        case "epsilon": d.parameterization = "eps"
        case "v_prediction": d.parameterization = "v"
        case let other: throw ConfigError("\(sp): prediction_type \(other) is not supported")
        }
        d.channels = u.inChannels
        let config = ModelConfig(kind: .sd21, unet: u, text: t, vae: v, diffusion: d)
        try config.validateStructure()
        return LoadedConfig(config: config, warnings: r.warnings, textArch: "diffusers CLIPTextModel")
    }

    static func strings(_ m: [String: Any], _ key: String, _ path: String) throws -> [String] {
        guard let a = m[key] as? [Any] else { throw ConfigError("\(path).\(key) must be a list of strings") }
        return try a.map { guard let s = $0 as? String else { throw ConfigError("\(path).\(key) must be a list of strings") }; return s }
    }
}
