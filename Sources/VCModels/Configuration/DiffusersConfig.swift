// The configuration of a diffusers Stable Diffusion 2.x pipeline folder, as a ModelConfig (kind
// sd21). Reads the config.json files of the unet (UNet2DConditionModel), vae (AutoencoderKL) and
// text_encoder (transformers CLIPTextModel) and scheduler/scheduler_config.json; the names of the
// folder's tensors come from the canonical table (Weights/TensorNames.swift, `sources`).
import Foundation

public enum DiffusersConfig {
    /// The `ModelConfig` (kind sd21) of a diffusers Stable Diffusion 2.x pipeline, from the
    /// `config.json` texts of its unet, vae and text_encoder and its scheduler_config.json.
    public static func parse(unet: String, vae: String, textEncoder: String, scheduler: String) throws -> LoadedConfig {
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
        u.removeVideoModules()
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
