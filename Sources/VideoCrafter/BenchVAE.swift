// `vcrun bench --component vae`: times the VAE decoder frame by frame at the real shapes, as
// `vcrun sample` decodes (one latent at a time, the frame buffer cache, the convolution
// arithmetic a model of that weight type gets), with a FLOP count and peak RSS.
import Foundation
import VCFormats
import VCModels
import VCTensor

/// The measurements of `Bench.vae`.
public struct VAEBenchReport: Sendable, Codable {
    public var model: String
    /// Type of the decoder's stored conv weights.
    public var weightType: String
    /// `VAEConvArithmetic` of the 3x3 convolutions.
    public var convArithmetic: String
    public var frames: Int
    public var height: Int
    public var width: Int
    public var threads: Int
    public var weightBytes: Int
    public var loadSeconds: Double
    /// Every timed frame (all repeats), seconds (wall clock).
    public var frameSeconds: [Double]
    /// CPU time (user + system) per frame, over all timed frames.
    public var cpuSecondsPerFrame: Double
    public var medianSeconds: Double
    /// Per frame: convolutions and projections, and the mid block's attention products.
    public var gflop: Double
    public var gemmGflop: Double
    public var attentionGflop: Double
    public var gflops: Double
    /// The GEMM peak of the arithmetic (int8, bf16 or fp32 FMA), GFLOP/s.
    public var peakGflops: Double
    public var percentOfPeak: Double
    public var rssAfterLoadMiB: Double
    public var peakRSSDuringDecodeMiB: Double
    public var maxRSSMiB: Double
    public var loadAverageBefore: String
    public var loadAverageAfter: String
}

extension Bench {
    /// Decodes `o.frames` random latents of `o.height / 8` x `o.width / 8`, one at a time,
    /// `o.warmup` untimed frames first and the timed set `o.repeats` times. Weights: random at
    /// the kl-f8 shapes with the conv weights as `o.weightType` (q8: f16 weights run with int8
    /// convolutions, what a q8 model stores and runs; bf16: bf16 convolutions; default q8), or the
    /// decoder of a `.vcm` (`o.modelPath`) with the arithmetic `vcrun sample` would choose.
    public static func vae(_ o: BenchOptions, progress: (String) -> Void = { _ in }) throws -> VAEBenchReport {
        guard o.frames > 0, o.repeats > 0, o.warmup >= 0 else {
            throw BenchError.badOption("frames and repeats must be positive")
        }
        let started = ContinuousClock.now
        var config = VAEConfig()
        let f = config.downsampleFactor
        guard o.height > 0, o.width > 0, o.height % f == 0, o.width % f == 0 else {
            throw BenchError.badOption("height and width must be positive multiples of \(f) (got \(o.height)x\(o.width))")
        }
        Ops.setThreads(o.threads)
        let loadBefore = Self.loadAverage()
        let source: any TensorSource
        let arithmetic: VAEConvArithmetic
        let modelName: String
        if let path = o.modelPath {
            guard path.hasSuffix(".vcm") else { throw BenchError.badOption("--component vae needs a .vcm model (or random weights)") }
            let model = try TextToVideo(modelPath: path)
            config = model.config.vae
            var p = GenerationParameters(prompt: "")
            p.precision = o.precision
            arithmetic = model.vaeArithmetic(p)
            source = o.weightType.map { ConvertingSource(base: model.file, target: $0) } ?? model.file
            modelName = path
        } else {
            let type = o.weightType ?? .q8_0
            // As `TextToVideo.vaeArithmetic` picks for a model of this type: a q8 model keeps its
            // VAE in f16 and quantizes the 3x3 taps at load; a bf16 model runs bf16.
            source = RandomWeights(weightType: type == .q8_0 ? .f16 : type)
            arithmetic = .forModel(unetType: type, exact: (o.precision ?? Ops.gemmPrecision) == .exact)
            modelName = "random kl-f8"
        }
        progress("binding \(modelName) VAE decoder weights (\(arithmetic.rawValue) conv arithmetic)")
        let recorder = BoundWeights(source)
        let decoder = try VAEDecoder.load(from: recorder, config: config, convArithmetic: arithmetic)
        let loadSeconds = Self.seconds(ContinuousClock.now - started)
        Storage.trimBufferCache()
        let rssLoad = Self.memory().rss

        let (lh, lw) = (o.height / f, o.width / f)
        let latents = Ops.randomUniform([o.frames, lh, lw, config.embedDim], seed: 3, low: -1.5, high: 1.5)  // [T, h, w, 4]
        var times: [Double] = []
        var cpu = 0.0
        try Storage.withBufferCacheLimit(VAEDecoder.frameBufferCacheBytes) {
            for i in 0..<o.warmup {
                progress("warm-up frame \(i + 1)/\(o.warmup)")
                _ = try decoder.decode(latents: try latents.rows(i % o.frames, 1))
            }
            Self.resetPeakRSS()
            for r in 0..<o.repeats {
                for i in 0..<o.frames {
                    let c0 = Self.cpuTimes(), t0 = ContinuousClock.now
                    _ = try decoder.decode(latents: try latents.rows(i, 1))                    // [1, H, W, 3]
                    times.append(Self.seconds(ContinuousClock.now - t0))
                    let c1 = Self.cpuTimes()
                    cpu += c1.user + c1.system - c0.user - c0.system
                    progress(String(format: "frame %d/%d%@: %.2f s", i + 1, o.frames,
                                    o.repeats > 1 ? " (repeat \(r + 1)/\(o.repeats))" : "", times.last ?? 0))
                }
            }
        }
        let peakDuring = Self.memory().hwm
        let macs = VAEDecoder.decodeMACs(config: config, latentHeight: lh, latentWidth: lw)
        let (gemm, att) = (2 * macs.gemm / 1e9, 2 * macs.attention / 1e9)
        let peak: Double
        switch arithmetic {
        case .q8: peak = MachinePeak.int8GOPS
        case .bf16: peak = MachinePeak.bf16GFLOPS
        case .f32: peak = MachinePeak.f32GFLOPS
        }
        let median = Self.median(times)
        let ideal = gemm / peak + att / MachinePeak.f32GFLOPS
        return VAEBenchReport(
            model: modelName, weightType: (recorder.matrixType ?? .f32).rawValue, convArithmetic: arithmetic.rawValue,
            frames: o.frames, height: o.height, width: o.width, threads: Ops.threads, weightBytes: recorder.byteCount,
            loadSeconds: loadSeconds, frameSeconds: times, cpuSecondsPerFrame: cpu / Double(max(times.count, 1)),
            medianSeconds: median, gflop: gemm + att, gemmGflop: gemm, attentionGflop: att,
            gflops: median > 0 ? (gemm + att) / median : 0, peakGflops: peak,
            percentOfPeak: median > 0 ? 100 * ideal / median : 0, rssAfterLoadMiB: rssLoad,
            peakRSSDuringDecodeMiB: peakDuring, maxRSSMiB: Self.maxRSS(), loadAverageBefore: loadBefore,
            loadAverageAfter: Self.loadAverage())
    }

    /// A plain-text summary of a VAE report.
    public static func text(_ r: VAEBenchReport) -> String {
        var s = "VAE decode: \(r.model), \(r.weightType) conv weights, \(r.convArithmetic) conv arithmetic "
        s += String(format: "(%.0f MiB), ", Double(r.weightBytes) / 1_048_576)
        s += "\(r.frames) frames of \(r.height)x\(r.width), one at a time, \(r.threads) threads\n"
        let sorted = r.frameSeconds.sorted()
        s += String(format: "time per frame %.2f s (median of %d, min %.2f, max %.2f), %.0f GFLOP a frame -> %.1f GFLOP/s, %.0f%% of peak\n",
                    r.medianSeconds, sorted.count, sorted.first ?? 0, sorted.last ?? 0, r.gflop, r.gflops, r.percentOfPeak)
        s += String(format: "  CPU time per frame (user + system): %.2f s = %.2f s per thread\n",
                    r.cpuSecondsPerFrame, r.cpuSecondsPerFrame / Double(max(r.threads, 1)))
        s += String(format: "  FLOP per frame: convolutions and projections %.0f G at a %.0f GFLOP/s peak, attention %.1f G at %.0f\n",
                    r.gemmGflop, r.peakGflops, r.attentionGflop, MachinePeak.f32GFLOPS)
        s += String(format: "  weights bound in %.1f s; RSS after load %.0f MiB, peak during decoding %.0f MiB, process max %.0f MiB\n",
                    r.loadSeconds, r.rssAfterLoadMiB, r.peakRSSDuringDecodeMiB, r.maxRSSMiB)
        s += "  load average before: \(r.loadAverageBefore); after: \(r.loadAverageAfter)\n"
        return s
    }
}
