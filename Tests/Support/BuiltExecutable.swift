import Foundation

/// An executable product of this package (`vcrun`, `vcconv`, `vc-interrupt-probe`), found next to
/// the test bundle: both come out of the same build folder.
public enum BuiltExecutable {
    public struct Missing: Error, CustomStringConvertible {
        public var looked: [String]
        public var description: String { "executable not found (looked at \(looked)); run `swift build --build-tests`" }
    }

    /// The URL of the executable `name`.
    public static func url(_ name: String) throws -> URL {
        let bin = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
        let candidates = [bin, bin.deletingLastPathComponent()].map { $0.appendingPathComponent(name) }
        guard let p = candidates.first(where: { FileManager.default.isExecutableFile(atPath: $0.path) }) else {
            throw Missing(looked: candidates.map(\.path))
        }
        return p
    }
}
