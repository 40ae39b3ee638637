import Foundation
import VCTensor
import VCFormats

/// Locates the repository's fixtures/ folder (tests never read ../shared).
public enum Fixtures {
    public static let root: URL = {
        var url = URL(fileURLWithPath: #filePath)
        for _ in 0..<3 { url.deleteLastPathComponent() } // Tests/Support/Fixtures.swift -> repo
        return url.appendingPathComponent("fixtures")
    }()

    public static func path(_ relative: String) -> String { root.appendingPathComponent(relative).path }

    /// The golden reference tensors of the vc2-tiny-a bundle.
    public static func golden() throws -> SafetensorsFile {
        try SafetensorsFile(path: path("vc2-tiny-a/golden.safetensors"))
    }

    /// The vc2-tiny-a model weights (safetensors copy).
    public static func tinyModel() throws -> SafetensorsFile {
        try SafetensorsFile(path: path("vc2-tiny-a/model.safetensors"))
    }

    /// golden.json of vc2-tiny-a as a dictionary.
    public static func goldenJSON() throws -> [String: Any] {
        let data = try Data(contentsOf: root.appendingPathComponent("vc2-tiny-a/golden.json"))
        return (try JSONSerialization.jsonObject(with: data) as? [String: Any]) ?? [:]
    }
}

/// Error measures used against the goldens (definitions as in fixtures/vc2-tiny-a/README.md).
public struct Comparison: CustomStringConvertible, Sendable {
    public var maxAbs: Double
    public var relRMS: Double
    public var refMaxAbs: Double

    public init(_ actual: [Float], _ expected: [Float]) {
        precondition(actual.count == expected.count, "compared \(actual.count) values with \(expected.count)")
        var maxAbs = 0.0, se = 0.0, sr = 0.0, rm = 0.0
        for (a, e) in zip(actual, expected) {
            let d = abs(Double(a) - Double(e))
            if d > maxAbs || d.isNaN { maxAbs = d.isNaN ? .infinity : d }
            se += d * d
            sr += Double(e) * Double(e)
            rm = max(rm, abs(Double(e)))
        }
        self.maxAbs = maxAbs
        self.relRMS = sr > 0 ? (se / sr).squareRoot() : se.squareRoot()
        self.refMaxAbs = rm
    }

    public var description: String { "max|diff| \(maxAbs), rel RMS \(relRMS) (ref max \(refMaxAbs))" }
}

/// PSNR in dB between two uint8 images/videos.
public func psnr(_ a: [UInt8], _ b: [UInt8]) -> Double {
    precondition(a.count == b.count)
    var se = 0.0
    for (x, y) in zip(a, b) { let d = Double(x) - Double(y); se += d * d }
    let mse = se / Double(max(a.count, 1))
    return mse == 0 ? .infinity : 10 * log10(255 * 255 / mse)
}
