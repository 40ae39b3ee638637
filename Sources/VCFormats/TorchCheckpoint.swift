import Foundation
import VCTensor

// Format: the zip layout of torch.save (pytorch/pytorch torch/serialization.py `_save`/`_load`,
// caffe2/serialize/inline_container.cc), the persistent-id tuple and `_rebuild_tensor_v2`
// argument order (torch/_utils.py), and the checkpoint wrappers accepted by
// AILab-CVC/VideoCrafter@11bcd76 scripts/evaluation/funcs.py `load_model_checkpoint`
// (DeepSpeed {'module': ...} with the 16-character `_forward_module.` prefix, Lightning
// {'state_dict': ...}, or a bare OrderedDict). Described in
// ../shared/research/formats-lora-sdcpp.md §2. Own implementation.

/// A PyTorch zip checkpoint (`torch.save` since 1.6) as a `TensorSource`, without Python and
/// without executing anything.
///
/// - The archive may use any top-level folder name; exactly one `<folder>/data.pkl` must exist.
///   Storages are the stored (uncompressed) entries `<folder>/data/<key>`; tensors are windows into
///   the memory-mapped file (zip stored entries are contiguous), so opening a 7 GB checkpoint reads
///   only the central directory, the local headers and the pickle.
/// - `data.pkl` is read by `Unpickler` (nothing is called). Tensors are recognised only as
///   `torch._utils._rebuild_tensor_v2` / `_rebuild_tensor` calls (optionally wrapped by
///   `_rebuild_parameter` / `_rebuild_parameter_with_state`) over a `('storage', torch.<T>Storage,
///   key, location, numel)` persistent id; dicts come from `{}` or `collections.OrderedDict()`.
///   Any other call is an opaque value: ignored where nothing uses it, an error when it stands
///   where a state-dict tensor (or one of its arguments) must be.
/// - Each tensor is checked: storage entry present and large enough for the declared numel,
///   offset/size/stride non-negative and overflow-free, C-contiguous, inside its storage;
///   `byteorder` must be `little` (or absent).
/// - The state dict is found as the official VideoCrafter loader does: `root['module']`
///   (DeepSpeed; the `_forward_module.` prefix is removed), else `root['state_dict']`, else the
///   root dict itself.
public final class TorchCheckpoint: MappedTensorSource, @unchecked Sendable {
    public enum Wrapper: String, Sendable {
        /// `{'state_dict': {...}, ...}` (Lightning / LDM checkpoints).
        case stateDict = "state_dict"
        /// `{'module': {'_forward_module.<name>': ...}}` (DeepSpeed).
        case deepSpeed = "module"
        /// The state dict itself (`torch.save(model.state_dict())`).
        case bare
    }

    public struct Entry: Sendable, Equatable {
        public var name: String
        public var dtype: FileDType
        public var shape: [Int]
        /// Absolute file offset of the tensor's first byte.
        public var fileOffset: Int
        public var byteCount: Int
        public var storageKey: String
        /// The torch storage class, e.g. `FloatStorage`.
        public var storageType: String
    }

    /// The DeepSpeed key prefix the official loader cuts off (`key[16:]`).
    public static let deepSpeedPrefix = "_forward_module."
    /// Largest data.pkl accepted (it is read into memory; a 2,039-tensor state dict is ~0.5 MB).
    public static let maxPickleBytes = 1 << 30

    public let path: String
    public let archive: ZipArchive
    /// The archive's top-level folder (e.g. `archive`, or the file name torch.save was given).
    public let folder: String
    public let wrapper: Wrapper
    /// Tensors in state-dict order.
    public let entries: [Entry]
    /// State-dict entries that are not tensors (plain values such as ints or strings), with a
    /// description; they are not exposed as tensors.
    public let skipped: [(name: String, value: String)]
    private let index: [String: Int]

    public convenience init(path: String, limits: PickleLimits = PickleLimits()) throws {
        let file: MappedFile
        do { file = try MappedFile(path: path) } catch let e as TensorError {
            if case .io(_, let m) = e { throw FormatError.io(path: path, m) }
            throw FormatError.io(path: path, e.description)
        }
        try self.init(file: file, limits: limits)
    }

    /// Parses a file already mapped (or held in memory: `MappedFile(bytes:path:)`).
    public init(file: MappedFile, limits: PickleLimits = PickleLimits()) throws {
        let path = file.path
        self.path = path
        let archive: ZipArchive
        do { archive = try ZipArchive(file: file) } catch let e as FormatError {
            if case .malformed = e, file.size >= 2,
               let b = try? file.bytes(offset: 0, count: 2), b[0] == 0x80, b[1] <= 5 {
                throw FormatError.unsupported(path: path, "this is the legacy (pre-1.6, non-zip) torch.save format; re-save it with a current PyTorch")
            }
            throw e
        }
        self.archive = archive
        func bad(_ o: Int, _ m: String) -> FormatError { .malformed(path: path, offset: o, m) }

        // data.pkl in exactly one top-level folder.
        let pkls = archive.entries.filter { e in
            let parts = e.name.split(separator: "/", omittingEmptySubsequences: false)
            return parts.count == 2 && parts[1] == "data.pkl" && !parts[0].isEmpty
        }
        guard let pklEntry = pkls.first else {
            throw bad(0, "no <folder>/data.pkl in the archive: not a PyTorch checkpoint")
        }
        guard pkls.count == 1 else {
            throw bad(pkls[1].localHeaderOffset, "\(pkls.count) data.pkl records (\(pkls.map(\.name).joined(separator: ", "))); expected one")
        }
        let folder = String(pklEntry.name.dropLast("/data.pkl".count))
        self.folder = folder

        if let bo = archive.entry(named: folder + "/byteorder") {
            let b = try archive.bytes(bo)
            let s = String(decoding: b, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
            if s == "big" { throw FormatError.unsupported(path: path, "tensors are stored big-endian (\(bo.name) = big)") }
            guard s == "little" else { throw bad(bo.dataOffset, "\(bo.name) is '\(s)', expected 'little' or 'big'") }
        }

        guard pklEntry.size <= TorchCheckpoint.maxPickleBytes else {
            throw FormatError.unsupported(path: path, "\(pklEntry.name) is \(pklEntry.size) bytes (limit \(TorchCheckpoint.maxPickleBytes))")
        }
        let pklBytes = try archive.bytes(pklEntry)
        let pklAt = pklEntry.dataOffset
        let g: PickleGraph
        do { g = try Unpickler.load(pklBytes, limits: limits) } catch {
            throw bad(pklAt + error.offset, "\(pklEntry.name) byte \(error.offset): \(error.message)")
        }

        // The state dict.
        guard let rootItems = g.dictItems(g.root) else {
            throw bad(pklAt + g.offsets[g.root], "\(pklEntry.name) holds \(g.describe(g.root)), not a dict of tensors")
        }
        func member(_ key: String) -> Int? { rootItems.last(where: { g.string($0.key) == key })?.value }
        let stateNode: Int
        if let m = member("module") {
            wrapper = .deepSpeed; stateNode = m
        } else if let s = member("state_dict") {
            wrapper = .stateDict; stateNode = s
        } else {
            wrapper = .bare; stateNode = g.root
        }
        guard let items = g.dictItems(stateNode) else {
            throw bad(pklAt + g.offsets[stateNode], "'\(wrapper.rawValue)' is \(g.describe(stateNode)), not a dict of tensors")
        }

        var entries: [Entry] = []
        var skipped: [(String, String)] = []
        var index: [String: Int] = [:]
        entries.reserveCapacity(items.count)
        let ctx = Context(g: g, archive: archive, folder: folder)
        for item in items {
            guard var name = g.string(item.key) else {
                throw bad(pklAt + g.offsets[item.key], "a state-dict key is \(g.describe(item.key)), not a string")
            }
            if wrapper == .deepSpeed {
                guard name.hasPrefix(TorchCheckpoint.deepSpeedPrefix) else {
                    throw bad(pklAt + g.offsets[item.key], "DeepSpeed key '\(name)' does not start with '\(TorchCheckpoint.deepSpeedPrefix)'")
                }
                name = String(name.dropFirst(TorchCheckpoint.deepSpeedPrefix.count))
            }
            let at = pklAt + g.offsets[item.value]
            switch ctx.tensor(item.value, depth: 0) {
            case .tensor(var e):
                e.name = name
                guard index[name] == nil else { throw bad(at, "tensor '\(name)' appears twice in the state dict") }
                index[name] = entries.count
                entries.append(e)
            case .invalid(let m):
                throw bad(at, "tensor '\(name)': \(m)")
            case .notTensor(let d):
                skipped.append((name, d))
            }
        }
        self.entries = entries
        self.skipped = skipped
        self.index = index
    }

    public var tensorNames: [String] { entries.map(\.name) }

    public func entry(named name: String) -> Entry? { index[name].map { entries[$0] } }

    /// The stored bytes of a tensor of any dtype, as a window into the mapping.
    public func rawStorage(named name: String) throws -> Storage? {
        guard let e = entry(named: name) else { return nil }
        return try archive.file.storage(offset: e.fileOffset, count: e.byteCount)
    }

    public func releasePages(named name: String) {
        guard let e = entry(named: name) else { return }
        archive.file.dontNeed(offset: e.fileOffset, count: e.byteCount)
    }

    public func tensor(named name: String) throws -> Tensor? {
        guard let e = entry(named: name) else { return nil }
        guard let dt = e.dtype.runtime else {
            throw FormatError.unsupported(path: path, "tensor '\(name)' has dtype \(e.dtype.rawValue) (torch.\(e.storageType)), which the runtime cannot use (usable: \(FileDType.usableList))")
        }
        let st = try archive.file.storage(offset: e.fileOffset, count: e.byteCount)
        if e.fileOffset % e.dtype.alignment != 0 {
            return try Tensor(shape: e.shape, dtype: dt, bytes: st.bytes(0..<e.byteCount))
        }
        return try Tensor(shape: e.shape, dtype: dt, storage: st)
    }

    // MARK: interpretation of the pickle graph

    enum Interpretation: Error {
        case tensor(Entry)
        case notTensor(String)
        case invalid(String)
    }

    struct Context {
        let g: PickleGraph
        let archive: ZipArchive
        let folder: String
        static let maxRank = 16

        func tensor(_ node: Int, depth: Int) -> Interpretation {
            guard let obj = g.object(node) else {
                if case .persistent = g.nodes[node] { return .notTensor("a bare storage") }
                return .notTensor(g.describe(node))
            }
            guard let (module, name) = g.global(obj.callable) else {
                return .invalid("built by \(g.describe(obj.callable)), which is not an allowed function")
            }
            let args = g.tuple(obj.args) ?? []
            switch (module, name, obj.kind) {
            case ("torch._utils", "_rebuild_tensor_v2", .reduce), ("torch._utils", "_rebuild_tensor", .reduce):
                return rebuild(args, v2: name == "_rebuild_tensor_v2")
            case ("torch._utils", "_rebuild_parameter", .reduce), ("torch._utils", "_rebuild_parameter_with_state", .reduce),
                 ("torch.nn.parameter", "Parameter", .newobj), ("torch.nn.parameter", "Parameter", .reduce):
                guard depth < 2, let inner = args.first else {
                    return .invalid("\(module).\(name) without a tensor argument")
                }
                if case .tensor(let e) = tensor(inner, depth: depth + 1) { return .tensor(e) }
                if case .invalid(let m) = tensor(inner, depth: depth + 1) { return .invalid(m) }
                return .invalid("\(module).\(name) wraps \(g.describe(inner)), not a tensor")
            default:
                return .invalid("built by \(module).\(name) (\(obj.kind.rawValue)), which is not in the allowlist (torch._utils._rebuild_tensor_v2, _rebuild_parameter, collections.OrderedDict, torch.*Storage)")
            }
        }

        func ints(_ node: Int, _ what: String) -> Result<[Int], Interpretation> {
            guard let t = g.tuple(node) else { return .failure(.invalid("\(what) is \(g.describe(node)), not a tuple of integers")) }
            guard t.count <= Context.maxRank else { return .failure(.invalid("\(what) has \(t.count) dimensions (limit \(Context.maxRank))")) }
            var out: [Int] = []
            for (i, x) in t.enumerated() {
                guard case .int(let v) = g.nodes[x] else {
                    return .failure(.invalid("\(what)[\(i)] is \(g.describe(x)), not an integer"))
                }
                guard v >= 0 else { return .failure(.invalid("\(what)[\(i)] is negative (\(v))")) }
                out.append(v)
            }
            return .success(out)
        }

        func rebuild(_ args: [Int], v2: Bool) -> Interpretation {
            guard args.count >= 4, args.count <= 7 else {
                return .invalid("_rebuild_tensor\(v2 ? "_v2" : "") has \(args.count) arguments")
            }
            // Any not-allowed call among the arguments is something the tensor depends on.
            for a in args.dropFirst(4) {
                if let o = g.object(a) {
                    let what = g.global(o.callable).map { "\($0.module).\($0.name)" } ?? "a call"
                    return .invalid("an argument is built by \(what), which is not in the allowlist")
                }
            }
            // Storage: ('storage', torch.<T>Storage, key, location, numel).
            guard case .persistent(let pidNode) = g.nodes[args[0]] else {
                return .invalid("storage argument is \(g.describe(args[0])), not a persistent storage id")
            }
            guard let pid = g.tuple(pidNode), pid.count == 5, g.string(pid[0]) == "storage" else {
                return .invalid("persistent id is \(g.describe(pidNode)), not ('storage', type, key, location, numel)")
            }
            guard let (sm, sn) = g.global(pid[1]) else {
                return .invalid("storage type is \(g.describe(pid[1])), not a torch storage class")
            }
            guard sm == "torch", let dtype = FileDType(torchStorage: sn) else {
                return .invalid("storage type \(sm).\(sn) is not a torch storage class this reader knows")
            }
            guard let key = g.string(pid[2]) else { return .invalid("storage key is \(g.describe(pid[2])), not a string") }
            guard case .int(let numel) = g.nodes[pid[4]], numel >= 0 else {
                return .invalid("storage size is \(g.describe(pid[4])), not a non-negative integer")
            }
            let entryName = folder + "/data/" + key
            guard let se = archive.entry(named: entryName) else {
                return .invalid("storage '\(key)' (\(entryName)) is missing from the archive")
            }
            let range: Range<Int>
            do { range = try archive.storedRange(se) } catch let e as FormatError {
                return .invalid("storage '\(key)': \(e.message)")
            } catch {
                return .invalid("storage '\(key)': \(error)")
            }
            guard let storageBytes = dtype.byteCount(elements: numel) else {
                return .invalid("storage '\(key)': \(numel) elements of \(sn) overflow")
            }
            guard storageBytes <= range.count else {
                return .invalid("storage '\(key)' declares \(numel) elements of \(sn) (\(storageBytes) bytes), but \(entryName) holds \(range.count) bytes")
            }
            // View: offset (elements), size, stride.
            guard case .int(let offset) = g.nodes[args[1]], offset >= 0 else {
                return .invalid("storage offset is \(g.describe(args[1])), not a non-negative integer")
            }
            let shape: [Int], stride: [Int]
            switch ints(args[2], "size") { case .success(let s): shape = s; case .failure(let f): return f }
            if case .tuple(let st) = g.nodes[args[3]] {
                for (i, x) in st.enumerated() {
                    if case .int(let v) = g.nodes[x], v < 0 { return .invalid("stride[\(i)] is negative (\(v))") }
                }
            }
            switch ints(args[3], "stride") { case .success(let s): stride = s; case .failure(let f): return f }
            guard stride.count == shape.count else {
                return .invalid("size \(shape) and stride \(stride) have different ranks")
            }
            var numelView = 1
            for d in shape {
                let (p, o) = numelView.multipliedReportingOverflow(by: d)
                if o { return .invalid("size \(shape) overflows") }
                numelView = p
            }
            if numelView > 0 {
                // C-contiguous: stride[i] = product of the later sizes (dimensions of size 1 may
                // have any stride, they never move the address).
                var expected = 1
                for i in stride.indices.reversed() {
                    if shape[i] != 1, stride[i] != expected {
                        return .invalid("size \(shape) with stride \(stride) is not a contiguous view (expected stride \(expected) in dimension \(i)); save contiguous tensors")
                    }
                    expected *= shape[i] // cannot overflow: bounded by numelView
                }
            }
            let (end, o) = offset.addingReportingOverflow(numelView)
            guard !o, end <= numel else {
                return .invalid("view of \(numelView) elements at offset \(offset) is outside storage '\(key)' of \(numel) elements")
            }
            guard let byteCount = dtype.byteCount(elements: numelView), let byteOffset = dtype.byteCount(elements: offset) else {
                return .invalid("size \(shape) overflows")
            }
            return .tensor(Entry(name: "", dtype: dtype, shape: shape, fileOffset: range.lowerBound + byteOffset,
                                 byteCount: byteCount, storageKey: key, storageType: sn))
        }
    }
}
