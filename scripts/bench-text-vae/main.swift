// Throwaway benchmark of the full-size OpenCLIP text encoder and VAE decoder with random weights
// at the real shapes (not part of the package; scripts/bench-text-vae/run builds and runs it).
//   text-vae-bench text [--runs N] [--threads N] [--dtype f32|f16|q8_0]
//   text-vae-bench vae  [--runs N] [--threads N] [--dtype f32|f16|q8_0] [--frames T] [--conv f32|q8]
// (--conv: the decoder's VAEConvArithmetic; a q8 model's VAE is --dtype f16 --conv q8)
// Prints load time, every timed run, the median, this process's CPU time per run, peak RSS
// (getrusage) and the average number of cores other processes kept busy during the timed runs
// ("others_load", from /proc/stat).
import Foundation
import VCTensor
import VCModels

func now() -> Double {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return Double(ts.tv_sec) + Double(ts.tv_nsec) * 1e-9
}

/// (busy jiffies of all CPUs, own CPU seconds)
func cpuCounters() -> (busy: Double, own: Double) {
    var busy = 0.0
    if let s = try? String(contentsOfFile: "/proc/stat", encoding: .utf8), let line = s.split(separator: "\n").first {
        let f = line.split(separator: " ").dropFirst().compactMap { Double($0) }
        if f.count >= 5 { busy = f.reduce(0, +) - f[3] - f[4] }   // minus idle and iowait
    }
    var ru = rusage()
    getrusage(RUSAGE_SELF.rawValue, &ru)
    let own = Double(ru.ru_utime.tv_sec) + Double(ru.ru_utime.tv_usec) * 1e-6 + Double(ru.ru_stime.tv_sec) + Double(ru.ru_stime.tv_usec) * 1e-6
    return (busy / Double(sysconf(Int32(_SC_CLK_TCK))), own)
}

func peakRSSMB() -> Double {
    var ru = rusage()
    getrusage(RUSAGE_SELF.rawValue, &ru)
    return Double(ru.ru_maxrss) / 1024
}

var args = Array(CommandLine.arguments.dropFirst())
guard let what = args.first, what == "text" || what == "vae" else {
    print("usage: text-vae-bench text|vae [--runs N] [--threads N] [--dtype f32|f16|q8_0]")
    exit(2)
}
args.removeFirst()
var runs = 3, threads = 2, frames = 1
var dtype = DType.f32
var conv = VAEConvArithmetic.f32
while args.count >= 2 {
    switch args[0] {
    case "--runs": runs = Int(args[1]) ?? runs
    case "--threads": threads = Int(args[1]) ?? threads
    case "--dtype": dtype = DType(rawValue: args[1]) ?? dtype
    case "--frames": frames = max(Int(args[1]) ?? frames, 1)
    case "--conv": conv = VAEConvArithmetic(rawValue: args[1]) ?? conv
    default: break
    }
    args.removeFirst(2)
}
Ops.setThreads(threads)

do {
    let t0 = now()
    let work: () throws -> Tensor
    if what == "text" {
        let config = TextEncoderConfig()   // ViT-H-14 text: width 1024, 16 heads, 24 layers (23 run)
        let weights = RandomWeights(shapes: OpenCLIPTextEncoder.parameterShapes(config: config), seed: 7, dtype: dtype)
        let enc = try OpenCLIPTextEncoder.load(from: weights, config: config)
        // Batch 2 (CFG): "a black swan swims on the pond" and the empty prompt.
        var a = [49406, 320, 1449, 12530, 46798, 525, 518, 10750, 49407]
        a += Array(repeating: 0, count: 77 - a.count)
        let b = [49406, 49407] + Array(repeating: 0, count: 75)
        work = { try enc.encode(tokens: [a, b]) }
    } else {
        let config = VAEConfig()           // SD kl-f8: ch 128, ch_mult [1,2,4,4], 2 res blocks
        let weights = RandomWeights(shapes: VAEDecoder.parameterShapes(config: config), seed: 7, dtype: dtype)
        let dec = try VAEDecoder.load(from: weights, config: config, convArithmetic: conv)
        // T 40x64 latents (320x512 frames), values of unit size in the scaled latent space; decoded
        // one frame at a time.
        var state: UInt64 = 12345
        let z = (0..<(frames * 40 * 64 * 4)).map { _ -> Float in
            state = state &* 6364136223846793005 &+ 1442695040888963407
            return Float(Int64(bitPattern: state >> 11) % 2000) / 1000 - 1
        }
        let latents = try Tensor(shape: [frames, 40, 64, 4], floats: z)
        // As vcrun sample decodes its frames: with the buffer cache sized for a frame's activations.
        Storage.setBufferCacheLimit(VAEDecoder.frameBufferCacheBytes)
        work = { try dec.decode(latents: latents) }
    }
    if what == "vae" { print("vae conv arithmetic \(conv.rawValue)") }
    print(String(format: "%@ dtype %@ threads %d: load %.2f s, RSS after load %.0f MB", what, dtype.rawValue, threads, now() - t0, peakRSSMB()))
    let w0 = now()
    let warm = try work()
    let finite = warm.floats().allSatisfy { $0.isFinite }
    print(String(format: "warm-up %.3f s, output %@ finite: %@", now() - w0, "\(warm.shape)", finite ? "yes" : "NO"))
    var times: [Double] = []
    let c0 = cpuCounters(), r0 = now()
    for i in 0..<runs {
        let s = now()
        _ = try work()
        times.append(now() - s)
        print(String(format: "run %d: %.3f s", i + 1, times.last ?? 0))
    }
    let c1 = cpuCounters(), wall = now() - r0
    let others = ((c1.busy - c0.busy) - (c1.own - c0.own)) / wall
    let sorted = times.sorted()
    guard !sorted.isEmpty else { exit(0) }
    print(String(format: "median %.3f s (min %.3f, max %.3f) over %d runs; own CPU %.3f s per run; peak RSS %.0f MB; others_load %.2f cores",
                 sorted[sorted.count / 2], sorted.first ?? 0, sorted.last ?? 0, runs, (c1.own - c0.own) / Double(max(runs, 1)),
                 peakRSSMB(), others))
} catch {
    print("error: \(error)")
    exit(1)
}
