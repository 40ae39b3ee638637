import ArgumentParser
import Foundation
import VCTensor
import VideoCrafter

struct Export: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Write a .vcm back to .safetensors with canonical names (q8 is dequantized).")

    @Argument(help: "The .vcm file.")
    var file: String

    @Option(name: .shortAndLong, help: "The .safetensors file to write.")
    var output: String

    @Option(help: "Convert every float tensor to f32 or f16 (default: keep the stored type; q8 becomes f32).")
    var dtype: String?

    @Flag(help: "Replace an existing output file (never the input).")
    var force = false

    func run() throws {
        var o = ExportOptions(output: output)
        if let dtype {
            guard dtype == "f32" || dtype == "f16", let d = DType(rawValue: dtype) else { throw ValidationError("--dtype must be f32 or f16") }
            o.dtype = d
        }
        o.force = force
        let size = (try? FileManager.default.attributesOfItem(atPath: file)[.size] as? Int) ?? 0
        let bar = ProgressBar(bigFileBytes: size)
        let cleanup = InterruptCleanup()
        let r = try ExportJob.run(path: file, options: o) { bar.update($0) }
        bar.finish()
        withExtendedLifetime(cleanup) {}
        let types = r.dtypeCounts.keys.sorted().map { "\(r.dtypeCounts[$0] ?? 0) \($0)" }.joined(separator: ", ")
        print("wrote \(r.output): \(r.tensors) tensors (\(types)), \(humanBytes(r.fileBytes))")
    }
}
