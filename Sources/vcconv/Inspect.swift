import ArgumentParser
import Foundation
import VCFormats
import VideoCrafter

struct Inspect: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Show the metadata and tensors of a .vcm, .safetensors or .ckpt file.")

    @Argument(help: "The model file.")
    var file: String

    @Flag(help: "Compute min / max / mean / std of every tensor (reads all data).")
    var stats = false

    @Flag(help: "Check every tensor checksum (.vcm).")
    var verify = false

    @Flag(help: "Print JSON (for scripts).")
    var json = false

    func run() throws {
        var o = InspectOptions()
        o.stats = stats
        o.verify = verify
        let size = (try? FileManager.default.attributesOfItem(atPath: file)[.size] as? Int) ?? 0
        let bar = ProgressBar(bigFileBytes: stats || verify ? size : 0)
        let r = try InspectJob.run(path: file, options: o) { bar.update($0) }
        bar.finish()
        if json {
            let enc = JSONEncoder()
            enc.outputFormatting = [.prettyPrinted, .sortedKeys]
            print(String(decoding: try enc.encode(r), as: UTF8.self))
            return
        }
        print("\(r.path): \(r.format), \(humanBytes(r.fileBytes)), \(r.tensors.count) tensors, \(humanBytes(r.totalTensorBytes)) of tensor data")
        for kv in r.metadata where kv.count == 2 { print("  \(kv[0]): \(kv[1])") }
        print("  dtypes: " + r.dtypeCounts.keys.sorted().map { "\(r.dtypeCounts[$0] ?? 0) \($0)" }.joined(separator: ", "))
        let nameWidth = min(90, r.tensors.map(\.name.count).max() ?? 4)
        var header = "name".padding(toLength: nameWidth, withPad: " ", startingAt: 0) + "  dtype  " + "shape".padding(toLength: 22, withPad: " ", startingAt: 0) + "       bytes       offset"
        if stats { header += "          min          max         mean          std" }
        print(header)
        for t in r.tensors {
            var line = t.name.padding(toLength: max(nameWidth, t.name.count), withPad: " ", startingAt: 0) + "  "
            line += t.dtype.padding(toLength: 5, withPad: " ", startingAt: 0) + "  "
            line += "[\(t.shape.map(String.init).joined(separator: ", "))]".padding(toLength: 22, withPad: " ", startingAt: 0)
            line += String(repeating: " ", count: max(0, 12 - "\(t.bytes)".count)) + "\(t.bytes)"
            let off = t.offset.map(String.init) ?? "-"
            line += String(repeating: " ", count: max(1, 13 - off.count)) + off
            if let c = t.compression, let s = t.storedBytes { line += "  \(c) \(s)" }
            if let s = t.stats {
                line += [s.min, s.max, s.mean, s.std].map { String(format: " %12.5g", $0) }.joined()
                if s.nonFinite > 0 { line += "  (\(s.nonFinite) non-finite)" }
            }
            print(line)
        }
    }
}
