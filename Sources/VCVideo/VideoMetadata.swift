import Foundation

/// Generation parameters recorded with an output (prompt, seed, steps, model, ...). Values are
/// strings; keys are written in sorted order so outputs are reproducible.
///
/// Where they go: MP4 container tags `comment` (all entries as one JSON object) and
/// `description` (the prompt); PNG text chunks (one per entry, tEXt or iTXt for non-ASCII,
/// keys of 1-79 printable ASCII characters); the GIF comment extension (the JSON object).
/// `sidecarJSON()` gives the same object for a `<output>.json` file.
public struct VideoMetadata: Sendable, Equatable {
    public var entries: [String: String]

    public init(_ entries: [String: String] = [:]) { self.entries = entries }

    /// The prompt entry, if any.
    public var prompt: String? { entries["prompt"] }

    /// Entries sorted by key.
    public var sorted: [(key: String, value: String)] {
        entries.sorted { $0.key < $1.key }.map { (key: $0.key, value: $0.value) }
    }

    /// All entries as one compact JSON object with sorted keys.
    public func compactJSON() -> String {
        let data = (try? JSONSerialization.data(withJSONObject: entries, options: [.sortedKeys, .withoutEscapingSlashes])) ?? Data("{}".utf8)
        return String(decoding: data, as: UTF8.self)
    }

    /// Pretty JSON (sorted keys, trailing newline) for a sidecar file.
    public func sidecarJSON() -> Data {
        var data = (try? JSONSerialization.data(withJSONObject: entries, options: [.sortedKeys, .prettyPrinted, .withoutEscapingSlashes])) ?? Data("{}".utf8)
        data.append(0x0A)
        return data
    }

    /// `<output>.json` next to the output (a trailing slash of a frame directory is dropped):
    /// `out/demo.mp4` -> `out/demo.mp4.json`, `out/frames/` -> `out/frames.json`.
    public static func sidecarPath(for outputPath: String) -> String {
        var p = outputPath
        while p.count > 1 && p.hasSuffix("/") { p.removeLast() }
        return p + ".json"
    }

    /// Writes `sidecarJSON()` (or `json` if given) atomically to `sidecarPath(for:)`.
    @discardableResult
    public func writeSidecar(for outputPath: String, json: Data? = nil) throws -> String {
        let path = Self.sidecarPath(for: outputPath)
        try AtomicOutput.write(json ?? sidecarJSON(), to: path)
        return path
    }

    /// The key/value buffer CVCMedia takes: key NUL value NUL ... (pairs in sorted order).
    func cBuffer(_ pairs: [(key: String, value: String)]) -> [CChar] {
        var bytes: [UInt8] = []
        for (k, v) in pairs {
            bytes.append(contentsOf: Array(k.utf8).filter { $0 != 0 })
            bytes.append(0)
            bytes.append(contentsOf: Array(v.utf8).filter { $0 != 0 })
            bytes.append(0)
        }
        bytes.append(0)
        return bytes.map { CChar(bitPattern: $0) }
    }
}
