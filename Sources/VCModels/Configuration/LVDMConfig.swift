// Reads the official LVDM / LDM inference YAML and the open_clip model config into a ModelConfig.
//
// Ports the constructor defaults (what an omitted key means) of, at AILab-CVC/VideoCrafter@11bcd76:
//   lvdm/models/ddpm3d.py            DDPM, LatentDiffusion
//   lvdm/modules/networks/openaimodel3d.py  UNetModel
//   lvdm/modules/networks/ae_modules.py     Encoder/Decoder (ddconfig), lvdm/models/autoencoder.py AutoencoderKL
//   lvdm/modules/encoders/condition.py      FrozenOpenCLIPEmbedder
// and of Stability-AI/stablediffusion (SD 2.x, `ldm.*` targets, same class names in
// ldm/models/diffusion/ddpm.py, ldm/modules/diffusionmodules/openaimodel.py,
// ldm/modules/encoders/modules.py), plus open_clip 2.22.0 `CLIPTextCfg` (src/open_clip/model.py).
//
// Keys that change the network in ways the runtime does not implement are rejected by name;
// keys without numerical effect at inference (use_checkpoint, monitor, image_size, ...) are
// accepted; anything else unknown is reported as a warning, never silently dropped.
import Foundation
import Yams

/// A configuration read from files, with what was ignored.
public struct LoadedConfig: Sendable, Equatable {
    public var config: ModelConfig
    /// Keys that were present but not understood (reported by `vcconv import`).
    public var warnings: [String]
    /// `cond_stage_config.params.arch`: the open_clip model config name.
    public var textArch: String

    public init(config: ModelConfig, warnings: [String] = [], textArch: String = "ViT-H-14") {
        self.config = config; self.warnings = warnings; self.textArch = textArch
    }
}

public enum LVDMConfig {
    /// The open_clip model configs built into the converter (`model_configs/<name>.json` of
    /// open_clip 2.22.0, text tower only).
    public static let builtInTextConfigs: [String: TextEncoderConfig] = {
        var h = TextEncoderConfig()
        h.vocabSize = 49408; h.contextLength = 77; h.width = 1024; h.heads = 16; h.layers = 24; h.embedDim = 1024
        return ["ViT-H-14": h]
    }()

    /// Parses an LVDM (VideoCrafter) or LDM (SD 2.x) inference YAML. `textConfigJSON` is the
    /// open_clip model config the YAML's `arch` names; nil uses the built-in config of that arch.
    public static func parse(yaml: String, textConfigJSON: String? = nil) throws -> LoadedConfig {
        let root: Any?
        do { root = try Yams.load(yaml: yaml) } catch {
            throw ConfigError("YAML does not parse: \(error)")
        }
        var r = Reader(warnings: [])
        let top = try r.map(root, "the document")
        let model = try r.map(top["model"], "model")
        let target = try r.string(model, "target", path: "model")
        let params = try r.map(model["params"], "model.params")

        let kindFamily: String
        switch target {
        case "lvdm.models.ddpm3d.LatentDiffusion": kindFamily = "lvdm"
        case "ldm.models.diffusion.ddpm.LatentDiffusion": kindFamily = "ldm"
        case "lvdm.models.ddpm3d.LatentVisualDiffusion":
            throw ConfigError("model.target \(target): image-to-video models are not supported")
        default: throw ConfigError("model.target '\(target)' is not a supported model class (lvdm.models.ddpm3d.LatentDiffusion or ldm.models.diffusion.ddpm.LatentDiffusion)")
        }

        // --- diffusion (DDPM + LatentDiffusion constructor arguments) ---
        var d = DiffusionConfig()
        let p = "model.params"
        d.linearStart = try r.double(params, "linear_start", path: p, default: 1e-4)
        d.linearEnd = try r.double(params, "linear_end", path: p, default: 2e-2)
        d.timesteps = try r.int(params, "timesteps", path: p, default: 1000)
        d.betaSchedule = try r.string(params, "beta_schedule", path: p, default: "linear")
        d.parameterization = try r.string(params, "parameterization", path: p, default: "eps")
        d.channels = try r.int(params, "channels", path: p, default: 3)
        d.uncondType = try r.string(params, "uncond_type", path: p, default: "empty_seq")
        if kindFamily == "lvdm" {
            d.useScale = try r.bool(params, "use_scale", path: p, default: false)
            d.scaleA = try r.double(params, "scale_a", path: p, default: 1)
            d.scaleB = try r.double(params, "scale_b", path: p, default: 0.3)
            d.midStep = try r.int(params, "mid_step", path: p, default: 400)
            d.fixScaleBug = try r.bool(params, "fix_scale_bug", path: p, default: false)
        } else {
            d.useScale = false
            d.fixScaleBug = false
        }
        let scaleFactor = try r.double(params, "scale_factor", path: p, default: 1.0)
        if try r.bool(params, "scale_by_std", path: p, default: false) {
            // The factor is then a buffer learned at training start; inference configs fix it.
            r.warnings.append("\(p).scale_by_std is true: using scale_factor \(scaleFactor) as given")
        }
        guard try r.string(params, "conditioning_key", path: p, default: "crossattn") == "crossattn" else {
            throw ConfigError("\(p).conditioning_key must be crossattn (text-to-video / text-to-image)")
        }
        try r.rejectTrue(params, ["use_ema"], path: p, why: "EMA weights are not imported; export the EMA weights into the model first")
        r.accept(params, p, ["linear_start", "linear_end", "timesteps", "beta_schedule", "parameterization", "channels",
                             "uncond_type", "use_scale", "scale_a", "scale_b", "mid_step", "fix_scale_bug", "scale_factor",
                             "scale_by_std", "conditioning_key", "use_ema", "unet_config", "first_stage_config",
                             "cond_stage_config", "num_timesteps_cond", "first_stage_key", "cond_stage_key",
                             "cond_stage_trainable", "image_size", "log_every_t", "monitor", "base_learning_rate",
                             "ckpt_path", "ignore_keys", "load_only_unet", "loss_type", "clip_denoised",
                             "l_simple_weight", "original_elbo_weight", "v_posterior", "learn_logvar", "logvar_init",
                             "use_positional_encodings", "cosine_s", "encoder_type", "uncond_prob", "only_model",
                             "scheduler_config", "cond_stage_forward", "empty_paras", "rand_cond_frame"])

        // --- UNet ---
        let unetConfig = try r.map(params["unet_config"], "\(p).unet_config")
        let unetTarget = try r.string(unetConfig, "target", path: "\(p).unet_config")
        let expectedUNet = kindFamily == "lvdm" ? "lvdm.modules.networks.openaimodel3d.UNetModel" : "ldm.modules.diffusionmodules.openaimodel.UNetModel"
        guard unetTarget == expectedUNet else { throw ConfigError("\(p).unet_config.target '\(unetTarget)' (expected \(expectedUNet))") }
        let up = "\(p).unet_config.params"
        let un = try r.map(unetConfig["params"], up)
        var u = UNetConfig()
        u.inChannels = try r.int(un, "in_channels", path: up)
        u.outChannels = try r.int(un, "out_channels", path: up)
        u.modelChannels = try r.int(un, "model_channels", path: up)
        u.numResBlocks = try r.int(un, "num_res_blocks", path: up)
        u.attentionResolutions = try r.ints(un, "attention_resolutions", path: up)
        u.channelMult = try r.ints(un, "channel_mult", path: up, default: [1, 2, 4, 8])
        u.numHeads = try r.int(un, "num_heads", path: up, default: -1)
        u.numHeadChannels = try r.int(un, "num_head_channels", path: up, default: -1)
        u.transformerDepth = try r.int(un, "transformer_depth", path: up, default: 1)
        u.contextDim = try r.int(un, "context_dim", path: up, default: -1)
        u.useScaleShiftNorm = try r.bool(un, "use_scale_shift_norm", path: up, default: false)
        u.resblockUpdown = try r.bool(un, "resblock_updown", path: up, default: false)
        u.convResample = try r.bool(un, "conv_resample", path: up, default: true)
        guard try r.int(un, "dims", path: up, default: 2) == 2 else { throw ConfigError("\(up).dims must be 2") }
        try r.rejectTrue(un, ["use_fp16"], path: up, why: nil, warnOnly: true)
        var accepted = ["in_channels", "out_channels", "model_channels", "num_res_blocks", "attention_resolutions",
                        "channel_mult", "num_heads", "num_head_channels", "transformer_depth", "context_dim",
                        "use_scale_shift_norm", "resblock_updown", "conv_resample", "dims", "use_fp16",
                        "use_checkpoint", "dropout", "image_size", "num_heads_upsample"]
        if kindFamily == "lvdm" {
            u.useLinear = try r.bool(un, "use_linear", path: up, default: false)
            u.temporalConv = try r.bool(un, "temporal_conv", path: up, default: false)
            u.tempspatialAware = try r.bool(un, "tempspatial_aware", path: up, default: false)
            u.temporalAttention = try r.bool(un, "temporal_attention", path: up, default: true)
            u.temporalSelfAttOnly = try r.bool(un, "temporal_selfatt_only", path: up, default: true)
            u.useRelativePosition = try r.bool(un, "use_relative_position", path: up, default: true)
            u.useCausalAttention = try r.bool(un, "use_causal_attention", path: up, default: false)
            u.temporalLength = try r.int(un, "temporal_length", path: up, default: 16)
            u.additionAttention = try r.bool(un, "addition_attention", path: up, default: false)
            u.fpsCond = try r.bool(un, "fps_cond", path: up, default: false)
            guard try r.int(un, "temporal_transformer_depth", path: up, default: 1) == 1 else {
                throw ConfigError("\(up).temporal_transformer_depth other than 1 is not supported")
            }
            try r.rejectTrue(un, ["use_image_attention", "image_cross_attention"], path: up, why: "image conditioning (I2V) is not supported")
            accepted += ["use_linear", "temporal_conv", "tempspatial_aware", "temporal_attention", "temporal_selfatt_only",
                         "use_relative_position", "use_causal_attention", "temporal_length", "addition_attention",
                         "fps_cond", "temporal_transformer_depth", "use_image_attention", "image_cross_attention"]
        } else {
            guard try r.bool(un, "use_spatial_transformer", path: up, default: false) else {
                throw ConfigError("\(up).use_spatial_transformer must be true (text conditioning)")
            }
            u.useLinear = try r.bool(un, "use_linear_in_transformer", path: up, default: false)
            u.removeVideoModules()
            if un["num_classes"] != nil, !(un["num_classes"] is NSNull) {
                throw ConfigError("\(up).num_classes: class-conditional / unCLIP models are not supported")
            }
            try r.rejectTrue(un, ["disable_self_attentions", "use_new_attention_order"], path: up, why: "not supported")
            accepted += ["use_spatial_transformer", "use_linear_in_transformer", "legacy", "num_classes",
                         "disable_self_attentions", "use_new_attention_order", "n_embed", "disable_middle_self_attn",
                         "num_attention_blocks", "adm_in_channels", "spatial_transformer_attn_type"]
        }
        r.accept(un, up, accepted)
        r.accept(unetConfig, "\(p).unet_config", ["target", "params"])

        // --- VAE ---
        let fs = try r.map(params["first_stage_config"], "\(p).first_stage_config")
        let fsTarget = try r.string(fs, "target", path: "\(p).first_stage_config")
        guard fsTarget.hasSuffix("models.autoencoder.AutoencoderKL") else {
            throw ConfigError("\(p).first_stage_config.target '\(fsTarget)' is not AutoencoderKL")
        }
        let fp = "\(p).first_stage_config.params"
        let fparams = try r.map(fs["params"], fp)
        var v = VAEConfig()
        v.embedDim = try r.int(fparams, "embed_dim", path: fp)
        let dp = "\(fp).ddconfig"
        let dd = try r.map(fparams["ddconfig"], dp)
        v.doubleZ = try r.bool(dd, "double_z", path: dp, default: true)
        guard v.doubleZ else { throw ConfigError("\(dp).double_z must be true (AutoencoderKL asserts it)") }
        v.zChannels = try r.int(dd, "z_channels", path: dp)
        v.resolution = try r.int(dd, "resolution", path: dp)
        v.inChannels = try r.int(dd, "in_channels", path: dp)
        v.outCh = try r.int(dd, "out_ch", path: dp)
        v.ch = try r.int(dd, "ch", path: dp)
        v.chMult = try r.ints(dd, "ch_mult", path: dp, default: [1, 2, 4, 8])
        v.numResBlocks = try r.int(dd, "num_res_blocks", path: dp)
        v.attnResolutions = try r.ints(dd, "attn_resolutions", path: dp)
        v.scaleFactor = Float(scaleFactor)
        try r.rejectTrue(dd, ["use_linear_attn", "tanh_out", "give_pre_end"], path: dp, why: "not supported")
        if let at = dd["attn_type"] as? String, at != "vanilla" { throw ConfigError("\(dp).attn_type '\(at)' is not supported") }
        guard try r.bool(dd, "resamp_with_conv", path: dp, default: true) else { throw ConfigError("\(dp).resamp_with_conv false is not supported") }
        r.accept(dd, dp, ["double_z", "z_channels", "resolution", "in_channels", "out_ch", "ch", "ch_mult", "num_res_blocks",
                          "attn_resolutions", "dropout", "use_linear_attn", "tanh_out", "give_pre_end", "attn_type",
                          "resamp_with_conv"])
        r.accept(fparams, fp, ["embed_dim", "ddconfig", "lossconfig", "monitor", "ckpt_path", "ignore_keys", "image_key"])
        if let loss = fparams["lossconfig"] as? [String: Any], let lt = loss["target"] as? String, lt != "torch.nn.Identity" {
            r.warnings.append("\(fp).lossconfig.target \(lt): loss weights in the checkpoint will be reported as unexpected")
        }

        // --- text encoder ---
        let cs = try r.map(params["cond_stage_config"], "\(p).cond_stage_config")
        let csTarget = try r.string(cs, "target", path: "\(p).cond_stage_config")
        guard csTarget.hasSuffix(".FrozenOpenCLIPEmbedder") else {
            throw ConfigError("\(p).cond_stage_config.target '\(csTarget)' is not FrozenOpenCLIPEmbedder")
        }
        let cp = "\(p).cond_stage_config.params"
        let cparams = (cs["params"] == nil || cs["params"] is NSNull) ? [:] : try r.map(cs["params"], cp)
        let arch = try r.string(cparams, "arch", path: cp, default: "ViT-H-14")
        let layer = try r.string(cparams, "layer", path: cp, default: "last")
        let maxLength = try r.int(cparams, "max_length", path: cp, default: 77)
        r.accept(cparams, cp, ["arch", "layer", "version", "freeze", "device", "max_length"])
        var t: TextEncoderConfig
        if let json = textConfigJSON {
            t = try OpenCLIPConfig.parse(json: json)
        } else if let builtIn = builtInTextConfigs[arch] {
            t = builtIn
        } else {
            throw ConfigError("\(cp).arch '\(arch)' is not built in (\(builtInTextConfigs.keys.sorted().joined(separator: ", "))); pass its open_clip model config JSON (--text-config)")
        }
        t.layer = layer
        guard maxLength == t.contextLength else {
            throw ConfigError("\(cp).max_length \(maxLength) differs from the text context length \(t.contextLength)")
        }

        // --- kind ---
        let kind: ModelKind
        if kindFamily == "ldm" {
            kind = .sd21
        } else {
            kind = u.temporalConv && !u.useRelativePosition ? .vc2 : .vc1
        }
        let config = ModelConfig(kind: kind, unet: u, text: t, vae: v, diffusion: d)
        try config.validateStructure()
        return LoadedConfig(config: config, warnings: r.warnings, textArch: arch)
    }
}

/// The open_clip model config (`model_configs/*.json`): only `embed_dim` and `text_cfg` matter.
public enum OpenCLIPConfig {
    public static func parse(json: String) throws -> TextEncoderConfig {
        guard let obj = try? JSONSerialization.jsonObject(with: Data(json.utf8)), let top = obj as? [String: Any] else {
            throw ConfigError("open_clip config: not a JSON object")
        }
        var r = Reader(warnings: [])
        let tp = "text_cfg"
        let tc = try r.map(top["text_cfg"], tp)
        // CLIPTextCfg defaults (open_clip 2.22.0 src/open_clip/model.py).
        var t = TextEncoderConfig()
        t.contextLength = try r.int(tc, "context_length", path: tp, default: 77)
        t.vocabSize = try r.int(tc, "vocab_size", path: tp, default: 49408)
        t.width = try r.int(tc, "width", path: tp, default: 512)
        t.heads = try r.int(tc, "heads", path: tp, default: 8)
        t.layers = try r.int(tc, "layers", path: tp, default: 12)
        t.embedDim = try r.int(top, "embed_dim", path: "open_clip config")
        guard try r.double(tc, "mlp_ratio", path: tp, default: 4) == 4 else { throw ConfigError("\(tp).mlp_ratio other than 4 is not supported") }
        if let ls = tc["ls_init_value"], !(ls is NSNull) { throw ConfigError("\(tp).ls_init_value (layer scale) is not supported") }
        if let hf = tc["hf_model_name"], !(hf is NSNull) { throw ConfigError("\(tp).hf_model_name: Hugging Face text towers are not supported") }
        try r.rejectTrue(top, ["quick_gelu", "custom_text"], path: "open_clip config", why: "only the standard open_clip text tower (GELU) is supported")
        for k in ["act_kind", "norm_kind", "proj", "pooler_type"] where tc[k] != nil {
            throw ConfigError("\(tp).\(k) is not supported")
        }
        return t
    }
}

/// Typed access to the untyped tree Yams / JSONSerialization produce, with paths in messages.
struct Reader {
    var warnings: [String]

    func map(_ v: Any?, _ path: String) throws -> [String: Any] {
        if let m = v as? [String: Any] { return m }
        if let m = v as? [AnyHashable: Any] {
            var out: [String: Any] = [:]
            for (k, x) in m { out["\(k)"] = x }
            return out
        }
        throw ConfigError(v == nil ? "\(path) is missing" : "\(path) must be a mapping")
    }

    func string(_ m: [String: Any], _ key: String, path: String, default d: String? = nil) throws -> String {
        guard let v = m[key], !(v is NSNull) else {
            if let d { return d }
            throw ConfigError("\(path).\(key) is missing")
        }
        guard let s = v as? String else { throw ConfigError("\(path).\(key) must be a string") }
        return s
    }

    func int(_ m: [String: Any], _ key: String, path: String, default d: Int? = nil) throws -> Int {
        guard let v = m[key], !(v is NSNull) else {
            if let d { return d }
            throw ConfigError("\(path).\(key) is missing")
        }
        return try intValue(v, "\(path).\(key)")
    }

    func intValue(_ v: Any, _ path: String) throws -> Int {
        if type(of: v) == Bool.self { throw ConfigError("\(path) must be an integer") }
        if let i = v as? Int { return i }
        if let x = v as? Double, x == x.rounded(), abs(x) < 1e15 { return Int(x) }
        throw ConfigError("\(path) must be an integer")
    }

    func double(_ m: [String: Any], _ key: String, path: String, default d: Double? = nil) throws -> Double {
        guard let v = m[key], !(v is NSNull) else {
            if let d { return d }
            throw ConfigError("\(path).\(key) is missing")
        }
        if type(of: v) == Bool.self { throw ConfigError("\(path).\(key) must be a number") }
        let x: Double
        if let d = v as? Double { x = d } else if let i = v as? Int { x = Double(i) }
        else if let s = v as? String, let d = Double(s) { x = d } // YAML 1.1 "1e-4" without a dot is a string
        else { throw ConfigError("\(path).\(key) must be a number") }
        // Every number of these configs (schedule ends, scale factor, init values) is finite;
        // YAML's .nan / .inf would otherwise flow into the noise schedule silently.
        guard x.isFinite else { throw ConfigError("\(path).\(key) must be a finite number (got \(x))") }
        return x
    }

    func bool(_ m: [String: Any], _ key: String, path: String, default d: Bool) throws -> Bool {
        guard let v = m[key], !(v is NSNull) else { return d }
        guard let b = v as? Bool else { throw ConfigError("\(path).\(key) must be true or false") }
        return b
    }

    func ints(_ m: [String: Any], _ key: String, path: String, default d: [Int]? = nil) throws -> [Int] {
        guard let v = m[key], !(v is NSNull) else {
            if let d { return d }
            throw ConfigError("\(path).\(key) is missing")
        }
        guard let a = v as? [Any] else { throw ConfigError("\(path).\(key) must be a list of integers") }
        return try a.enumerated().map { i, x in try intValue(x, "\(path).\(key)[\(i)]") }
    }

    /// Throws when any of `keys` is true (or warns, with `warnOnly`).
    mutating func rejectTrue(_ m: [String: Any], _ keys: [String], path: String, why: String?, warnOnly: Bool = false) throws {
        for k in keys where (m[k] as? Bool) == true {
            if warnOnly { warnings.append("\(path).\(k) is true: ignored (the runtime computes in fp32)"); continue }
            throw ConfigError("\(path).\(k) is true: \(why ?? "not supported")")
        }
    }

    /// Records a warning for every key not in `known`.
    mutating func accept(_ m: [String: Any], _ path: String, _ known: [String]) {
        let k = Set(known)
        for key in m.keys.sorted() where !k.contains(key) { warnings.append("\(path).\(key) is not understood and was ignored") }
    }
}
