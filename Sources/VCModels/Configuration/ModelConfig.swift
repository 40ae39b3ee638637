// Model hyperparameters. Field names follow the official LVDM YAML
// (AILab-CVC/VideoCrafter@11bcd76 configs/inference_t2v_512_v2.0.yaml) and the open_clip model
// config; defaults are the official class defaults, so an omitted YAML key means what it means
// upstream. `validate()` checks the relations the code relies on (e.g. heads divide channels).

/// Which family a model file holds.
public enum ModelKind: String, Codable, Sendable, CaseIterable {
    case vc2, vc1, sd21
}

/// Errors found while decoding or validating a configuration.
public struct ConfigError: Error, CustomStringConvertible, Equatable {
    public var message: String
    public init(_ message: String) { self.message = message }
    public var description: String { "configuration: \(message)" }
}

/// `lvdm.modules.networks.openaimodel3d.UNetModel` parameters.
public struct UNetConfig: Codable, Sendable, Equatable {
    public var inChannels = 4
    public var outChannels = 4
    public var modelChannels = 320
    public var attentionResolutions = [4, 2, 1]
    public var numResBlocks = 2
    public var channelMult = [1, 2, 4, 4]
    /// Channels per attention head (-1: use `numHeads`).
    public var numHeadChannels = 64
    public var numHeads = -1
    public var transformerDepth = 1
    public var contextDim = 1024
    public var useLinear = true
    public var temporalConv = true
    public var temporalAttention = true
    public var temporalSelfAttOnly = true
    public var useRelativePosition = false
    public var useCausalAttention = false
    public var temporalLength = 16
    /// `init_attn`: a temporal transformer after the input conv (8 heads of `numHeadChannels`).
    public var additionAttention = true
    public var fpsCond = true
    public var useScaleShiftNorm = false
    public var resblockUpdown = false
    public var convResample = true
    public var tempspatialAware = false

    public init() {}

    /// Time-embedding width (4 x model channels, as upstream).
    public var timeEmbedDim: Int { modelChannels * 4 }

    /// Heads and head width for a block of `channels` channels.
    public func heads(for channels: Int) -> (heads: Int, dim: Int) {
        if numHeadChannels > 0 { return (channels / numHeadChannels, numHeadChannels) }
        return (numHeads, channels / max(numHeads, 1))
    }

    /// Switches every VideoCrafter-only module off, leaving the SD 2.x UNet.
    public mutating func removeVideoModules() {
        temporalConv = false; tempspatialAware = false; temporalAttention = false
        useRelativePosition = false; useCausalAttention = false; additionAttention = false; fpsCond = false
    }

    public func validate() throws {
        guard modelChannels > 0, !channelMult.isEmpty, numResBlocks > 0 else {
            throw ConfigError("unet: model_channels, channel_mult and num_res_blocks must be positive")
        }
        guard numHeadChannels > 0 || numHeads > 0 else { throw ConfigError("unet: num_head_channels or num_heads must be set") }
        for m in channelMult {
            let c = modelChannels * m
            guard c % 32 == 0 else { throw ConfigError("unet: \(c) channels are not divisible by 32 GroupNorm groups") }
            let (h, d) = heads(for: c)
            guard h > 0, h * d == c else { throw ConfigError("unet: \(c) channels do not split into heads of \(numHeadChannels)") }
        }
        guard !useRelativePosition else { throw ConfigError("unet: use_relative_position (VideoCrafter1) is not supported yet") }
    }
}

/// OpenCLIP text tower (`text_cfg` of the open_clip model config) as FrozenOpenCLIPEmbedder runs it.
public struct TextEncoderConfig: Codable, Sendable, Equatable {
    public var vocabSize = 49408
    public var contextLength = 77
    public var width = 1024
    public var heads = 16
    public var layers = 24
    /// "penultimate" (VideoCrafter, SD 2.x) runs layers-1 blocks; "last" runs all.
    public var layer = "penultimate"
    /// open_clip `embed_dim`: columns of `text_projection` (a tensor inference does not use).
    public var embedDim = 1024

    public init() {}

    /// Number of residual blocks actually run.
    public var layersRun: Int { layer == "last" ? layers : layers - 1 }

    public func validate() throws {
        guard width > 0, heads > 0, width % heads == 0 else { throw ConfigError("text: width \(width) is not divisible by \(heads) heads") }
        guard layers >= 1, contextLength >= 2, vocabSize > 49407 || vocabSize > 2 else { throw ConfigError("text: bad layers/context/vocab") }
        guard layer == "penultimate" || layer == "last" else { throw ConfigError("text: layer must be 'penultimate' or 'last', not '\(layer)'") }
        guard layersRun >= 1 else { throw ConfigError("text: no block would run") }
    }
}

/// `lvdm.models.autoencoder.AutoencoderKL` ddconfig (SD kl-f8 topology).
public struct VAEConfig: Codable, Sendable, Equatable {
    public var embedDim = 4
    public var zChannels = 4
    public var ch = 128
    public var chMult = [1, 2, 4, 4]
    public var numResBlocks = 2
    public var inChannels = 3
    public var outCh = 3
    public var doubleZ = true
    public var attnResolutions: [Int] = []
    public var resolution = 512
    public var scaleFactor: Float = 0.18215

    public init() {}

    /// Spatial downsampling factor of the latent (2^(levels-1)).
    public var downsampleFactor: Int { 1 << (chMult.count - 1) }

    public func validate() throws {
        guard ch > 0, !chMult.isEmpty, numResBlocks > 0 else { throw ConfigError("vae: ch, ch_mult and num_res_blocks must be positive") }
        for m in chMult where (ch * m) % 32 != 0 { throw ConfigError("vae: \(ch * m) channels are not divisible by 32 groups") }
        guard attnResolutions.isEmpty else { throw ConfigError("vae: attention outside the mid block is not supported") }
    }
}

/// The diffusion process (`lvdm.models.ddpm3d.LatentDiffusion` parameters).
public struct DiffusionConfig: Codable, Sendable, Equatable {
    public var linearStart = 0.00085
    public var linearEnd = 0.012
    public var timesteps = 1000
    public var betaSchedule = "linear"
    public var parameterization = "eps"
    public var useScale = true
    public var scaleA = 1.0
    public var scaleB = 0.7
    public var midStep = 400
    public var fixScaleBug = false
    public var uncondType = "empty_seq"
    public var channels = 4

    public init() {}

    public func validate() throws {
        guard timesteps > 1, linearStart > 0, linearEnd > linearStart else { throw ConfigError("diffusion: bad beta schedule") }
        guard betaSchedule == "linear" else { throw ConfigError("diffusion: beta_schedule '\(betaSchedule)' is not supported") }
        guard parameterization == "eps" else { throw ConfigError("diffusion: parameterization '\(parameterization)' is not supported") }
    }
}

/// Everything a model file needs to run.
public struct ModelConfig: Codable, Sendable, Equatable {
    public var kind: ModelKind
    public var unet: UNetConfig
    public var text: TextEncoderConfig
    public var vae: VAEConfig
    public var diffusion: DiffusionConfig

    public init(kind: ModelKind, unet: UNetConfig, text: TextEncoderConfig, vae: VAEConfig, diffusion: DiffusionConfig) {
        self.kind = kind; self.unet = unet; self.text = text; self.vae = vae; self.diffusion = diffusion
    }

    public func validate() throws {
        try unet.validate(); try text.validate(); try vae.validate(); try diffusion.validate()
        try validateRelations()
    }

    /// The relations between the parts (used by `validate()` and `validateStructure()`).
    func validateRelations() throws {
        guard unet.contextDim == text.width else {
            throw ConfigError("unet context_dim \(unet.contextDim) does not match the text width \(text.width)")
        }
        guard unet.inChannels == vae.zChannels else {
            throw ConfigError("unet in_channels \(unet.inChannels) does not match the VAE latent channels \(vae.zChannels)")
        }
    }

    /// VideoCrafter2 512 (configs/inference_t2v_512_v2.0.yaml + open_clip ViT-H-14).
    public static let vc2_512 = ModelConfig(kind: .vc2, unet: UNetConfig(), text: TextEncoderConfig(), vae: VAEConfig(), diffusion: DiffusionConfig())
}
