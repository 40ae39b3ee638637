// Built-in configurations for `vcconv import` without --config, and the structural validation an
// import needs. Values follow the official inference configs:
//   VideoCrafter2 512: AILab-CVC/VideoCrafter@11bcd76 configs/inference_t2v_512_v2.0.yaml
//   SD 2.1 512 (eps): Stability-AI/stablediffusion configs/stable-diffusion/v2-inference.yaml
//   SD 2.1 768-v:     Stability-AI/stablediffusion configs/stable-diffusion/v2-inference-v.yaml
// with the open_clip ViT-H-14 text tower (model_configs/ViT-H-14.json, open_clip 2.22.0).

/// A named built-in configuration.
public enum ModelPreset: String, CaseIterable, Sendable {
    case vc2_512 = "vc2-512"
    case sd21_512 = "sd21-512"
    case sd21_768v = "sd21-768-v"

    public var config: ModelConfig {
        switch self {
        case .vc2_512: return .vc2_512
        case .sd21_512: return .sd21_512
        case .sd21_768v: return .sd21_768v
        }
    }

    /// The presets whose expected tensors (`ModelTensors.expected`) all appear in `shapes` with
    /// exactly those shapes, and which leave no tensor of `shapes` unexplained. Several presets
    /// can match (SD 2.1 512 and 768-v have identical tensors; only the prediction type differs).
    public static func matching(_ shapes: [String: [Int]]) -> [ModelPreset] {
        allCases.filter { preset in
            let expected = ModelTensors.expected(for: preset.config)
            let names = Set(expected.map(\.name))
            for t in expected {
                if let s = shapes[t.name] {
                    if s != t.shape { return false }
                } else if t.use == .inference {
                    return false
                }
            }
            return shapes.keys.allSatisfy { names.contains($0) || KnownSpellings.isIgnorable($0) }
        }
    }
}

extension ModelConfig {
    /// Stable Diffusion 2.1 base (512 px, epsilon prediction).
    public static let sd21_512: ModelConfig = {
        var u = UNetConfig()
        u.removeVideoModules()
        var d = DiffusionConfig()
        d.useScale = false
        var v = VAEConfig()
        v.resolution = 256
        return ModelConfig(kind: .sd21, unet: u, text: TextEncoderConfig(), vae: v, diffusion: d)
    }()

    /// Stable Diffusion 2.1 768-v (v prediction; same tensors as `sd21_512`).
    public static let sd21_768v: ModelConfig = {
        var c = sd21_512
        c.diffusion.parameterization = "v"
        return c
    }()

    /// Checks what deriving tensor names and shapes needs (`ModelTensors.expected`), without the
    /// runtime's restrictions (`validate()` adds those: e.g. it refuses v-prediction and the
    /// relative positions of VideoCrafter1, which a file can still hold).
    public func validateStructure() throws {
        let u = unet
        guard u.modelChannels > 0, !u.channelMult.isEmpty, u.channelMult.allSatisfy({ $0 > 0 }), u.numResBlocks > 0,
              u.inChannels > 0, u.outChannels > 0 else {
            throw ConfigError("unet: in/out/model channels, channel_mult and num_res_blocks must be positive")
        }
        guard u.numHeadChannels > 0 || u.numHeads > 0 else { throw ConfigError("unet: num_head_channels or num_heads must be set") }
        guard u.contextDim > 0 else { throw ConfigError("unet: context_dim must be set (text conditioning)") }
        guard u.transformerDepth >= 1 else { throw ConfigError("unet: transformer_depth must be at least 1") }
        for m in u.channelMult {
            let c = u.modelChannels * m
            guard c % 32 == 0 else { throw ConfigError("unet: \(c) channels are not divisible by 32 GroupNorm groups") }
            guard u.heads(for: c).heads > 0, u.heads(for: c).dim > 0 else { throw ConfigError("unet: \(c) channels give no attention head") }
        }
        if u.additionAttention {
            guard u.numHeadChannels > 0 else { throw ConfigError("unet: addition_attention needs num_head_channels") }
        }
        if u.temporalConv || u.tempspatialAware {
            guard u.modelChannels % 32 == 0 else { throw ConfigError("unet: temporal conv GroupNorms need channels divisible by 32") }
        }
        if u.useRelativePosition || u.useCausalAttention {
            guard u.temporalLength > 0 else { throw ConfigError("unet: temporal_length must be positive") }
        }
        let t = text
        guard t.width > 0, t.heads > 0, t.width % t.heads == 0 else { throw ConfigError("text: width \(t.width) is not divisible by \(t.heads) heads") }
        guard t.layers >= 1, t.contextLength >= 2, t.vocabSize >= 2, t.embedDim > 0 else { throw ConfigError("text: bad layers/context/vocab/embed_dim") }
        guard t.layer == "penultimate" || t.layer == "last" else { throw ConfigError("text: layer must be 'penultimate' or 'last', not '\(t.layer)'") }
        guard t.layersRun >= 1 else { throw ConfigError("text: no block would run") }
        let v = vae
        guard v.ch > 0, !v.chMult.isEmpty, v.chMult.allSatisfy({ $0 > 0 }), v.numResBlocks > 0, v.zChannels > 0,
              v.embedDim > 0, v.inChannels > 0, v.outCh > 0, v.resolution > 0 else {
            throw ConfigError("vae: ch, ch_mult, num_res_blocks, z_channels, embed_dim and channels must be positive")
        }
        for m in v.chMult where (v.ch * m) % 32 != 0 { throw ConfigError("vae: \(v.ch * m) channels are not divisible by 32 groups") }
        let d = diffusion
        guard d.timesteps > 1, d.linearStart > 0, d.linearEnd > d.linearStart else { throw ConfigError("diffusion: bad beta schedule") }
        guard d.betaSchedule == "linear" else { throw ConfigError("diffusion: beta_schedule '\(d.betaSchedule)' is not supported") }
        guard ["eps", "v"].contains(d.parameterization) else { throw ConfigError("diffusion: parameterization '\(d.parameterization)' is not supported") }
        if d.useScale {
            guard d.midStep > 0, !d.fixScaleBug || d.midStep <= d.timesteps else { throw ConfigError("diffusion: bad mid_step \(d.midStep)") }
        }
        try validateRelations()
    }
}
