// Helpers shared by the text encoder and VAE decoder tests.
import Foundation
import VCTensor
import VCModels
import VCTestSupport

/// The vc2-tiny-a model's text and VAE configurations (fixtures/vc2-tiny-a/config.yaml and
/// open_clip_config.json), written out by hand: YAML parsing is tested elsewhere.
enum TinyA {
    static var text: TextEncoderConfig {
        var c = TextEncoderConfig()
        c.width = 32; c.heads = 2; c.layers = 3; c.layer = "penultimate"
        return c
    }

    static var vae: VAEConfig {
        var c = VAEConfig()
        c.ch = 32; c.chMult = [1, 1, 2, 2]; c.numResBlocks = 1; c.resolution = 128
        return c
    }

    /// A golden tensor's values.
    static func golden(_ name: String) throws -> Tensor {
        guard let t = try Fixtures.golden().tensor(named: name) else { throw TestDataError("golden tensor \(name) missing") }
        return t
    }
}

struct TestDataError: Error, CustomStringConvertible {
    let description: String
    init(_ d: String) { description = d }
}

/// The tiny model with the tensors under `prefix` stored as another dtype, as a converter would
/// write them: `.f16` rounds every tensor; `.q8_0` quantizes every tensor of rank >= 2 (linear and
/// conv weights, embeddings) and leaves vectors f32.
struct WeightVariantSource: TensorSource {
    let base: any TensorSource
    let prefix: String
    let dtype: DType

    var tensorNames: [String] { base.tensorNames }

    func tensor(named name: String) throws -> Tensor? {
        guard let t = try base.tensor(named: name) else { return nil }
        guard name.hasPrefix(prefix) else { return t }
        switch dtype {
        case .q8_0: return t.rank >= 2 ? try t.converted(to: .q8_0) : t
        default: return try t.converted(to: dtype)
        }
    }

    /// rel RMS of (rounded - original) over all rounded tensors (the "weight rel. RMS err" of the
    /// README's quantisation table, restricted to this prefix).
    func weightRelRMS() throws -> Double {
        var se = 0.0, sr = 0.0
        for name in base.tensorNames where name.hasPrefix(prefix) {
            guard let a = try base.tensor(named: name), let b = try tensor(named: name) else { continue }
            for (x, y) in zip(a.floats(), b.floats()) { se += Double(y - x) * Double(y - x); sr += Double(x) * Double(x) }
        }
        return (se / sr).squareRoot()
    }
}

/// Names and shapes of the full-size VC2 state dict's text / VAE tensors
/// (fixtures/videocrafter2-state-dict-keys.tsv; "scalar" is shape []).
func fullSizeKeyShapes(prefix: String) throws -> [String: [Int]] {
    let text = try String(contentsOfFile: Fixtures.path("videocrafter2-state-dict-keys.tsv"), encoding: .utf8)
    var out: [String: [Int]] = [:]
    for line in text.split(separator: "\n").dropFirst() {
        let cols = line.split(separator: "\t")
        guard cols.count >= 2, cols[0].hasPrefix(prefix) else { continue }
        out[String(cols[0])] = cols[1] == "scalar" ? [] : cols[1].split(separator: "x").compactMap { Int($0) }
    }
    return out
}

/// Names and shapes of the tiny model's tensors under `prefix`.
func tinyKeyShapes(prefix: String) throws -> [String: [Int]] {
    let m = try Fixtures.tinyModel()
    var out: [String: [Int]] = [:]
    for e in m.entries where e.name.hasPrefix(prefix) { out[e.name] = e.shape }
    return out
}
