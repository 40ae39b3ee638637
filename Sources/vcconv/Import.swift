import ArgumentParser
import Foundation
import VCFormats
import VCModels
import VCTensor
import VideoCrafter

struct Import: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Convert a checkpoint (official LDM/VideoCrafter names) to a .vcm model file.",
        discussion: """
        Without --config the tensor shapes choose a built-in preset (vc2-512; sd21-512 and sd21-768-v \
        share their shapes, so pick one with --preset); a diffusers folder brings its own configuration. Every tensor is checked against the configuration; \
        all problems are listed at once. Tensors inference never uses (VAE encoder, the skipped text block, \
        text_projection, logit_scale, the schedule buffers) are left out unless --keep-unused.

        --type picks the storage of the big matrices: q8 stores the UNet matrices as q8_0 and the text tower \
        and VAE matrices as f16; norms, biases and embeddings stay wider (formats/README.md). \
        --override 'PATTERN=TYPE' (glob, repeatable, last match wins) changes single tensors.
        """)

    @Argument(help: "The checkpoint: .safetensors, PyTorch .ckpt, or a diffusers folder (SD 2.x).")
    var source: String

    @Option(name: .shortAndLong, help: "The .vcm file to write.")
    var output: String

    @Option(help: "The LVDM / LDM inference YAML of the checkpoint.")
    var config: String?

    @Option(name: .customLong("text-config"), help: "The open_clip model config JSON named by the YAML's arch.")
    var textConfig: String?

    @Option(help: "A built-in configuration: \(ModelPreset.allCases.map(\.rawValue).joined(separator: ", ")).")
    var preset: String?

    @Option(help: "Storage type: f32, f16, bf16 or q8.")
    var type: String = "f32"

    @Option(help: "Per-tensor compression: none or zstd.")
    var compress: String = "none"

    @Option(name: .customLong("override"), help: "PATTERN=TYPE: store tensors matching the glob PATTERN as TYPE (f32, f16, bf16, q8).")
    var overrides: [String] = []

    @Flag(name: .customLong("keep-unused"), help: "Also store the tensors inference never uses.")
    var keepUnused = false

    @Flag(help: "Replace an existing output file (never the input).")
    var force = false

    @Flag(name: .customLong("no-hash"), help: "Do not record the SHA-256 of the source (saves one read of it).")
    var noHash = false

    @Option(name: .customLong("lora"), help: "Merge a LoRA while importing: FILE[:MULTIPLIER] (repeatable; see merge-lora).")
    var loras: [String] = []

    @Flag(name: .customLong("include-temporal"), help: "With --lora: also merge deltas aimed at VideoCrafter's temporal modules.")
    var includeTemporal = false

    @Flag(name: .customLong("allow-unmatched"), help: "With --lora: skip LoRA modules that match no tensor instead of failing.")
    var allowUnmatched = false

    func run() throws {
        var o = ImportOptions(output: output)
        o.configPath = config
        o.textConfigPath = textConfig
        if let preset {
            guard let p = ModelPreset(rawValue: preset) else {
                throw ValidationError("unknown preset '\(preset)' (choose \(ModelPreset.allCases.map(\.rawValue).joined(separator: ", ")))")
            }
            o.preset = p
        }
        guard let t = WeightType(rawValue: type) else { throw ValidationError("--type must be f32, f16, bf16 or q8") }
        o.type = t
        guard let c = VCMCompression(rawValue: compress) else { throw ValidationError("--compress must be none or zstd") }
        o.compression = c
        o.overrides = try overrides.map { s in
            do { return try QuantizationPolicy.parseOverride(s) } catch { throw ValidationError("\(error)") }
        }
        o.keepUnused = keepUnused
        o.force = force
        o.hashSource = !noHash
        o.loras = try loras.map { s in
            do { return try LoRASpec(parsing: s) } catch { throw ValidationError("\(error)") }
        }
        o.lora.includeTemporal = includeTemporal
        o.lora.allowUnmatched = allowUnmatched

        let size = (try? FileManager.default.attributesOfItem(atPath: source)[.size] as? Int) ?? 0
        let bar = ProgressBar(bigFileBytes: size)
        let cleanup = InterruptCleanup()
        let report = try ImportJob(source: source, options: o).run { bar.update($0) }
        bar.finish()
        withExtendedLifetime(cleanup) {}

        for w in report.warnings { printErr("warning: \(w)") }
        let types = report.dtypeCounts.keys.sorted().map { "\(report.dtypeCounts[$0] ?? 0) \($0)" }.joined(separator: ", ")
        print("wrote \(report.output): \(report.kind.rawValue), \(report.configSource), \(report.tensorsWritten) tensors (\(types)), \(humanBytes(report.fileBytes))")
        if let lr = report.lora {
            for f in lr.files {
                print("merged \(f.name) (multiplier \(f.multiplier)): \(f.matched.count) modules, \(f.skippedTemporal.count) skipped (temporal), \(f.unmatched.count) unmatched")
            }
        }
        if !report.dropped.isEmpty {
            print("left out: " + report.dropped.keys.sorted().map { "\(report.dropped[$0] ?? 0) \($0)" }.joined(separator: ", "))
        }
    }
}
