import Foundation
import VCTensor
import VCFormats
import VCModels

/// A diffusers folder seen under canonical LDM names (`DiffusersNames.mapping`): copies and
/// reshapes are windows into the folder's files; the text tower's fused `in_proj` tensors are
/// assembled from q/k/v into owned memory when asked for.
final class DiffusersCanonicalSource: MappedTensorSource, @unchecked Sendable {
    let folder: DiffusersFolder
    let mapping: [String: DiffusersNames.Source]
    /// Canonical names whose every part is present.
    let tensorNames: [String]
    /// Folder tensors no canonical tensor uses (reported as unexpected).
    let unconsumed: [String]
    /// Folder tensors known to be meaningless for inference.
    let ignored: [String]
    /// Canonical tensors with only some of their parts present.
    let incomplete: [String]

    init(folder: DiffusersFolder, mapping: [String: DiffusersNames.Source]) {
        self.folder = folder
        self.mapping = mapping
        let present = Set(folder.tensorNames)
        var names: [String] = [], incomplete: [String] = []
        var used = Set<String>()
        for (canonical, s) in mapping.sorted(by: { $0.key < $1.key }) {
            let have = s.parts.filter(present.contains)
            if have.count == s.parts.count {
                names.append(canonical)
                used.formUnion(s.parts)
            } else if !have.isEmpty {
                incomplete.append("\(canonical): needs \(s.parts.joined(separator: " + ")), the folder lacks \(s.parts.filter { !present.contains($0) }.joined(separator: ", "))")
                used.formUnion(have)
            }
        }
        self.tensorNames = names
        self.incomplete = incomplete
        self.ignored = folder.tensorNames.filter { DiffusersNames.ignorable.contains($0) }
        self.unconsumed = folder.tensorNames.filter { !used.contains($0) && !DiffusersNames.ignorable.contains($0) }.sorted()
    }

    func tensor(named name: String) throws -> Tensor? {
        guard let s = mapping[name] else { return nil }
        var parts: [Tensor] = []
        for p in s.parts {
            guard let t = try folder.tensor(named: p) else { return nil }
            parts.append(t)
        }
        guard let first = parts.first else { return nil }
        switch s.transform {
        case .copy:
            return first
        case .reshape(let shape):
            guard first.count == shape.reduce(1, *) else {
                throw FormatError.model(path: folder.path, "\(s.parts[0]) \(first.shape) cannot become \(name) \(shape)")
            }
            return try Tensor(shape: shape, dtype: first.dtype, storage: first.storage, byteOffset: first.byteOffset)
        case .concatRows:
            let tail = Array(first.shape.dropFirst())
            guard parts.allSatisfy({ $0.dtype == first.dtype && Array($0.shape.dropFirst()) == tail && $0.rank == first.rank }) else {
                throw FormatError.model(path: folder.path, "\(s.parts.joined(separator: ", ")) differ in dtype or shape and cannot be stacked into \(name)")
            }
            let rows = parts.reduce(0) { $0 + ($1.shape.first ?? 1) }
            return try Tensor(shape: [rows] + tail, dtype: first.dtype, bytes: parts.flatMap { $0.bytes() })
        }
    }

    func releasePages(named name: String) {
        for p in mapping[name]?.parts ?? [] { folder.releasePages(named: p) }
    }
}
