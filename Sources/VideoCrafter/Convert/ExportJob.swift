import Foundation
#if canImport(Glibc)
import Glibc
#endif
import VCTensor
import VCFormats

/// Options of `vcconv export`.
public struct ExportOptions: Sendable {
    public var output: String
    /// nil: keep each tensor's stored type (q8_0 becomes f32); otherwise convert every float
    /// tensor to this type (.f32 or .f16).
    public var dtype: DType?
    public var force = false
    public init(output: String) { self.output = output }
}

public struct ExportReport: Sendable {
    public var output: String
    public var tensors: Int
    public var fileBytes: Int
    public var dtypeCounts: [String: Int]
}

/// `vcconv export`: a .vcm back to a .safetensors file with canonical names, dequantizing q8_0.
/// The safetensors metadata carries the model kind and configuration so the file is traceable.
public enum ExportJob {
    public static func run(path: String, options: ExportOptions, progress: (JobProgress) -> Void = { _ in }) throws -> ExportReport {
        if let d = options.dtype, d != .f32 && d != .f16 {
            throw FormatError.unsupported(path: options.output, "export dtype must be f32 or f16, not \(d.rawValue)")
        }
        let opened = try ModelFiles.open(path)
        guard opened.format == .vcm, let f = opened.source as? VCMFile else {
            throw FormatError.unsupported(path: path, "export reads .vcm files (this is \(opened.format.rawValue))")
        }
        func target(_ t: DType) -> DType {
            guard t == .f32 || t == .f16 || t == .bf16 || t == .q8_0 else { return t }
            if let d = options.dtype { return d }
            return t == .q8_0 ? .f32 : t
        }
        // The output rules of every vcconv output (AtomicOutput enforces them for .vcm files).
        var st = stat()
        if lstat(options.output, &st) == 0 {
            if FileIdentity.same(options.output, path) {
                throw FormatError.io(path: options.output, "is the input file \(path); refusing to overwrite an input")
            }
            if !options.force { throw FormatError.io(path: options.output, "already exists (use --force to replace it)") }
            if (st.st_mode & S_IFMT) == S_IFDIR { throw FormatError.io(path: options.output, "is a directory") }
        }
        let records = f.manifest.tensors
        var layout: [SafetensorsWriter.Item] = []
        for r in records {
            guard let d = FileDType(target(r.dtype)) else {
                throw FormatError.unsupported(path: path, "tensor '\(r.name)': \(r.dtype.rawValue) has no safetensors type")
            }
            layout.append(SafetensorsWriter.Item(name: r.name, dtype: d, shape: r.shape))
        }
        let decls = records.map { (name: $0.name, dtype: target($0.dtype), shape: $0.shape) }
        var meta = ["format": "pt", "vcm_model_kind": f.manifest.modelKind, "vcm_config": f.manifest.configJSON,
                    "converter": "vcconv \(VideoCrafterVersion.string)"]
        if !f.manifest.provenance.sourceName.isEmpty { meta["vcm_source"] = f.manifest.provenance.sourceName }
        let writer = try SafetensorsWriter(path: options.output, layout: layout, metadata: meta)
        // A writer dropped without finish() (on any error below) removes its temporary file.
        let total = decls.reduce(0) { $0 + ($1.dtype.byteCount(shape: $1.shape) ?? 0) }
        var done = 0
        var counts: [String: Int] = [:]
        for (r, d) in zip(records, decls) {
            guard let t = try f.tensor(named: r.name) else { continue }
            let out = t.dtype == d.dtype ? t : try t.converted(to: d.dtype)
            try writer.write(r.name, out)
            f.releasePages(named: r.name)
            counts[d.dtype.rawValue, default: 0] += 1
            done += out.byteCount
            progress(JobProgress(phase: "exporting", done: done, total: total, item: r.name))
        }
        try writer.finish()
        let size = (try? FileManager.default.attributesOfItem(atPath: options.output)[.size] as? Int) ?? 0
        return ExportReport(output: options.output, tensors: decls.count, fileBytes: size, dtypeCounts: counts)
    }
}
