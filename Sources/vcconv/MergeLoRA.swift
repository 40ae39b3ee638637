import ArgumentParser
import Foundation
import VCModels
import VideoCrafter

struct MergeLoRA: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "merge-lora",
        abstract: "Merge LoRA files into the spatial weights of a .vcm model.",
        discussion: """
        Formats: kohya-ss (lora_unet_* / lora_te_*, LoCon, Tucker lora_mid, LoHa, LoKr), PEFT / diffusers \
        (lora_A / lora_B, alpha from lora_adapter_metadata or network alphas, rsLoRA) and the older diffusers \
        attention-processor names; .safetensors or PyTorch files. DoRA and SD 1.x / SDXL LoRAs are refused.

        The merge is W' = W + m * alpha / r * (up @ down), in f32, stored back at each weight's type. \
        Deltas aimed at VideoCrafter's temporal modules are skipped unless --include-temporal; LoRA modules \
        that match no tensor are an error unless --allow-unmatched. Merge into an f32 or f16 import and \
        quantize afterwards (--type q8 here, or import with --lora in one pass); a q8 base is refused \
        unless --requantize.
        """)

    @Argument(help: "The base model (.vcm).")
    var base: String

    @Argument(help: "LoRA files as FILE[:MULTIPLIER] (multiplier 1 when omitted).")
    var loras: [String]

    @Option(name: .shortAndLong, help: "The .vcm file to write (not needed with --dry-run).")
    var output: String?

    @Option(help: "Re-type the output like import --type: f32, f16, bf16 or q8 (default: keep every stored type).")
    var type: String?

    @Flag(name: .customLong("include-temporal"), help: "Also merge deltas aimed at VideoCrafter's temporal modules.")
    var includeTemporal = false

    @Flag(name: .customLong("allow-unmatched"), help: "Skip LoRA modules that match no tensor instead of failing.")
    var allowUnmatched = false

    @Flag(help: "Merge into q8 weights by dequantizing, merging and quantizing again (lossy).")
    var requantize = false

    @Flag(name: .customLong("dry-run"), help: "Report what would be merged; write nothing.")
    var dryRun = false

    @Flag(help: "Print the report as JSON.")
    var json = false

    @Flag(help: "Replace an existing output file (never an input).")
    var force = false

    func validate() throws {
        guard !loras.isEmpty else { throw ValidationError("give at least one LoRA file") }
        guard dryRun || output != nil else { throw ValidationError("-o OUT.vcm is required (or use --dry-run)") }
    }

    func run() throws {
        var o = MergeLoRAOptions()
        o.output = output
        o.dryRun = dryRun
        o.force = force
        o.lora.includeTemporal = includeTemporal
        o.lora.allowUnmatched = allowUnmatched
        o.lora.requantize = requantize
        if let type {
            guard let t = WeightType(rawValue: type) else { throw ValidationError("--type must be f32, f16, bf16 or q8") }
            o.type = t
        }
        let specs = try loras.map { s in
            do { return try LoRASpec(parsing: s) } catch { throw ValidationError("\(error)") }
        }

        let size = (try? FileManager.default.attributesOfItem(atPath: base)[.size] as? Int) ?? 0
        let bar = ProgressBar(bigFileBytes: size)
        let cleanup = InterruptCleanup()
        let report = try MergeLoRAFiles.run(base: base, loras: specs, options: o) { bar.update($0) }
        bar.finish()
        withExtendedLifetime(cleanup) {}

        if json {
            print(try report.json())
        } else {
            print(report.text())
            if !dryRun, let output { print("wrote \(output)") }
        }
        if dryRun, !report.problems.isEmpty { throw ExitCode(1) }
    }
}
