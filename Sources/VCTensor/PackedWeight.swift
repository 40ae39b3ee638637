import CVCKernels
import Synchronization

/// A weight repacked once into the column panels the f16 / bf16 / q8_0 GEMM kernels read
/// (CVCKernels `vck_pack_weight`), so `Ops.linear` / `Ops.conv2d` / `Ops.convTemporal` skip the
/// per-call repacking. Results are bit-identical to passing the tensor itself.
///
/// The packed copy lives on the heap (about the size of the weight, +6% for q8_0); the source
/// tensor is not retained.
public final class PackedWeight: @unchecked Sendable {
    /// The source weight's shape and dtype ([N, K] or [Cout, Cin, kh, kw] / [Cout, Cin, kt, 1, 1]).
    public let shape: [Int]
    public let dtype: DType
    private let n: Int, k: Int
    private let packed: OpaquePointer   // immutable after init; read by any thread

    public init(_ w: Tensor) throws {
        guard w.dtype.isWeightType else { throw TensorError.unsupportedDType(w.dtype, "packed weight") }
        guard let (n, k) = DType.q8Layout(shape: w.shape), n > 0, k > 0 else {
            throw TensorError.shapeMismatch("cannot pack a weight of shape \(w.shape)")
        }
        self.shape = w.shape
        self.dtype = w.dtype
        self.n = n
        self.k = k
        var cw = try Ops.weight(w, k: k, what: "packed weight")
        guard let p = withExtendedLifetime(w, { vck_pack_weight(&cw) }) else {
            throw TensorError.allocationTooLarge(bytes: n * k * 2, what: "packed weight \(w.shape)")
        }
        self.packed = p
    }

    deinit { vck_packed_weight_free(packed) }

    /// Bytes of the packed copy.
    public var byteCount: Int { Int(vck_packed_weight_bytes(packed)) }

    /// The rows as f32: exactly the values the kernels multiply with.
    public func floats() -> [Float] {
        var out = [Float](repeating: 0, count: n * k)
        out.withUnsafeMutableBufferPointer { vck_packed_weight_rows_f32(packed, 0, Int64(n), $0.baseAddress) }
        return out
    }

    /// The C descriptor, checking that the weight takes `k` inputs. Valid while `self` lives.
    func cWeight(k expected: Int, what: String) throws -> vck_weight {
        guard expected == k else { throw TensorError.shapeMismatch("\(what): weight \(shape) does not take \(expected) inputs") }
        return vck_weight(data: UnsafeRawPointer(packed), dtype: Int32(VCK_W_PACKED), n: Int64(n), k: Int64(k))
    }
}

/// Packs each weight tensor once and hands out the packed copy afterwards (keyed by the tensor's
/// storage object, offset, shape and dtype; the storage is retained so its identity stays unique).
/// Thread-safe; a model keeps one for its lifetime.
public final class PackedWeightCache: Sendable {
    private struct Key: Hashable { let storage: ObjectIdentifier; let offset: Int; let shape: [Int]; let dtype: DType }
    private struct Entry { let packed: PackedWeight; let storage: Storage }
    private let entries = Mutex<[Key: Entry]>([:])

    public init() {}

    public func packed(_ w: Tensor) throws -> PackedWeight {
        let key = Key(storage: ObjectIdentifier(w.storage), offset: w.byteOffset, shape: w.shape, dtype: w.dtype)
        if let hit = entries.withLock({ $0[key] }) { return hit.packed }
        let p = try PackedWeight(w) // outside the lock: packing is the slow part
        return entries.withLock { table in
            if let raced = table[key] { return raced.packed }
            table[key] = Entry(packed: p, storage: w.storage)
            return p
        }
    }

    public var count: Int { entries.withLock { $0.count } }
    /// Bytes held by the packed copies.
    public var byteCount: Int { entries.withLock { $0.values.reduce(0) { $0 + $1.packed.byteCount } } }
}
