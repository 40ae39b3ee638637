/// Anything that provides named tensors: a .vcm file, a safetensors file, a dictionary in a test.
/// Models bind their weights through this protocol, so VCModels never depends on file formats.
public protocol TensorSource: Sendable {
    var tensorNames: [String] { get }
    func tensor(named name: String) throws -> Tensor?
}

/// A source that makes tensors on request for the shape the model expects (synthetic weights for
/// benchmarks). `WeightBinder` asks it with the shape; `tensorNames` lists what it has made.
public protocol ShapedTensorSource: TensorSource {
    func tensor(named name: String, shape: [Int]) throws -> Tensor?
}

/// An in-memory source (tests, synthetic models).
public struct DictionarySource: TensorSource {
    public var tensors: [String: Tensor]
    public init(_ tensors: [String: Tensor]) { self.tensors = tensors }
    public var tensorNames: [String] { tensors.keys.sorted() }
    public func tensor(named name: String) throws -> Tensor? { tensors[name] }
}

/// Everything wrong with a binding, listed at once.
public struct BindingError: Error, CustomStringConvertible, Equatable {
    public var missing: [String] = []
    public var unexpected: [String] = []
    public var misshapen: [String] = []
    public var wrongType: [String] = []

    public var isEmpty: Bool { missing.isEmpty && unexpected.isEmpty && misshapen.isEmpty && wrongType.isEmpty }

    public var description: String {
        var parts: [String] = []
        func list(_ title: String, _ items: [String]) {
            guard !items.isEmpty else { return }
            let shown = items.prefix(50).map { "  \($0)" }.joined(separator: "\n")
            parts.append("\(items.count) \(title):\n\(shown)" + (items.count > 50 ? "\n  ... and \(items.count - 50) more" : ""))
        }
        list("missing tensors", missing)
        list("unexpected tensors", unexpected)
        list("tensors with the wrong shape", misshapen)
        list("tensors with an unusable dtype", wrongType)
        return "weights do not match the model configuration:\n" + parts.joined(separator: "\n")
    }
}

/// Strict weight binding (after mlx-swift-lm): modules `take` tensors by name with the shape the
/// configuration implies; `finish` reports every missing, unexpected or mis-shaped tensor in one
/// error. Construction continues past a problem (with zeros) so that all problems are found.
public final class WeightBinder {
    public let source: any TensorSource
    private var used = Set<String>()
    private var error = BindingError()

    public init(_ source: any TensorSource) { self.source = source }

    /// The tensor `name` with exactly `shape`. Float weights may be any weight type when
    /// `allowQuantized`; otherwise they are converted to f32 (biases, norms, embeddings).
    public func take(_ name: String, _ shape: [Int], allowQuantized: Bool = false) -> Tensor {
        used.insert(name)
        let t: Tensor?
        do {
            if let shaped = source as? any ShapedTensorSource {
                t = try shaped.tensor(named: name, shape: shape)
            } else {
                t = try source.tensor(named: name)
            }
        } catch {
            self.error.wrongType.append("\(name): \(error)")
            return Tensor(zeros: shape)
        }
        guard let t else {
            error.missing.append("\(name) \(shape)")
            return Tensor(zeros: shape)
        }
        guard t.shape == shape else {
            error.misshapen.append("\(name): expected \(shape), found \(t.shape)")
            return Tensor(zeros: shape)
        }
        guard t.dtype.isWeightType else {
            error.wrongType.append("\(name): \(t.dtype.rawValue)")
            return Tensor(zeros: shape)
        }
        if allowQuantized || t.dtype == .f32 { return t }
        do { return try t.converted(to: .f32) } catch {
            self.error.wrongType.append("\(name): \(error)")
            return Tensor(zeros: shape)
        }
    }

    /// Marks names as deliberately unused (e.g. the VAE encoder).
    public func ignore(where predicate: (String) -> Bool) {
        for n in source.tensorNames where predicate(n) { used.insert(n) }
    }

    /// Throws a `BindingError` listing every problem; `prefix` limits the unexpected-name check to
    /// the names this model owns.
    public func finish(prefix: String = "") throws {
        let extra = source.tensorNames.filter { $0.hasPrefix(prefix) && !used.contains($0) }
        error.unexpected.append(contentsOf: extra.sorted())
        if !error.isEmpty { throw error }
    }
}
