import ArgumentParser
import Foundation
import VCTensor
import VideoCrafter
#if canImport(Glibc)
import Glibc
#endif

struct Sample: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Generate a video from a text prompt.",
        discussion: """
        Defaults are those of the official VideoCrafter2 script: 50 DDIM steps, eta 1.0, guidance 12,
        fps conditioning 28, 16 frames of 320x512, saved at 10 fps with crf 10. The same seed gives the
        same video as the PyTorch reference on CPU. Height and width must be multiples of 64.

        The output format follows the path: .mp4 (H.264, yuv420p), .gif, or a directory (a path
        ending in '/') of PNG frames. The prompt, seed and every parameter are stored in the file's
        metadata and in <output>.json.

        Examples:
          vcrun sample --model vc2-q8.vcm --prompt "a black swan swims on the pond" --seed 123 -o swan.mp4
          vcrun sample --model vc2-q8.vcm --prompt "fireworks over a lake" --steps 25 --frames 8 -o frames/
          vcrun sample --model tiny.vcm --prompt "a cat" --height 64 --width 128 --frames 5 --steps 4 -o cat.gif --json
        """)

    @Option(help: "The .vcm model file (vcconv import).")
    var model: String

    @Option(help: "What the video shows.")
    var prompt: String

    @Option(name: .customLong("negative-prompt"), help: "The unconditional prompt of classifier-free guidance.")
    var negativePrompt: String = ""

    @Option(help: "Random seed (torch.manual_seed-compatible). Default: a random one, printed and recorded.")
    var seed: UInt64?

    @Option(help: "DDIM steps.")
    var steps: Int = 50

    @Option(help: "DDIM eta (1.0: fresh noise every step, as upstream).")
    var eta: Double = 1.0

    @Option(help: "Classifier-free guidance scale (1 disables the unconditional branch).")
    var guidance: Double = 12.0

    @Option(help: "fps conditioning of the UNet (the official VC2 script uses 28).")
    var fps: Int = 28

    @Option(help: "Number of frames.")
    var frames: Int = 16

    @Option(help: "Height in pixels (multiple of 64).")
    var height: Int = 320

    @Option(help: "Width in pixels (multiple of 64).")
    var width: Int = 512

    @Option(name: .shortAndLong, help: "Output: out.mp4, out.gif or a directory for PNG frames.")
    var output: String = "video.mp4"

    @Option(name: .customLong("save-fps"), help: "Playback frame rate of the written video.")
    var saveFps: Int = 10

    @Option(help: "H.264 quality (constant rate factor, 1-51, lower is better).")
    var crf: Int = 10

    @Option(help: "Threads for the compute kernels (default: all cores).")
    var threads: Int?

    @Option(name: .customLong("guidance-batching"), help: ArgumentHelp(
        "How the two guidance branches run: sequential (two batch-1 UNet calls; about 370 MiB less at VC2's shapes, same speed) or batched (one batch-2 call, as upstream).",
        valueName: "mode"))
    var guidanceBatching: GuidanceBatching = .sequential

    @Option(help: ArgumentHelp(
        "Activation precision of the UNet's q8/bf16 products: balanced (default: 15-bit activations for q8, the weights' own quality), fast (int8/bf16 activations: a q8 UNet about 1.4x faster, with visibly lower quality; 30.0 dB against 37.3 dB on the golden test) or exact (fp32 activations, slowest). f16/f32 weights are always exact. The VAE of a q8 (bf16) model runs its 3x3 convolutions in int8 (bf16): about 2.5x (1.8x) faster, -0.3 dB on the golden test; exact keeps them f32.",
        valueName: "mode"))
    var precision: Ops.GEMMPrecision?

    @Option(name: .customLong("save-latents"), help: "Also write the final latent and the latent after every step to this .safetensors file.")
    var saveLatents: String?

    @Flag(name: .customLong("no-verify"), help: "Skip the per-tensor checksum check of the model file (faster start).")
    var noVerify = false

    @Flag(help: "Print progress and the result as JSON lines on stdout.")
    var json = false

    func validate() throws {
        guard height > 0, width > 0, height % 64 == 0, width % 64 == 0 else {
            throw ValidationError("--height and --width must be positive multiples of 64 (got \(height)x\(width))")
        }
        guard frames >= 1 else { throw ValidationError("--frames must be at least 1") }
        guard (1...1000).contains(steps) else { throw ValidationError("--steps must be between 1 and 1000") }
        guard eta >= 0, eta.isFinite else { throw ValidationError("--eta must be >= 0") }
        guard (1...240).contains(saveFps) else { throw ValidationError("--save-fps must be between 1 and 240") }
        guard (1...51).contains(crf) else { throw ValidationError("--crf must be between 1 and 51") }
        if let threads, threads < 1 { throw ValidationError("--threads must be at least 1") }
    }

    func run() throws {
        if let threads { Ops.setThreads(threads) }
        var p = GenerationParameters(prompt: prompt)
        p.negativePrompt = negativePrompt
        p.seed = seed ?? UInt64.random(in: 0...UInt64(UInt32.max))
        p.steps = steps; p.eta = eta; p.guidance = guidance; p.fps = fps
        p.frames = frames; p.height = height; p.width = width
        p.guidanceBatching = guidanceBatching
        p.precision = precision
        var out = SampleOutput(path: output)
        out.saveFps = saveFps; out.crf = crf; out.saveLatents = saveLatents
        if !json, seed == nil, let s = p.seed { printErr("seed: \(s)") }

        let display = StepDisplay(json: json)
        let cleanup = InterruptCleanup()
        let summary = try SampleJob.run(modelPath: model, parameters: p, output: out, verify: !noVerify) { display.show($0) }
        withExtendedLifetime(cleanup) {}
        display.finish()
        if json {
            let obj: [String: Any] = ["event": "done", "output": summary.output, "sidecar": summary.sidecar ?? "",
                                      "seed": summary.seed, "frames": summary.frames, "width": summary.width,
                                      "height": summary.height, "timings": summary.timings]
            StepDisplay.emit(obj)
        } else {
            print("wrote \(summary.output) (\(summary.frames) frames, \(summary.width)x\(summary.height), seed \(summary.seed))")
        }
    }
}

/// Progress on stderr: one rewritten line on a terminal ("step 12/50 · 3.4 s/step · ETA 2m 10s"),
/// plain lines otherwise; with --json, one JSON object per event on stdout.
final class StepDisplay {
    let json: Bool
    let tty = isatty(2) == 1
    var stepTimes: [Double] = []

    init(json: Bool) { self.json = json }

    static func emit(_ obj: [String: Any]) {
        if let d = try? JSONSerialization.data(withJSONObject: obj, options: [.sortedKeys]), let s = String(data: d, encoding: .utf8) {
            FileHandle.standardOutput.write(Data((s + "\n").utf8))
        }
    }

    func show(_ e: GenerationEvent) {
        switch e {
        case .loaded(let c, let s):
            if json { Self.emit(["event": "loaded", "component": c, "seconds": s]) }
        case .encodedText(let s):
            if json { Self.emit(["event": "text", "seconds": s]) } else if !tty { printErr(String(format: "text encoded in %.2f s", s)) }
        case .step(let i, let n, let t, let s, _):
            stepTimes.append(s)
            let mean = stepTimes.reduce(0, +) / Double(stepTimes.count)
            let eta = mean * Double(n - i)
            if json {
                Self.emit(["event": "step", "step": i, "total": n, "timestep": t, "seconds": s, "eta_seconds": eta])
            } else {
                let line = String(format: "step %d/%d · %.2f s/step · ETA %@", i, n, mean, Self.duration(eta))
                if tty { FileHandle.standardError.write(Data(("\r" + line + "\u{1B}[K").utf8)) } else { printErr(line) }
            }
        case .decodedFrame(let f, let n, let s):
            if json {
                Self.emit(["event": "frame", "frame": f, "total": n, "seconds": s])
            } else if tty {
                FileHandle.standardError.write(Data(("\r" + "decoding frame \(f)/\(n)" + "\u{1B}[K").utf8))
            } else if f == n {
                printErr("decoded \(n) frames")
            }
        }
    }

    func finish() {
        if tty && !json { FileHandle.standardError.write(Data("\r\u{1B}[K".utf8)) }
    }

    static func duration(_ s: Double) -> String {
        let t = Int(s.rounded())
        if t >= 3600 { return "\(t / 3600)h \(t % 3600 / 60)m" }
        if t >= 60 { return "\(t / 60)m \(t % 60)s" }
        return "\(t)s"
    }
}

extension GuidanceBatching: ExpressibleByArgument {}
extension Ops.GEMMPrecision: ExpressibleByArgument {}
