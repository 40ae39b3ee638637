// `vcrun bench`: times one UNet call at the real shapes, with random weights of a chosen type or
// the weights of a model file, and reports per-component time, GFLOP/s from a FLOP count, the
// share of this machine's measured peak and peak RSS.
import Foundation
import VCFormats
import VCModels
import VCTensor

/// Deterministic random weights for whatever names and shapes a model binds (a
/// `ShapedTensorSource`): uniform in +-1/sqrt(fan_in) for linear/conv weights (PyTorch's default
/// init bound), 1 +- 0.1 for 1-D `.weight` tensors (norm scales) and +-0.02 for biases, seeded by
/// a hash of the name. Linear/conv weights (rank >= 2 `.weight`) are converted to `weightType`
/// the way `vcconv` quantises (norms and biases stay f32).
public final class RandomWeights: ShapedTensorSource, @unchecked Sendable {
    public let weightType: DType
    public let seed: UInt64
    private let lock = NSLock()
    private var made: [String: Tensor] = [:]

    public init(weightType: DType = .f32, seed: UInt64 = 0x5eed) {
        self.weightType = weightType
        self.seed = seed
    }

    public var tensorNames: [String] { lock.withLock { made.keys.sorted() } }

    /// Total bytes of the tensors made so far.
    public var byteCount: Int { lock.withLock { made.values.reduce(0) { $0 + $1.byteCount } } }

    public func tensor(named name: String) throws -> Tensor? { lock.withLock { made[name] } }

    public func tensor(named name: String, shape: [Int]) throws -> Tensor? {
        if let t = lock.withLock({ made[name] }) { return t }
        let isMatrix = shape.count >= 2 && name.hasSuffix(".weight")
        let fanIn = Float(shape.dropFirst().reduce(1, *))
        let (low, high): (Float, Float)
        if isMatrix {
            let a = 1 / fanIn.squareRoot()
            (low, high) = (-a, a)
        } else if name.hasSuffix(".weight") {
            (low, high) = (0.9, 1.1)
        } else {
            (low, high) = (-0.02, 0.02)
        }
        var t = Ops.randomUniform(shape, seed: Self.hash(name) ^ seed, low: low, high: high)
        if isMatrix && weightType != .f32 { t = try t.converted(to: weightType) }
        lock.withLock { made[name] = t }
        return t
    }

    /// FNV-1a 64 of the UTF-8 name.
    static func hash(_ s: String) -> UInt64 {
        var h: UInt64 = 0xcbf29ce484222325
        for b in s.utf8 { h = (h ^ UInt64(b)) &* 0x100000001b3 }
        return h
    }
}

/// Serves the linear/conv weights (rank >= 2 `.weight` tensors) of another source converted to a
/// weight type; norms, biases and everything else as stored.
public struct ConvertingSource: TensorSource {
    public let base: any TensorSource
    public let target: DType

    public init(base: any TensorSource, target: DType) {
        self.base = base
        self.target = target
    }

    public var tensorNames: [String] { base.tensorNames }

    public func tensor(named name: String) throws -> Tensor? {
        guard let t = try base.tensor(named: name) else { return nil }
        return name.hasSuffix(".weight") && t.rank >= 2 ? try t.converted(to: target) : t
    }
}

/// Passes a source through and records what was bound: total bytes and the type of the
/// linear/conv weights.
final class BoundWeights: ShapedTensorSource, @unchecked Sendable {
    let base: any TensorSource
    private let lock = NSLock()
    private var bytes = 0
    private var matrix: DType?

    init(_ base: any TensorSource) { self.base = base }

    var tensorNames: [String] { base.tensorNames }
    var byteCount: Int { lock.withLock { bytes } }
    var matrixType: DType? { lock.withLock { matrix } }

    func tensor(named name: String) throws -> Tensor? { try record(name, base.tensor(named: name)) }

    func tensor(named name: String, shape: [Int]) throws -> Tensor? {
        if let shaped = base as? any ShapedTensorSource { return try record(name, shaped.tensor(named: name, shape: shape)) }
        return try record(name, base.tensor(named: name))
    }

    private func record(_ name: String, _ t: Tensor?) -> Tensor? {
        guard let t else { return nil }
        lock.withLock {
            bytes += t.byteCount
            if matrix == nil, name.hasSuffix(".weight"), t.rank >= 2 { matrix = t.dtype }
        }
        return t
    }
}

/// What to benchmark.
public struct BenchOptions: Sendable {
    /// A `.vcm` model (its configuration is used), or a weights file or folder with
    /// `model.diffusion_model.*` keys and VC2 512 shapes (anything `TensorFiles.open`
    /// reads: safetensors, a PyTorch checkpoint); nil: random weights.
    public var modelPath: String?
    /// The architecture of the random model.
    public var randomModel: ModelKind = .vc2
    /// Type of the linear/conv weights (norms and biases stay f32). nil: q8_0 for random weights,
    /// as stored for a model file.
    public var weightType: DType?
    public var frames = 16
    /// Pixel height and width (the latent is 1/8 of each).
    public var height = 320
    public var width = 512
    public var batch = 2
    /// Timed calls (the report gives the median); `warmup` untimed calls first.
    public var repeats = 1
    public var warmup = 0
    /// Threads for our pool and OpenBLAS (< 1: all cores).
    public var threads = 0
    public var contextTokens = 77
    /// Activation precision of the q8_0 / bf16 products (nil: the process setting, balanced).
    public var precision: Ops.GEMMPrecision?

    public init() {}
}

/// This machine's measured peaks (docs/performance.md, ../shared/research/feasibility.md
/// section 3a: 2 Zen 4 cores, hand-written loops of independent FMAs / dot products).
public enum MachinePeak {
    /// fp32 FMA, 2 threads.
    public static let f32GFLOPS = 232.0
    /// `vdpbf16ps`, 2 threads (also the yardstick for f16 weights, which the GEMM widens).
    public static let bf16GFLOPS = 466.0
    /// int8 `vpdpbusd`, 2 threads (ops, a MAC counted as 2).
    public static let int8GOPS = 931.0

    /// The GEMM peak for a weight type.
    public static func gemm(_ t: DType) -> Double {
        switch t {
        case .q8_0: return int8GOPS
        case .bf16, .f16: return bf16GFLOPS
        default: return f32GFLOPS
        }
    }
}

/// One component's share of a call (median over the timed calls).
public struct BenchComponent: Sendable, Codable, Equatable {
    public var name: String
    public var seconds: Double
    public var gflop: Double
    public var gflops: Double
    /// Time at peak over the measured time: linear/conv FLOPs at the weight type's GEMM peak,
    /// attention FLOPs at the fp32 peak.
    public var percentOfPeak: Double
}

/// The measurements of `Bench.unet`.
public struct BenchReport: Sendable, Codable {
    public var model: String
    public var weightType: String
    /// Activation precision of the q8_0 / bf16 products during the calls.
    public var precision: String
    public var batch: Int
    public var frames: Int
    public var height: Int
    public var width: Int
    public var latent: [Int]
    public var threads: Int
    public var weightBytes: Int
    public var loadSeconds: Double
    /// Every timed call, seconds (wall clock).
    public var calls: [Double]
    /// CPU time (user + system, all threads) of every timed call, seconds: on a shared machine
    /// cpu / threads is what the call would take with the cores to itself (if it scales).
    public var cpuSeconds: [Double]
    /// Of which system time (page faults of fresh allocations, thread wake-ups).
    public var systemSeconds: [Double]
    public var medianSeconds: Double
    public var gflop: Double
    public var linearGflop: Double
    public var convGflop: Double
    public var attentionGflop: Double
    public var gflops: Double
    public var peakGflops: Double
    public var percentOfPeak: Double
    public var components: [BenchComponent]
    /// Resident set after binding the weights, and the peak during the timed calls (VmHWM,
    /// reset before the calls where the kernel allows it), MiB.
    public var rssAfterLoadMiB: Double
    public var peakRSSDuringCallsMiB: Double
    /// The most activation tensor memory (heap storage, weights excluded) alive at once during a
    /// call, MiB, and the observer event that ends the layer where it happened.
    public var peakTensorMiB: Double
    public var peakTensorEvent: String
    /// getrusage ru_maxrss of the whole process, MiB.
    public var maxRSSMiB: Double
    public var loadAverageBefore: String
    public var loadAverageAfter: String
}

public enum BenchError: Error, CustomStringConvertible {
    case badOption(String)
    public var description: String {
        switch self { case let .badOption(m): return "bench: \(m)" }
    }
}

public enum Bench {
    /// Times UNet calls. `progress` receives one line per step.
    public static func unet(_ o: BenchOptions, progress: (String) -> Void = { _ in }) throws -> BenchReport {
        guard o.frames > 0, o.batch > 0, o.repeats > 0, o.warmup >= 0, o.contextTokens > 0 else {
            throw BenchError.badOption("frames, batch, repeats and context tokens must be positive")
        }
        guard o.height > 0, o.width > 0, o.height % 8 == 0, o.width % 8 == 0 else {
            throw BenchError.badOption("height and width must be positive multiples of 8 (got \(o.height)x\(o.width))")
        }
        Ops.setThreads(o.threads)
        let loadBefore = Self.loadAverage()
        var config = ModelConfig.vc2_512.unet
        let started = ContinuousClock.now
        let source: any TensorSource
        let modelName: String
        if let path = o.modelPath, path.hasSuffix(".vcm") {
            // A converted model: its own configuration, its stored weight types (or --type).
            let model = try TextToVideo(modelPath: path)
            config = model.config.unet
            source = o.weightType.map { ConvertingSource(base: model.file, target: $0) } ?? model.file
            modelName = path
        } else if let path = o.modelPath {
            let file = try TensorFiles.open(path)
            source = o.weightType.map { ConvertingSource(base: file, target: $0) } ?? file
            modelName = path
        } else {
            guard o.randomModel == .vc2 else { throw BenchError.badOption("random \(o.randomModel.rawValue) weights are not available (vc2 only)") }
            source = RandomWeights(weightType: o.weightType ?? .q8_0)
            modelName = "random vc2"
        }
        progress("binding \(modelName) UNet weights" + (o.weightType.map { " (linear/conv weights as \($0.rawValue))" } ?? ""))
        let recorder = BoundWeights(source)
        let net = try UNet3D(config: config, weights: recorder)
        let loadSeconds = Self.seconds(ContinuousClock.now - started)
        let weightBytes = recorder.byteCount
        let weightType = recorder.matrixType ?? .f32
        Storage.trimBufferCache()   // load-time temporaries (f32 weights before conversion) are not activations
        let rssLoad = Self.memory().rss

        let (lh, lw) = (o.height / 8, o.width / 8)
        let x = Ops.randomUniform([o.batch * o.frames, lh, lw, config.inChannels], seed: 1, low: -1.7, high: 1.7)
        let context = Ops.randomUniform([o.batch, o.contextTokens, config.contextDim], seed: 2, low: -1, high: 1)
        let timesteps = (0..<o.batch).map { 981 - 20 * $0 }
        let fps = Array(repeating: 28, count: o.batch)
        let costs = net.layerCosts(batch: o.batch, frames: o.frames, height: lh, width: lw, contextTokens: o.contextTokens)

        for i in 0..<o.warmup {
            progress("warm-up call \(i + 1)/\(o.warmup)")
            _ = try Ops.withGEMMPrecision(o.precision) { try net(x: x, timesteps: timesteps, context: context, fps: fps, frames: o.frames) }
        }
        Self.resetPeakRSS()
        var calls: [Double] = [], cpu: [Double] = [], sys: [Double] = []
        var peakTensor = 0, peakEvent = ""
        var perEvent: [[String: Double]] = []
        for i in 0..<o.repeats {
            progress("timed call \(i + 1)/\(o.repeats): batch \(o.batch), \(o.frames) frames, latent \(lh)x\(lw)")
            let rec = EventTimer()
            let baseline = Storage.liveHeapBytes
            Storage.resetPeakHeapBytes()
            let c0 = Self.cpuTimes()
            let t0 = ContinuousClock.now
            rec.last = t0
            _ = try Ops.withGEMMPrecision(o.precision) {
                try net(x: x, timesteps: timesteps, context: context, fps: fps, frames: o.frames,
                        observer: { name, _ in rec.mark(name) })
            }
            let s = Self.seconds(ContinuousClock.now - t0)
            let c1 = Self.cpuTimes()
            calls.append(s)
            cpu.append(c1.user + c1.system - c0.user - c0.system)
            sys.append(c1.system - c0.system)
            perEvent.append(rec.times)
            if rec.peakBytes - baseline > peakTensor { peakTensor = rec.peakBytes - baseline; peakEvent = rec.peakEvent }
            progress(String(format: "  %.2f s (CPU %.1f s, of which system %.1f s)", s, cpu.last ?? 0, sys.last ?? 0))
        }
        let peakDuring = Self.memory().hwm

        // Components: median over calls of the summed event times.
        let gemmPeak = MachinePeak.gemm(weightType)
        let attPeak = MachinePeak.f32GFLOPS
        var order: [String] = []
        var byComponent: [String: (lin: Double, conv: Double, att: Double)] = [:]
        var componentOf: [String: String] = [:]
        for c in costs {
            componentOf[c.event] = c.component
            if byComponent[c.component] == nil { order.append(c.component) }
            let e = byComponent[c.component] ?? (0, 0, 0)
            byComponent[c.component] = (e.lin + c.linearMACs, e.conv + c.convMACs, e.att + c.attentionMACs)
        }
        order.append("other")
        var components: [BenchComponent] = []
        for name in order {
            let times = perEvent.map { ev in ev.reduce(0.0) { acc, kv in (componentOf[kv.key] ?? "other") == name ? acc + kv.value : acc } }
            let t = Self.median(times)
            let m = byComponent[name] ?? (0, 0, 0)
            let gflop = 2 * (m.lin + m.conv + m.att) / 1e9
            let ideal = 2 * (m.lin + m.conv) / 1e9 / gemmPeak + 2 * m.att / 1e9 / attPeak
            components.append(BenchComponent(name: name, seconds: t, gflop: gflop, gflops: t > 0 ? gflop / t : 0,
                                             percentOfPeak: t > 0 ? 100 * ideal / t : 0))
        }
        let lin = costs.reduce(0) { $0 + $1.linearMACs } * 2 / 1e9
        let conv = costs.reduce(0) { $0 + $1.convMACs } * 2 / 1e9
        let att = costs.reduce(0) { $0 + $1.attentionMACs } * 2 / 1e9
        let median = Self.median(calls)
        let ideal = (lin + conv) / gemmPeak + att / attPeak
        return BenchReport(
            model: modelName, weightType: weightType.rawValue, precision: (o.precision ?? Ops.gemmPrecision).rawValue, batch: o.batch, frames: o.frames, height: o.height, width: o.width,
            latent: [o.batch * o.frames, lh, lw, config.inChannels], threads: Ops.threads, weightBytes: weightBytes,
            loadSeconds: loadSeconds, calls: calls, cpuSeconds: cpu, systemSeconds: sys, medianSeconds: median, gflop: lin + conv + att, linearGflop: lin,
            convGflop: conv, attentionGflop: att, gflops: (lin + conv + att) / median, peakGflops: gemmPeak,
            percentOfPeak: 100 * ideal / median, components: components, rssAfterLoadMiB: rssLoad,
            peakRSSDuringCallsMiB: peakDuring, peakTensorMiB: Double(peakTensor) / 1_048_576, peakTensorEvent: peakEvent, maxRSSMiB: Self.maxRSS(), loadAverageBefore: loadBefore,
            loadAverageAfter: Self.loadAverage())
    }

    /// A plain-text table of a report.
    public static func text(_ r: BenchReport) -> String {
        var s = "UNet call: \(r.model), \(r.weightType) weights (\(String(format: "%.2f", Double(r.weightBytes) / 1_073_741_824)) GiB, \(r.precision) precision), "
        s += "batch \(r.batch) x \(r.frames) frames, \(r.height)x\(r.width) (latent \(r.latent[1])x\(r.latent[2])), \(r.threads) threads\n"
        s += String(format: "time %.2f s (median of %d: ", r.medianSeconds, r.calls.count)
        s += r.calls.map { String(format: "%.2f", $0) }.joined(separator: ", ")
        s += String(format: "), %.0f GFLOP -> %.1f GFLOP/s, %.0f%% of peak\n", r.gflop, r.gflops, r.percentOfPeak)
        s += String(format: "  CPU time per call (user + system, median): %.1f s (system %.1f s) = %.1f s per thread\n",
                    Self.median(r.cpuSeconds), Self.median(r.systemSeconds), Self.median(r.cpuSeconds) / Double(max(r.threads, 1)))
        s += String(format: "  FLOP: linear %.0f G, conv %.0f G, attention %.0f G; GEMM peak %.0f GFLOP/s (attention at %.0f)\n",
                    r.linearGflop, r.convGflop, r.attentionGflop, r.peakGflops, MachinePeak.f32GFLOPS)
        s += String(format: "  weights bound in %.1f s; RSS after load %.0f MiB, peak during calls %.0f MiB, process max %.0f MiB\n",
                    r.loadSeconds, r.rssAfterLoadMiB, r.peakRSSDuringCallsMiB, r.maxRSSMiB)
        s += String(format: "  activation tensors: at most %.0f MiB alive at once", r.peakTensorMiB) + " (in the layer ending at \(r.peakTensorEvent))\n"
        s += "  load average before: \(r.loadAverageBefore); after: \(r.loadAverageAfter)\n"
        s += "  component                 seconds   share     GFLOP   GFLOP/s  % of peak\n"
        for c in r.components where c.seconds > 0 || c.gflop > 0 {
            s += "  " + c.name.padding(toLength: 24, withPad: " ", startingAt: 0)
            s += String(format: " %8.2f  %5.1f%%  %8.0f", c.seconds, 100 * c.seconds / max(r.medianSeconds, 1e-9), c.gflop)
            // Rates of pieces that take a few milliseconds are noise.
            s += c.seconds >= 0.05 && c.gflop >= 1 ? String(format: "  %8.1f  %8.0f%%\n", c.gflops, c.percentOfPeak) : "         -         -\n"
        }
        return s
    }

    // MARK: measurement helpers

    static func seconds(_ d: Duration) -> Double {
        Double(d.components.seconds) + Double(d.components.attoseconds) * 1e-18
    }

    static func median(_ v: [Double]) -> Double {
        guard !v.isEmpty else { return 0 }
        let s = v.sorted()
        return s.count % 2 == 1 ? s[s.count / 2] : (s[s.count / 2 - 1] + s[s.count / 2]) / 2
    }

    /// VmRSS and VmHWM from /proc/self/status, MiB (0 where unavailable).
    static func memory() -> (rss: Double, hwm: Double) {
        guard let text = try? String(contentsOfFile: "/proc/self/status", encoding: .utf8) else { return (0, 0) }
        func field(_ key: String) -> Double {
            for line in text.split(separator: "\n") where line.hasPrefix(key) {
                let digits = line.split(separator: " ").compactMap { Double($0) }
                if let kb = digits.first { return kb / 1024 }
            }
            return 0
        }
        return (field("VmRSS:"), field("VmHWM:"))
    }

    /// Resets VmHWM to the current RSS (Linux: "5" to /proc/self/clear_refs); no-op elsewhere.
    static func resetPeakRSS() {
        guard let h = FileHandle(forWritingAtPath: "/proc/self/clear_refs") else { return }
        try? h.write(contentsOf: Data("5".utf8))
        try? h.close()
    }

    /// User and system CPU seconds of the process so far.
    static func cpuTimes() -> (user: Double, system: Double) {
        var u = rusage()
        getrusage(RUSAGE_SELF.rawValue, &u)
        return (Double(u.ru_utime.tv_sec) + Double(u.ru_utime.tv_usec) * 1e-6,
                Double(u.ru_stime.tv_sec) + Double(u.ru_stime.tv_usec) * 1e-6)
    }

    static func maxRSS() -> Double {
        var u = rusage()
        getrusage(RUSAGE_SELF.rawValue, &u)
        return Double(u.ru_maxrss) / 1024
    }

    static func loadAverage() -> String {
        ((try? String(contentsOfFile: "/proc/loadavg", encoding: .utf8)) ?? "unknown")
            .trimmingCharacters(in: .whitespacesAndNewlines)
    }
}

/// Attributes the wall time between consecutive observer events to the later event, and the
/// most tensor (heap storage) memory alive in between.
final class EventTimer {
    var last = ContinuousClock.now
    var times: [String: Double] = [:]
    var peakBytes = 0
    var peakEvent = ""

    func mark(_ event: String) {
        let now = ContinuousClock.now
        times[event, default: 0] += Bench.seconds(now - last)
        last = now
        let p = Storage.peakHeapBytes
        if p > peakBytes { peakBytes = p; peakEvent = event }
        Storage.resetPeakHeapBytes()
    }
}
