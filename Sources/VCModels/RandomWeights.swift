// Deterministic random weights at given names and shapes, for benchmarks at the real model sizes
// without the real checkpoint (e.g. `vcrun bench`). Combine with the `parameterShapes(config:)`
// tables of the models: `RandomWeights(shapes: VAEDecoder.parameterShapes(config: .init()))`.
import VCTensor

/// A `TensorSource` that makes each tensor on request from its name and a seed (same name, shape
/// and seed -> same bytes, on every machine). Values keep activations at a sane scale:
/// - rank >= 2 (linear / conv weights, embeddings): uniform with variance 1/fan_in, where
///   fan_in is the product of all dimensions but the first;
/// - rank 1 named `*.weight` (norm scales): 1 + uniform(-0.05, 0.05);
/// - other rank 1 (biases): uniform(-0.02, 0.02);
/// - rank 0: 1.
/// Tensors of rank >= 2 are stored as `dtype` (f32, f16, bf16 or q8_0); the rest as f32.
public struct RandomWeights: TensorSource {
    public let shapes: [String: [Int]]
    public let seed: UInt64
    public let dtype: DType

    public init(shapes: [String: [Int]], seed: UInt64 = 0, dtype: DType = .f32) {
        self.shapes = shapes
        self.seed = seed
        self.dtype = dtype
    }

    public var tensorNames: [String] { shapes.keys.sorted() }

    public func tensor(named name: String) throws -> Tensor? {
        guard let shape = shapes[name] else { return nil }
        let n = shape.reduce(1, *)
        var rng = SplitMix64(seed: seed ^ Self.fnv1a(name))
        let (center, halfWidth): (Float, Float)
        switch shape.count {
        case 0: return try Tensor(shape: shape, floats: [1])
        case 1: (center, halfWidth) = name.hasSuffix(".weight") ? (1, 0.05) : (0, 0.02)
        default:
            let fanIn = max(n / max(shape[0], 1), 1)
            (center, halfWidth) = (0, (3 / Float(fanIn)).squareRoot())   // variance a^2/3 = 1/fan_in
        }
        var values = [Float](repeating: 0, count: n)
        for i in 0..<n { values[i] = center + halfWidth * rng.nextSymmetricUnit() }
        let t = try Tensor(shape: shape, floats: values)
        return shape.count >= 2 && dtype != .f32 ? try t.converted(to: dtype) : t
    }

    /// FNV-1a of the UTF-8 bytes (stable across runs, unlike `Hasher`).
    static func fnv1a(_ s: String) -> UInt64 {
        var h: UInt64 = 0xcbf2_9ce4_8422_2325
        for b in s.utf8 { h = (h ^ UInt64(b)) &* 0x0000_0100_0000_01b3 }
        return h
    }
}

/// SplitMix64 (Steele, Lea, Flood 2014): a small, fast, well-mixed 64-bit generator.
struct SplitMix64 {
    var state: UInt64
    init(seed: UInt64) { state = seed }

    mutating func next() -> UInt64 {
        state &+= 0x9e37_79b9_7f4a_7c15
        var z = state
        z = (z ^ (z >> 30)) &* 0xbf58_476d_1ce4_e5b9
        z = (z ^ (z >> 27)) &* 0x94d0_49bb_1331_11eb
        return z ^ (z >> 31)
    }

    /// Uniform in [-1, 1) from the top 24 bits.
    mutating func nextSymmetricUnit() -> Float {
        Float(next() >> 40) * (2 / 16_777_216) - 1
    }
}
