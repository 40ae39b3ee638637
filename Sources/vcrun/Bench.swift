// `vcrun bench`: one UNet call at the real shapes, timed per component, or the VAE decoder
// frame by frame.
import ArgumentParser
import Foundation
import VCTensor
import VideoCrafter

struct BenchCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bench",
        abstract: "Time one UNet call (per component, GFLOP/s, % of this machine's peak, peak RSS), or the VAE decoder.",
        discussion: """
        Without --model the weights are random (deterministic) at the real VideoCrafter2 shapes, \
        with the linear/conv weights converted to --type (norms and biases stay f32). With --model, \
        the UNet of that file runs (a .vcm with its own configuration, or a safetensors / .ckpt \
        file with VideoCrafter2 512 shapes).

        --component vae times the VAE decoder instead, one frame at a time as vcrun sample \
        decodes: --frames latents of --height x --width, --repeat times; --type q8 (the default) \
        means what a q8 model holds and runs (f16 weights, int8 3x3 convolutions unless \
        --precision exact), bf16 runs bf16 convolutions, f16 / f32 keep fp32 arithmetic; with \
        --model, that .vcm's VAE.

        Examples:
          vcrun bench --random vc2 --type q8 --batch 2 --threads 2
          vcrun bench --model vc2-q8.vcm --batch 1 --repeat 3 --warmup 1
          vcrun bench --random vc2 --frames 4 --height 256 --width 256 --json
          vcrun bench --component vae --frames 3 --warmup 1 --threads 2
          vcrun bench --component vae --type f16 --frames 3 --warmup 1 --threads 2
        """)

    enum Component: String, ExpressibleByArgument, CaseIterable { case unet, vae }

    @Option(name: .long, help: "What to time: unet (one call) or vae (decoding frame by frame).")
    var component: Component = .unet

    @Option(name: .long, help: "A .vcm model, or a .safetensors / .ckpt file with model.diffusion_model.* weights (instead of random ones).")
    var model: String?

    @Option(name: .long, help: "Random weights for this architecture (vc2).")
    var random: String = "vc2"

    @Option(name: .long, help: "Weight type of the linear/conv weights: q8, bf16, f16 or f32 (default: q8 for random weights, as stored for --model).")
    var type: String?

    @Option(name: .long, help: "Frames per video (vae: frames decoded per repeat).") var frames: Int = 16
    @Option(name: .long, help: "Pixel height (latent = height/8).") var height: Int = 320
    @Option(name: .long, help: "Pixel width (latent = width/8).") var width: Int = 512
    @Option(name: .long, help: "Batch (2 = both CFG branches in one call; unet only).") var batch: Int = 2
    @Option(name: .customLong("repeat"), help: "Timed calls, or timed passes over the frames for vae (the median is reported).") var repeats: Int = 1
    @Option(name: .long, help: "Untimed calls (vae: frames) before timing.") var warmup: Int = 0
    @Option(name: .long, help: "Threads (0: all cores).") var threads: Int = 0
    @Option(name: .long, help: ArgumentHelp(
        "Activation precision of the q8/bf16 products: balanced (default), fast or exact (see vcrun sample --help).",
        valueName: "mode"))
    var precision: Ops.GEMMPrecision?
    @Flag(name: .long, help: "Print the report as JSON.") var json = false

    func run() throws {
        var o = BenchOptions()
        o.modelPath = model
        switch random {
        case "vc2": o.randomModel = .vc2
        default: throw ValidationError("--random must be vc2")
        }
        switch type {
        case nil: o.weightType = nil
        case "q8", "q8_0": o.weightType = .q8_0
        case "bf16": o.weightType = .bf16
        case "f16": o.weightType = .f16
        case "f32": o.weightType = .f32
        default: throw ValidationError("--type must be q8, bf16, f16 or f32")
        }
        o.frames = frames; o.height = height; o.width = width; o.batch = batch
        o.repeats = repeats; o.warmup = warmup; o.threads = threads; o.precision = precision
        let quiet = json
        let progress: (String) -> Void = { line in
            if !quiet { FileHandle.standardError.write(Data((line + "\n").utf8)) }
        }
        let enc = JSONEncoder()
        enc.outputFormatting = [.prettyPrinted, .sortedKeys]
        switch component {
        case .unet:
            let report = try Bench.unet(o, progress: progress)
            print(json ? String(decoding: try enc.encode(report), as: UTF8.self) : Bench.text(report), terminator: json ? "\n" : "")
        case .vae:
            let report = try Bench.vae(o, progress: progress)
            print(json ? String(decoding: try enc.encode(report), as: UTF8.self) : Bench.text(report), terminator: json ? "\n" : "")
        }
    }
}
