import Foundation
import VCTensor
import VCFormats

/// One row of `vcconv inspect`.
public struct InspectedTensor: Sendable, Codable, Equatable {
    public var name: String
    public var dtype: String
    public var shape: [Int]
    /// Decoded bytes.
    public var bytes: Int
    /// Absolute byte offset of the stored bytes in the file (nil when not known).
    public var offset: Int?
    /// Bytes in the file when compressed.
    public var storedBytes: Int?
    public var compression: String?
    /// CRC-32C as recorded (.vcm).
    public var crc32c: String?
    public var stats: TensorStats?
}

/// What `vcconv inspect` shows (also its `--json` output).
public struct InspectReport: Sendable, Codable, Equatable {
    public var path: String
    public var format: String
    public var fileBytes: Int
    /// Ordered key/value pairs (format version, model kind, provenance, metadata, ...).
    public var metadata: [[String]]
    /// The model configuration (.vcm), as JSON text.
    public var config: String?
    public var tensors: [InspectedTensor]
    public var totalTensorBytes: Int
    /// dtype -> tensor count.
    public var dtypeCounts: [String: Int]
}

public struct InspectOptions: Sendable {
    public var stats = false
    /// Check every checksum (.vcm).
    public var verify = false
    public init() {}
}

public enum InspectJob {
    public static func run(path: String, options: InspectOptions = InspectOptions(),
                           progress: (JobProgress) -> Void = { _ in }) throws -> InspectReport {
        let opened = try ModelFiles.open(path, verify: options.verify)
        var meta: [[String]] = []
        var config: String?
        var rows: [InspectedTensor] = []
        switch opened.format {
        case .vcm:
            guard let f = opened.source as? VCMFile else { throw FormatError.io(path: path, "internal: not a VCMFile") }
            let m = f.manifest, h = f.header, p = m.provenance
            meta = [["format version", "\(h.version)"], ["model kind", m.modelKind],
                    ["preset", m.preset.isEmpty ? "-" : m.preset], ["config yaml", m.configYAML.isEmpty ? "-" : "\(m.configYAML.utf8.count) bytes"],
                    ["text config", m.textConfigJSON.isEmpty ? "built in" : "\(m.textConfigJSON.utf8.count) bytes"],
                    ["alignment", "\(m.alignment)"], ["data", "\(h.dataSize) bytes at \(h.dataOffset)"],
                    ["manifest", "\(h.manifestSize) bytes at \(h.manifestOffset)"],
                    ["vocabulary", "\(m.vocabularySize) bytes (\(m.vocabularyZstd.count) zstd)"],
                    ["source", "\(p.sourceName) (\(p.sourceFormat), \(p.sourceSize) bytes)"],
                    ["source sha256", p.sourceSHA256Hex.isEmpty ? "-" : p.sourceSHA256Hex],
                    ["converter", "\(p.converter) \(p.converterVersion)"],
                    ["created", p.createdUnix == 0 ? "-" : ISO8601DateFormatter().string(from: Date(timeIntervalSince1970: TimeInterval(p.createdUnix)))],
                    ["options", p.options.map { "\($0.key)=\($0.value)" }.joined(separator: " ")]]
            config = m.configJSON
            if options.verify {
                try f.verifyAll { progress(JobProgress(phase: "verifying", done: $0, total: $1)) }
                meta.append(["checksums", "all \(m.tensors.count) verified"])
            }
            rows = m.tensors.map {
                InspectedTensor(name: $0.name, dtype: $0.dtype.rawValue, shape: $0.shape, bytes: $0.size,
                                offset: h.dataOffset + $0.offset, storedBytes: $0.compression == .none ? nil : $0.storedSize,
                                compression: $0.compression == .none ? nil : $0.compression.rawValue, crc32c: hexCRC($0.crc32c))
            }
        case .safetensors:
            guard let f = opened.source as? SafetensorsFile else { throw FormatError.io(path: path, "internal: not a SafetensorsFile") }
            meta = [["header", "\(f.dataOffset - 8) bytes"]] + f.metadata.keys.sorted().map { ["metadata \($0)", f.metadata[$0] ?? ""] }
            rows = f.entries.map {
                InspectedTensor(name: $0.name, dtype: SafetensorsFile.dtype(named: $0.dtypeName)?.rawValue ?? $0.dtypeName,
                                shape: $0.shape, bytes: $0.end - $0.begin, offset: f.dataOffset + $0.begin)
            }
        case .ckpt:
            guard let f = opened.source as? TorchCheckpoint else { throw FormatError.io(path: path, "internal: not a TorchCheckpoint") }
            meta = [["archive folder", f.folder], ["wrapper", f.wrapper.rawValue], ["zip entries", "\(f.archive.entries.count)"]]
                + f.skipped.map { ["non-tensor entry \($0.name)", $0.value] }
            rows = f.entries.map {
                InspectedTensor(name: $0.name, dtype: $0.dtype.runtime?.rawValue ?? $0.dtype.rawValue, shape: $0.shape,
                                bytes: $0.byteCount, offset: $0.fileOffset)
            }
        default:
            for n in opened.source.tensorNames {
                if let h = try opened.header(n) {
                    rows.append(InspectedTensor(name: n, dtype: h.dtype.rawValue, shape: h.shape, bytes: h.dtype.byteCount(shape: h.shape) ?? 0))
                }
            }
        }
        if options.stats {
            for i in rows.indices {
                guard let t = try opened.source.tensor(named: rows[i].name) else { continue }
                rows[i].stats = try TensorStats(t)
                opened.release(rows[i].name)
                progress(JobProgress(phase: "statistics", done: i + 1, total: rows.count, item: rows[i].name))
            }
        }
        var counts: [String: Int] = [:]
        for r in rows { counts[r.dtype, default: 0] += 1 }
        return InspectReport(path: path, format: opened.format.rawValue, fileBytes: opened.size, metadata: meta, config: config,
                             tensors: rows, totalTensorBytes: rows.reduce(0) { $0 + $1.bytes }, dtypeCounts: counts)
    }

    static func hexCRC(_ v: UInt32) -> String {
        let s = String(v, radix: 16)
        return String(repeating: "0", count: max(0, 8 - s.count)) + s
    }
}
