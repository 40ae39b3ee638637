// `vcrun sample` as a library job: validates everything cheap first (model kind, sizes, output
// location), runs TextToVideo, writes the video atomically with the parameters in its metadata, a
// sidecar JSON and optionally the latents.
import Foundation
import VCFormats
import VCTensor
import VCVideo

/// Where and how the result is written.
public struct SampleOutput: Sendable, Equatable {
    /// `.mp4`/`.m4v` (H.264), `.gif`, or a directory (`name/` or no extension) of PNG frames.
    public var path: String
    /// Playback rate of the container (the official script saves at 10 fps).
    public var saveFps: Int = 10
    /// H.264 constant rate factor (the official script uses 10).
    public var crf: Int = 10
    /// Also write `<path>.json` with every parameter.
    public var sidecar: Bool = true
    /// A safetensors file for the final latent and the latent after every step.
    public var saveLatents: String?
    public var overwrite: Bool = true

    public init(path: String) { self.path = path }
}

/// What a finished sample wrote.
public struct SampleSummary: Sendable {
    public var output: String
    public var sidecar: String?
    public var latents: String?
    public var seed: UInt64
    public var frames: Int
    public var width: Int
    public var height: Int
    public var timings: [String: Double]
}

public enum SampleJob {
    /// Runs a whole sample. `onEvent` sees progress; the writer is created (and so the output
    /// location checked) before any heavy work.
    public static func run(modelPath: String, parameters: GenerationParameters, output: SampleOutput,
                           verify: Bool = true, onEvent: (GenerationEvent) -> Void = { _ in }) throws -> SampleSummary {
        let model = try TextToVideo(modelPath: modelPath, verify: verify)
        var p = parameters
        if p.seed == nil { p.seed = UInt64.random(in: 0...UInt64(UInt32.max)) }
        try model.validate(p)
        if let lat = output.saveLatents {
            try checkWritable(lat)
            guard lat != output.path else { throw GenerationError("--save-latents must differ from the video output") }
        }
        let meta = VideoMetadata(metadataEntries(p, modelPath: modelPath, output: output))
        let writer = try VideoWriter(path: output.path, width: p.width, height: p.height,
                                     options: VideoOptions(fps: output.saveFps, crf: output.crf, overwrite: output.overwrite),
                                     metadata: meta)
        do {
            var stepLatents: [(String, Tensor)] = []
            let result = try model.generate(p) { event in
                if output.saveLatents != nil, case .step(let i, _, _, _, let latent) = event {
                    stepLatents.append(("step\(i - 1).x_prev", latent))
                }
                onEvent(event)
            }
            let t = p.frames
            let frames = try Frame.frames(fromChannelsLast: result.frames.floats(), frames: t, height: p.height, width: p.width)
            for f in frames { try writer.append(f) }
            try writer.finish()
            var sidecar: String?
            if output.sidecar {
                var entries = meta.entries
                entries["timings"] = result.timings.keys.sorted().map { "\($0)=\(String(format: "%.3f", result.timings[$0] ?? 0))s" }.joined(separator: " ")
                sidecar = try VideoMetadata(entries).writeSidecar(for: writer.path)
            }
            if let lat = output.saveLatents {
                var tensors = [("latent", result.latent)]
                tensors.append(contentsOf: stepLatents)
                try SafetensorsWriter.write(path: lat, tensors: tensors, metadata: meta.entries)
            }
            return SampleSummary(output: writer.path, sidecar: sidecar, latents: output.saveLatents, seed: result.seed,
                                 frames: t, width: p.width, height: p.height, timings: result.timings)
        } catch {
            writer.cancel()
            throw error
        }
    }

    /// The parameters as recorded in the video's metadata and sidecar.
    public static func metadataEntries(_ p: GenerationParameters, modelPath: String, output: SampleOutput) -> [String: String] {
        [
            "prompt": p.prompt,
            "negative_prompt": p.negativePrompt,
            "seed": p.seed.map(String.init) ?? "",
            "steps": String(p.steps),
            "eta": String(p.eta),
            "guidance": String(p.guidance),
            "fps": String(p.fps),
            "frames": String(p.frames),
            "height": String(p.height),
            "width": String(p.width),
            "save_fps": String(output.saveFps),
            "crf": String(output.crf),
            "model": URL(fileURLWithPath: modelPath).lastPathComponent,
            "software": "swift-videocrafter \(VideoCrafterVersion.string)",
        ]
    }

    static func checkWritable(_ path: String) throws {
        let dir = URL(fileURLWithPath: path).deletingLastPathComponent().path
        guard FileManager.default.isWritableFile(atPath: dir.isEmpty ? "." : dir) else {
            throw GenerationError("\(path): the folder \(dir) does not exist or is not writable")
        }
    }
}
