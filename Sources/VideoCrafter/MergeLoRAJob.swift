// `vcconv merge-lora` and `vcconv import --lora`: base weights + LoRA files -> merged weights.
// VCModels resolves and merges (names, arithmetic); VCFormats reads the LoRA files; this job
// composes them, applies the policy (temporal modules, unmatched modules, quantized bases) and
// streams every tensor of the base, merged where planned, into a sink.
import Foundation
import VCFormats
import VCModels
import VCTensor

/// A LoRA file and its multiplier, as given on the command line: `FILE[:MULTIPLIER]`.
public struct LoRASpec: Sendable, Equatable, Codable {
    public var path: String
    public var multiplier: Double

    public init(path: String, multiplier: Double = 1) {
        self.path = path
        self.multiplier = multiplier
    }

    /// Parses `FILE[:MULTIPLIER]`. The text after the last ':' is a multiplier only if it parses
    /// as a finite number, so paths containing ':' still work.
    public init(parsing spec: String) throws {
        if let colon = spec.lastIndex(of: ":") {
            let tail = spec[spec.index(after: colon)...]
            if let m = Double(tail) {
                guard m.isFinite else { throw MergeLoRAError.badSpec(spec, "the multiplier must be a finite number") }
                let head = String(spec[..<colon])
                guard !head.isEmpty else { throw MergeLoRAError.badSpec(spec, "no file name before ':'") }
                self.init(path: head, multiplier: m)
                return
            }
        }
        guard !spec.isEmpty else { throw MergeLoRAError.badSpec(spec, "empty LoRA argument") }
        self.init(path: spec)
    }
}

/// Errors of the merge job itself (LoRA content errors are `LoRAError`).
public enum MergeLoRAError: Error, CustomStringConvertible, Equatable {
    case badSpec(String, String)
    case unsupportedFile(path: String, String)
    case noLoRA

    public var description: String {
        switch self {
        case .badSpec(let s, let m): return "LoRA argument '\(s)': \(m)"
        case .unsupportedFile(let p, let m): return "\(p): \(m)"
        case .noLoRA: return "no LoRA file given"
        }
    }
}

/// Takes the output tensors one at a time, in the base's order.
public protocol TensorSink: AnyObject {
    func add(_ name: String, _ tensor: Tensor) throws
}

/// Keeps every tensor in memory (tests, small models).
public final class MemoryTensorSink: TensorSink, TensorSource, @unchecked Sendable {
    public private(set) var tensorNames: [String] = []
    private var tensors: [String: Tensor] = [:]

    public init() {}

    public func add(_ name: String, _ tensor: Tensor) throws {
        if tensors.updateValue(tensor, forKey: name) == nil { tensorNames.append(name) }
    }

    public func tensor(named name: String) throws -> Tensor? { tensors[name] }
}

/// What a merge did (or, for a dry run, would do).
public struct MergeLoRAReport: Sendable, Codable, Equatable {
    public struct Module: Sendable, Codable, Equatable {
        /// The module as the LoRA file names it.
        public var module: String
        /// The canonical tensor it changes.
        public var tensor: String
        /// "a:b" for a row slice of a fused weight.
        public var rows: String?
        /// LoRA, LoCon, LoCon (Tucker), LoHa, LoKr.
        public var kind: String
        public var rank: Int?
        public var alpha: Double
        /// multiplier * alpha / rank, as applied.
        public var scale: Double
    }

    public struct File: Sendable, Codable, Equatable {
        public var name: String
        public var path: String
        public var bytes: Int
        public var sha256: String
        public var multiplier: Double
        public var scheme: String
        public var matched: [Module]
        /// Temporal-module deltas left out (without --include-temporal).
        public var skippedTemporal: [Module]
        /// LoRA modules that match no tensor of the model.
        public var unmatched: [String]
    }

    public var files: [File] = []
    /// Canonical tensors the merge changes, sorted.
    public var changedTensors: [String] = []
    public var warnings: [String] = []
    /// Why the merge cannot run (empty when it can).
    public var problems: [String] = []
    public var dryRun = false

    /// A human-readable summary (module lists capped at `maxListed` lines each).
    public func text(maxListed: Int = 50) -> String {
        var out: [String] = []
        func list(_ title: String, _ items: [String]) {
            guard !items.isEmpty else { return }
            out.append("  \(title):")
            out += items.prefix(maxListed).map { "    \($0)" }
            if items.count > maxListed { out.append("    ... and \(items.count - maxListed) more") }
        }
        func line(_ m: Module) -> String {
            let rows = m.rows.map { " rows \($0)" } ?? ""
            let rank = m.rank.map { "r\($0)" } ?? "full"
            return "\(m.module) -> \(m.tensor)\(rows) (\(m.kind) \(rank), alpha \(m.alpha), scale \(m.scale))"
        }
        for f in files {
            out.append("\(f.name) (\(f.scheme), multiplier \(f.multiplier), sha256 \(f.sha256)): \(f.matched.count) modules matched, "
                       + "\(f.skippedTemporal.count) skipped (temporal), \(f.unmatched.count) unmatched")
            list("matched", f.matched.map(line))
            list("skipped (temporal)", f.skippedTemporal.map(line))
            list("unmatched", f.unmatched)
        }
        out.append("\(changedTensors.count) tensors change\(dryRun ? " (dry run: nothing written)" : "")")
        out += warnings.map { "warning: \($0)" }
        out += problems.map { "error: \($0)" }
        return out.joined(separator: "\n")
    }

    /// The report as JSON (sorted keys).
    public func json() throws -> String {
        let e = JSONEncoder()
        e.outputFormatting = [.prettyPrinted, .sortedKeys]
        return String(decoding: try e.encode(self), as: UTF8.self)
    }
}

/// A resolved merge: the merged view of the base, its report, and the errors that block it.
public struct MergeLoRAPlan: Sendable {
    public var source: LoRAMergedSource
    public var report: MergeLoRAReport
    /// Policy violations (unmatched modules, quantized base) in the order found.
    public var errors: [LoRAError]
}

/// Base weights + LoRA files -> merged weights.
public struct MergeLoRAJob: Sendable {
    public var base: any TensorSource
    public var config: ModelConfig
    public var loras: [LoRASpec]
    public var options: LoRAOptions

    public init(base: any TensorSource, config: ModelConfig, loras: [LoRASpec], options: LoRAOptions = LoRAOptions()) {
        self.base = base
        self.config = config
        self.loras = loras
        self.options = options
    }

    /// Opens a LoRA file: safetensors (with its metadata) or a PyTorch zip checkpoint (`.ckpt` /
    /// `.pt`, no metadata), judged by content.
    static func open(_ path: String) throws -> (source: any TensorSource, metadata: [String: String], file: MappedFile) {
        switch try TensorFiles.kind(of: path) {
        case .safetensors:
            let f = try SafetensorsFile(path: path)
            return (f, f.metadata, f.file)
        case .torchZip:
            return (try TorchCheckpoint(path: path), [:], try MappedFile(path: path))
        case .diffusersFolder:
            throw MergeLoRAError.unsupportedFile(path: path, "a diffusers pipeline folder is not a LoRA file (give the .safetensors inside it)")
        }
    }

    /// Reads every LoRA, validates it against the base, and plans the merge. Content errors
    /// (malformed tensors, unknown keys, refused formats) throw; policy violations are collected
    /// in `errors` (and the report's `problems`) so a dry run can show them. Temporal deltas are
    /// left out (and reported as skipped) unless `options.includeTemporal`.
    public func plan() throws -> MergeLoRAPlan {
        guard !loras.isEmpty else { throw MergeLoRAError.noLoRA }
        let names = try ModelTensorNames(config: config)
        var report = MergeLoRAReport()
        var errors: [LoRAError] = []
        var planned: [(deltas: [LoRADelta], multiplier: Double)] = []

        for spec in loras {
            let (source, metadata, mapped) = try Self.open(spec.path)
            let name = URL(fileURLWithPath: spec.path).lastPathComponent
            let file = try LoRAFile.load(source, metadata: metadata, name: name, names: names, base: base)
            let deltas: [LoRADelta]
            do {
                deltas = try file.check(options: options)
            } catch let e as LoRAError {
                errors.append(e)
                deltas = file.deltas
            }
            planned.append((deltas, spec.multiplier))
            func module(_ d: LoRADelta) -> MergeLoRAReport.Module {
                MergeLoRAReport.Module(module: d.module, tensor: d.target.tensor,
                                       rows: d.target.rows.map { "\($0.lowerBound):\($0.upperBound)" },
                                       kind: d.kind, rank: d.rank, alpha: d.alpha, scale: d.scale(multiplier: spec.multiplier))
            }
            let included = options.includeTemporal ? file.temporal : []
            if !file.temporal.isEmpty, !options.includeTemporal {
                report.warnings.append("\(name): \(file.temporal.count) module(s) aimed at VideoCrafter temporal modules were skipped (merge them with --include-temporal)")
            }
            report.files.append(MergeLoRAReport.File(
                name: name, path: spec.path, bytes: mapped.size, sha256: try SHA256.file(mapped).map { String(format: "%02x", $0) }.joined(),
                multiplier: spec.multiplier, scheme: file.scheme.rawValue,
                matched: (file.deltas + included).map(module),
                skippedTemporal: options.includeTemporal ? [] : file.temporal.map(module),
                unmatched: file.unmatched))
        }

        let plan = LoRAMergedSource.plan(planned)
        for tensor in plan.keys.sorted() {
            guard let t = try base.tensor(named: tensor), t.dtype == .q8_0 else { continue }
            if options.requantize {
                report.warnings.append("\(tensor) is q8_0: dequantized, merged and quantized again (lossy; prefer merging into an f32/f16 import, then quantizing)")
            } else {
                errors.append(.quantizedBase(tensor: tensor, dtype: t.dtype.rawValue))
            }
        }
        report.changedTensors = plan.keys.sorted()
        report.problems = errors.map(\.description)
        return MergeLoRAPlan(source: LoRAMergedSource(base: base, plan: plan), report: report, errors: errors)
    }

    /// Plans, then streams every tensor of the base (merged where planned) into `sink`, in the
    /// base's order. Throws the first policy violation before writing anything.
    /// `progress(done, total)` is called after each tensor.
    @discardableResult
    public func run(into sink: TensorSink, progress: ((Int, Int) -> Void)? = nil) throws -> MergeLoRAReport {
        let p = try plan()
        if let first = p.errors.first { throw first }
        let names = base.tensorNames
        for (i, name) in names.enumerated() {
            guard let t = try p.source.tensor(named: name) else {
                throw MergeLoRAError.unsupportedFile(path: "<base>", "tensor '\(name)' is listed but cannot be read")
            }
            try sink.add(name, t)
            progress?(i + 1, names.count)
        }
        return p.report
    }
}

/// A source under other names: `names[new name] = name in base` (the import's canonical view of
/// a checkpoint whose tensors are spelled differently).
public struct RenamedTensorSource: TensorSource {
    public let base: any TensorSource
    public let names: [String: String]
    public let tensorNames: [String]

    public init(base: any TensorSource, names: [String: String]) {
        self.base = base
        self.names = names
        self.tensorNames = names.keys.sorted()
    }

    public func tensor(named name: String) throws -> Tensor? {
        guard let n = names[name] else { return nil }
        return try base.tensor(named: n)
    }
}

/// Options of `vcconv merge-lora`.
public struct MergeLoRAOptions: Sendable {
    /// The .vcm to write (not needed for a dry run).
    public var output: String?
    public var lora = LoRAOptions()
    /// Re-type the output with the import's quantization policy (nil keeps every stored type).
    public var type: WeightType?
    public var dryRun = false
    /// Replace an existing output file (never an input).
    public var force = false
    public init() {}
}

/// `vcconv merge-lora BASE LORA[:M]... -o OUT.vcm`: BASE is a .vcm (its configuration and
/// vocabulary come from the manifest); the output keeps them, each tensor's stored type and
/// compression (unless `type` re-types it), and records every LoRA (name, sha256, multiplier) in
/// the provenance options. The output appears atomically or not at all.
public enum MergeLoRAFiles {
    /// The provenance option entries for the LoRAs of a report.
    public static func provenanceOptions(_ r: MergeLoRAReport, includeTemporal: Bool) -> [VCMOption] {
        var o = r.files.map { VCMOption("lora", "\($0.name) sha256=\($0.sha256) multiplier=\($0.multiplier)") }
        if includeTemporal { o.append(VCMOption("lora-include-temporal", "true")) }
        return o
    }

    public static func run(base path: String, loras: [LoRASpec], options: MergeLoRAOptions,
                           progress: (JobProgress) -> Void = { _ in }) throws -> MergeLoRAReport {
        let opened = try ModelFiles.open(path)
        guard opened.format == .vcm, let vcm = opened.source as? VCMFile else {
            throw FormatError.unsupported(path: path, "merge-lora merges into a .vcm model: import the checkpoint first (vcconv import CKPT -o base.vcm --type f16), or merge while importing (vcconv import CKPT --lora FILE[:M])")
        }
        let config: ModelConfig
        do { config = try ModelConfig.decodeStored(Data(vcm.manifest.configJSON.utf8)) } catch {
            throw FormatError.malformed(path: path, offset: 0, "manifest configuration is not a model configuration: \(error)")
        }
        let job = MergeLoRAJob(base: vcm, config: config, loras: loras, options: options.lora)
        var plan = try job.plan()
        plan.report.dryRun = options.dryRun
        if options.dryRun { return plan.report }
        if let e = plan.errors.first { throw e }
        guard let output = options.output else { throw MergeLoRAError.badSpec("-o", "an output .vcm is required (or use --dry-run)") }

        // Optional re-typing with the import policy; a quantized tensor is never re-typed (that
        // would not restore its precision).
        var targetType: [String: DType] = [:]
        if let type = options.type {
            let specs = ModelTensors.expected(for: config).filter { vcm.record(named: $0.name) != nil }
            let policy = QuantizationPolicy(type: type)
            try policy.validate(specs)
            for s in specs {
                let d = policy.dtype(for: s)
                if let r = vcm.record(named: s.name), r.dtype == .q8_0, d != .q8_0 {
                    throw FormatError.unsupported(path: path, "'\(s.name)' is stored as q8_0; re-typing a quantized .vcm to \(d.rawValue) does not restore its precision (import the original checkpoint with --type)")
                }
                targetType[s.name] = d
            }
        }

        let writer = try VCMWriter(path: output, overwrite: options.force, protecting: [path] + loras.map(\.path))
        do {
            let names = vcm.tensorNames
            for (i, name) in names.enumerated() {
                guard var t = try plan.source.tensor(named: name) else {
                    throw FormatError.malformed(path: path, offset: 0, "tensor '\(name)' is listed but cannot be read")
                }
                if let d = targetType[name], d != t.dtype { t = try t.converted(to: d) }
                try writer.add(name, t, compression: vcm.record(named: name)?.compression ?? .none)
                vcm.releasePages(named: name)
                progress(JobProgress(phase: "merging", done: i + 1, total: names.count, item: name))
            }
            var m = vcm.manifest
            if let type = options.type {
                m.provenance.options.removeAll { $0.key == "type" }
                m.provenance.options.append(VCMOption("type", type.rawValue))
            }
            m.provenance.options.append(VCMOption("lora-base", URL(fileURLWithPath: path).lastPathComponent))
            m.provenance.options += provenanceOptions(plan.report, includeTemporal: options.lora.includeTemporal)
            m.provenance.converter = "vcconv"
            m.provenance.converterVersion = VideoCrafterVersion.string
            m.provenance.createdUnix = Int64(Date().timeIntervalSince1970)
            try writer.finish(m)
        } catch {
            writer.cancel()
            throw error
        }
        return plan.report
    }
}
