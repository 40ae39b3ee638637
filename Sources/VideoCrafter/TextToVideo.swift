// The text-to-video pipeline: prompt -> OpenCLIP text encoder -> VC2 3D UNet with DDIM and
// classifier-free guidance -> VAE decoder -> frames.
//
// This implementation matches the official sampling path of AILab-CVC/VideoCrafter@11bcd76
// (scripts/evaluation/inference.py + funcs.py `batch_ddim_sampling`, lvdm/models/samplers/ddim.py,
// lvdm/models/ddpm3d.py `decode_first_stage_2DAE`): the unconditional branch encodes "" (or the
// negative prompt), x_T is the first torch.randn draw after manual_seed(seed), every step draws
// its noise next, and the latents are decoded frame by frame.
import Foundation
import VCTensor
import VCFormats
import VCModels
import VCSampling

/// Everything a generation needs besides the model. Defaults are those of the official VC2
/// script (scripts/run_text2video.sh).
public struct GenerationParameters: Sendable, Codable, Equatable {
    public var prompt: String
    /// The unconditional prompt of classifier-free guidance ("" as upstream).
    public var negativePrompt: String = ""
    /// nil: pick a random seed (reported in the result).
    public var seed: UInt64?
    public var steps: Int = 50
    public var eta: Double = 1.0
    public var guidance: Double = 12.0
    /// fps conditioning of the UNet (the official VC2 script passes 28).
    public var fps: Int = 28
    public var frames: Int = 16
    public var height: Int = 320
    public var width: Int = 512
    /// How the two branches of classifier-free guidance go through the UNet (not an upstream
    /// setting: both give the same prediction, see `GuidanceBatching`).
    public var guidanceBatching: GuidanceBatching = .sequential
    /// Activation precision of the UNet's q8_0 / bf16 products (not an upstream setting). nil:
    /// the process setting, `.balanced` unless changed: its error stays far below the weights'
    /// own. `.fast` (int8 / bf16 activations) makes a q8 UNet about 1.4x faster but costs
    /// visible quality (golden A, q8: 30.0 dB against 37.3 dB); see docs/performance.md.
    /// `.exact` also keeps a q8 or bf16 model's VAE in f32 (see `TextToVideo.vaeArithmetic`).
    public var precision: Ops.GEMMPrecision?

    public init(prompt: String) { self.prompt = prompt }
}

/// How the conditional and unconditional branches of classifier-free guidance are run. The
/// UNet treats batch rows independently, so both give the same prediction; they differ in
/// memory. Measured on a q8 VC2 `.vcm` at the real shapes, 2 threads (docs/performance.md): one
/// batch-2 call took 148-150 s (one outlier run 124 s), two batch-1 calls 142-150 s, and the
/// batch-1 calls peak about 370 MiB lower, which keeps a full sample under 2.5 GB.
public enum GuidanceBatching: String, Sendable, Codable, CaseIterable {
    /// One UNet call per branch, batch 1: the smaller peak at the same speed (the default).
    case sequential
    /// Both branches in one batch-2 call, as the official code does.
    case batched
}

/// Errors found before any heavy work starts.
public struct GenerationError: Error, CustomStringConvertible, Equatable {
    public var message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}

/// Progress events, in order.
public enum GenerationEvent: Sendable {
    case loaded(component: String, seconds: Double)
    case encodedText(seconds: Double)
    /// A finished DDIM step (1-based `step` of `total`), with the latent after it
    /// (PyTorch layout `[1, C, T, h, w]`).
    case step(step: Int, total: Int, timestep: Int, seconds: Double, latent: Tensor)
    case decodedFrame(frame: Int, total: Int, seconds: Double)
}

/// The outcome of one generation.
public struct GenerationResult: Sendable {
    public var seed: UInt64
    /// Final latent, PyTorch layout `[1, C, T, h, w]`.
    public var latent: Tensor
    /// Decoded frames, channels-last `[T, H, W, 3]`, about [-1, 1].
    public var frames: Tensor
    public var parameters: GenerationParameters
    public var timings: [String: Double]
}

/// A loaded .vcm model ready to generate videos.
public final class TextToVideo: @unchecked Sendable {
    public let modelPath: String
    public let config: ModelConfig
    let file: VCMFile
    let tokenizer: CLIPTokenizer

    public init(modelPath: String, verify: Bool = true) throws {
        self.modelPath = modelPath
        let file = try VCMFile(path: modelPath, verify: verify)
        self.file = file
        guard let data = file.manifest.configJSON.data(using: .utf8) else {
            throw GenerationError("\(modelPath): the model file has no configuration")
        }
        let config: ModelConfig
        do { config = try ModelConfig.decodeStored(data) } catch {
            throw GenerationError("\(modelPath): \(error)")
        }
        guard config.kind == .vc2 else {
            throw GenerationError("\(modelPath): holds a \(config.kind.rawValue) model; vcrun sample needs a VideoCrafter2 (vc2) model")
        }
        self.config = config
        let vocab = try file.vocabulary()
        guard let merges = String(bytes: vocab, encoding: .utf8) else {
            throw GenerationError("\(modelPath): the tokenizer vocabulary is not UTF-8")
        }
        self.tokenizer = try CLIPTokenizer(mergesText: merges, contextLength: config.text.contextLength)
    }

    /// Pixel sizes must be multiples of this (the VAE factor times the UNet's downsampling).
    public var sizeMultiple: Int { config.vae.downsampleFactor * (1 << (config.unet.channelMult.count - 1)) }

    /// Checks parameters before any heavy work (sizes, counts, memory).
    public func validate(_ p: GenerationParameters) throws {
        let m = sizeMultiple
        guard p.height > 0, p.width > 0, p.height % m == 0, p.width % m == 0 else {
            throw GenerationError("height and width must be positive multiples of \(m) (got \(p.height)x\(p.width))")
        }
        guard p.frames >= 1 else { throw GenerationError("frames must be at least 1 (got \(p.frames))") }
        guard (1...1000).contains(p.steps) else { throw GenerationError("steps must be between 1 and 1000 (got \(p.steps))") }
        guard p.eta >= 0, p.eta.isFinite else { throw GenerationError("eta must be a finite number >= 0 (got \(p.eta))") }
        guard p.guidance.isFinite else { throw GenerationError("guidance must be finite") }
        guard p.fps >= 0 else { throw GenerationError("fps must be >= 0 (got \(p.fps))") }
        let need = estimatedPeakBytes(p)
        let limit = Self.physicalMemory()
        if need > limit {
            throw GenerationError("\(p.frames) frames of \(p.height)x\(p.width) would need about \(need >> 20) MiB, more than this machine's \(limit >> 20) MiB")
        }
    }

    /// A rough upper bound of the activation memory of one UNet call (the largest level holds a
    /// handful of [B*T*h*w, C] tensors plus the GEGLU intermediate), used to refuse absurd sizes.
    public func estimatedPeakBytes(_ p: GenerationParameters) -> Int {
        let h = p.height / config.vae.downsampleFactor, w = p.width / config.vae.downsampleFactor
        let tokens = Double(2 * p.frames) * Double(h * w)
        let c = Double(config.unet.modelChannels * (config.unet.channelMult.first ?? 1))
        let unet = tokens * c * 4 * 40          // skips + residual stream + FF (8C) + attention
        let vae = Double(p.height * p.width) * Double(config.vae.ch * (config.vae.chMult.first ?? 1)) * 4 * 8
        let weights = Double(file.file.size)
        let total = unet + vae + weights
        return total > Double(Int.max / 2) ? Int.max / 2 : Int(total)
    }

    static func physicalMemory() -> Int {
        Int(clamping: ProcessInfo.processInfo.physicalMemory)
    }

    /// The stored type of most of the UNet's linear/conv weights (what `vcconv import --type`
    /// chose; overrides may change a few), nil without any.
    public var unetMatrixType: DType? {
        var count: [DType: Int] = [:]
        for t in file.manifest.tensors where t.name.hasPrefix(ModelTensors.unetPrefix) && t.name.hasSuffix(".weight") && t.shape.count >= 2 {
            count[t.dtype, default: 0] += 1
        }
        return count.max { $0.value < $1.value }?.key
    }

    /// The VAE's 3x3 convolutions follow the UNet's reduced type unless the run asks for exact
    /// (fp32) activations (`VAEConvArithmetic.forModel`): int8 in a q8 model (golden A: 37.65 ->
    /// 37.34 dB, bar 34), bf16 in a bf16 model (47.10 -> 46.82 dB, bar 42), f32 otherwise.
    public func vaeArithmetic(_ p: GenerationParameters) -> VAEConvArithmetic {
        .forModel(unetType: unetMatrixType, exact: (p.precision ?? Ops.gemmPrecision) == .exact)
    }

    /// Drops the mapped pages of a component's tensors once it is done (they fault back in if read).
    private func releasePages(prefix: String) {
        for name in file.tensorNames where name.hasPrefix(prefix) { file.releasePages(named: name) }
    }

    /// Runs the whole pipeline. `onEvent` sees progress (and each step's latent).
    public func generate(_ p: GenerationParameters, onEvent: (GenerationEvent) -> Void = { _ in }) throws -> GenerationResult {
        try validate(p)
        var timings: [String: Double] = [:]
        let seed = p.seed ?? UInt64.random(in: 0...UInt64(UInt32.max))
        let clock = ContinuousClock()
        func seconds(_ d: Duration) -> Double { Double(d.components.seconds) + Double(d.components.attoseconds) * 1e-18 }

        // 1. Text: cond and uncond in one batch; the encoder is released after this block.
        var start = clock.now
        let useUncond = p.guidance != 1
        let context: Tensor
        do {
            let encoder = try OpenCLIPTextEncoder.load(from: file, config: config.text)
            var rows = [tokenizer.tokenize(p.prompt)]
            if useUncond { rows.append(tokenizer.tokenize(p.negativePrompt)) }
            context = try encoder.encode(tokens: rows)                   // [B, 77, width]
        }
        // The encoder's packed weights went with it; its tensors' mapped pages would stay
        // resident (about 0.7 GB of f16 for VC2) next to the UNet's: drop them.
        releasePages(prefix: ModelTensors.textPrefix)
        timings["text"] = seconds(clock.now - start)
        onEvent(.encodedText(seconds: timings["text"] ?? 0))

        // 2. UNet + DDIM.
        start = clock.now
        let unet = try UNet3D(config: config.unet, weights: file)
        onEvent(.loaded(component: "unet", seconds: seconds(clock.now - start)))
        var sc = NoiseScheduleConfiguration()
        let d = config.diffusion
        sc.timesteps = d.timesteps; sc.linearStart = d.linearStart; sc.linearEnd = d.linearEnd
        sc.useScale = d.useScale; sc.scaleA = d.scaleA; sc.scaleB = d.scaleB; sc.midStep = d.midStep
        sc.fixScaleBug = d.fixScaleBug
        let schedule = try NoiseSchedule(sc)
        let sampler = try DDIMSampler(schedule: schedule, configuration: SamplerConfiguration(steps: p.steps, eta: p.eta, guidanceScale: p.guidance, fps: p.fps))
        let f = config.vae.downsampleFactor
        let (t, h, w, c) = (p.frames, p.height / f, p.width / f, config.unet.inChannels)
        let shape = [1, c, t, h, w]
        let cfg = ClassifierFreeGuidance(scale: p.guidance)
        let batch = useUncond ? 2 : 1
        let denoiser: Denoiser = { x, timestep, _ in
            // [1, C, T, h, w] -> [T, h, w, C] (channels-last frames).
            let frames = try Ops.channelsLast(x).reshaped([t, h, w, c])
            // One UNet call over `n` copies of the frames with the context rows `ctx` ([n, 77, width]).
            func predict(_ input: Tensor, _ ctx: Tensor, _ n: Int) throws -> Tensor {
                let eps = try unet(x: input, timesteps: Array(repeating: timestep, count: n), context: ctx,
                                   fps: Array(repeating: p.fps, count: n), frames: t)    // [n*T, h, w, C]
                return try Ops.channelsFirst(try eps.reshaped([n, t, h, w, c]))          // [n, C, T, h, w]
            }
            if batch == 1 { return try predict(frames, context, 1) }
            switch p.guidanceBatching {
            case .batched:
                let both = try predict(try Ops.concatRows([frames, frames]), context, 2)  // [cond; uncond]
                return try cfg.combine(batched: both, order: .conditionalFirst)
            case .sequential:
                let cond = try predict(frames, try context.rows(0, 1), 1).floats()
                let uncond = try predict(frames, try context.rows(1, 1), 1).floats()
                return try Tensor(shape: shape, floats: try cfg.combine(conditional: cond, unconditional: uncond))
            }
        }
        var run = try sampler.start(shape: shape, generator: TorchGenerator(seed: seed), denoiser: denoiser)
        try Ops.withGEMMPrecision(p.precision) {
            while let out = try run.next() {
                onEvent(.step(step: out.stepIndex + 1, total: out.stepCount, timestep: out.timestep,
                              seconds: seconds(out.stepDuration), latent: out.latent))
            }
        }
        let latent = run.latent
        timings["unet"] = seconds(clock.now - start)
        // The UNet's mapped pages (about 1.4 GiB of q8_0 for VC2) are not needed again: drop them
        // so the VAE's weights and frames do not stack on top of them.
        releasePages(prefix: ModelTensors.unetPrefix)

        // 3. VAE, frame by frame.
        start = clock.now
        let vae = try VAEDecoder.load(from: file, config: config.vae, convArithmetic: vaeArithmetic(p))
        let z = try Ops.channelsLast(latent).reshaped([t, h, w, c])                     // [T, h, w, C]
        var parts: [Tensor] = []
        try Storage.withBufferCacheLimit(VAEDecoder.frameBufferCacheBytes) {
            for i in 0..<t {
                let s = clock.now
                parts.append(try vae.decode(latents: try z.rows(i, 1)))                   // [1, H, W, 3]
                onEvent(.decodedFrame(frame: i + 1, total: t, seconds: seconds(clock.now - s)))
            }
        }
        let frames = try Ops.concatRows(parts)                                           // [T, H, W, 3]
        timings["vae"] = seconds(clock.now - start)
        return GenerationResult(seed: seed, latent: latent, frames: frames, parameters: p, timings: timings)
    }
}
