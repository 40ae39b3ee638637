import Foundation

/// A fresh temporary folder for a test, removed by `remove()` or when the last reference goes
/// away. Shared by the test targets (it was written once per target before).
public final class TempDir: Sendable {
    public let url: URL
    /// Whether this value created the folder (and so removes it).
    private let owned: Bool

    /// Creates `<system temp>/<prefix>-<UUID>`.
    public init(prefix: String = "vc-test") throws {
        url = FileManager.default.temporaryDirectory.appendingPathComponent("\(prefix)-\(UUID().uuidString)")
        owned = true
        try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
    }

    /// An existing folder, never removed.
    public init(existing: String) {
        url = URL(fileURLWithPath: existing)
        owned = false
    }

    /// The folder's path.
    public var dir: String { url.path }

    /// The path of `name` inside the folder.
    public func path(_ name: String) -> String { url.appendingPathComponent(name).path }

    /// The names in the folder, sorted.
    public func files() -> [String] { ((try? FileManager.default.contentsOfDirectory(atPath: dir)) ?? []).sorted() }

    /// Writes `bytes` to `name` and returns its path.
    public func write(_ name: String, _ bytes: [UInt8]) throws -> String {
        let p = path(name)
        try Data(bytes).write(to: URL(fileURLWithPath: p))
        return p
    }

    /// Removes the folder and everything in it (a folder given by `init(existing:)` is kept).
    public func remove() {
        if owned { try? FileManager.default.removeItem(at: url) }
    }

    deinit { remove() }
}
