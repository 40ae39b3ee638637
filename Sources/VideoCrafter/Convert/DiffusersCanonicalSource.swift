import Foundation
import VCTensor
import VCFormats
import VCModels

/// A diffusers folder seen under canonical LDM names (the `sources` of the canonical table): copies and
/// reshapes are windows into the folder's files; the text tower's fused `in_proj` tensors are
/// assembled from q/k/v into owned memory when asked for.
final class DiffusersCanonicalSource: MappedTensorSource, @unchecked Sendable {
    let folder: DiffusersFolder
    /// The canonical tensors a diffusers folder can hold (those with diffusers sources).
    let mapping: [String: TensorSpec]
    /// Canonical names whose every part is present.
    let tensorNames: [String]
    /// Folder tensors no canonical tensor uses (reported as unexpected).
    let unconsumed: [String]
    /// Folder tensors known to be meaningless for inference.
    let ignored: [String]
    /// Canonical tensors with only some of their parts present.
    let incomplete: [String]

    init(folder: DiffusersFolder, names: ModelTensorNames) {
        self.folder = folder
        let mapping = Dictionary(names.tensors.filter { !$0.sources.isEmpty }.map { ($0.name, $0) }, uniquingKeysWith: { a, _ in a })
        self.mapping = mapping
        let present = Set(folder.tensorNames)
        var names: [String] = [], incomplete: [String] = []
        var used = Set<String>()
        for (canonical, s) in mapping.sorted(by: { $0.key < $1.key }) {
            let parts = s.sources.map(\.folderName)
            let have = parts.filter(present.contains)
            if have.count == parts.count {
                names.append(canonical)
                used.formUnion(parts)
            } else if !have.isEmpty {
                incomplete.append("\(canonical): needs \(parts.joined(separator: " + ")), the folder lacks \(parts.filter { !present.contains($0) }.joined(separator: ", "))")
                used.formUnion(have)
            }
        }
        self.tensorNames = names
        self.incomplete = incomplete
        self.ignored = folder.tensorNames.filter { KnownSpellings.ignorableDiffusers.contains($0) }
        self.unconsumed = folder.tensorNames.filter { !used.contains($0) && !KnownSpellings.ignorableDiffusers.contains($0) }.sorted()
    }

    func tensor(named name: String) throws -> Tensor? {
        guard let s = mapping[name] else { return nil }
        let names = s.sources.map(\.folderName)
        var parts: [Tensor] = []
        for p in names {
            guard let t = try folder.tensor(named: p) else { return nil }
            parts.append(t)
        }
        guard let first = parts.first, let transform = s.sources.first?.transform else { return nil }
        switch transform {
        case .copy:
            return first
        case .reshape:
            guard first.count == s.shape.reduce(1, *) else {
                throw FormatError.model(path: folder.path, "\(names[0]) \(first.shape) cannot become \(name) \(s.shape)")
            }
            return try Tensor(shape: s.shape, dtype: first.dtype, storage: first.storage, byteOffset: first.byteOffset)
        case .rows:
            // The sources are listed in row order (q, k, v).
            let tail = Array(first.shape.dropFirst())
            guard parts.allSatisfy({ $0.dtype == first.dtype && Array($0.shape.dropFirst()) == tail && $0.rank == first.rank }) else {
                throw FormatError.model(path: folder.path, "\(names.joined(separator: ", ")) differ in dtype or shape and cannot be stacked into \(name)")
            }
            let rows = parts.reduce(0) { $0 + ($1.shape.first ?? 1) }
            return try Tensor(shape: [rows] + tail, dtype: first.dtype, bytes: parts.flatMap { $0.bytes() })
        }
    }

    func releasePages(named name: String) {
        for s in mapping[name]?.sources ?? [] { folder.releasePages(named: s.folderName) }
    }
}
