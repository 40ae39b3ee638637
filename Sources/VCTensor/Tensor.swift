import CVCKernels

/// A dense, contiguous, row-major tensor. Activations are f32 and channels-last (the last
/// dimension is channels, see docs/architecture.md); weights may be f32, f16, bf16 or q8_0 and are
/// usually memory-mapped straight from a .vcm file.
public struct Tensor: Sendable {
    public let shape: [Int]
    public let dtype: DType
    public let storage: Storage
    public let byteOffset: Int

    /// Wraps existing storage (bounds-checked).
    public init(shape: [Int], dtype: DType, storage: Storage, byteOffset: Int = 0) throws {
        guard let bytes = dtype.byteCount(shape: shape) else {
            throw TensorError.shapeMismatch("shape \(shape) overflows for \(dtype.rawValue)")
        }
        guard byteOffset >= 0, byteOffset <= storage.byteCount, bytes <= storage.byteCount - byteOffset else {
            throw TensorError.outOfBounds("tensor \(shape) \(dtype.rawValue) needs \(bytes) bytes at offset \(byteOffset) of \(storage.byteCount)")
        }
        self.shape = shape
        self.dtype = dtype
        self.storage = storage
        self.byteOffset = byteOffset
    }

    /// A new zero-filled tensor. The shape must be valid (no negative dimension, no overflow):
    /// callers with untrusted shapes use `Tensor.zeros(_:dtype:)`, which throws.
    public init(zeros shape: [Int], dtype: DType = .f32) {
        guard let bytes = dtype.byteCount(shape: shape) else {
            // Continuing would hand out a tensor whose shape claims more memory than it has.
            preconditionFailure("Tensor(zeros:) with invalid shape \(shape) for \(dtype.rawValue)")
        }
        self.shape = shape
        self.dtype = dtype
        self.storage = Storage(byteCount: bytes)
        self.byteOffset = 0
    }

    /// A new zero-filled tensor, or a `shapeMismatch` error for a negative or overflowing shape.
    public static func zeros(_ shape: [Int], dtype: DType = .f32) throws -> Tensor {
        guard dtype.byteCount(shape: shape) != nil else {
            throw TensorError.shapeMismatch("invalid shape \(shape) for \(dtype.rawValue)")
        }
        return Tensor(zeros: shape, dtype: dtype)
    }

    /// A new tensor whose contents are unspecified (for op outputs that are overwritten
    /// completely).
    public init(uninitialized shape: [Int], dtype: DType = .f32) {
        let bytes = dtype.byteCount(shape: shape) ?? 0
        self.shape = shape
        self.dtype = dtype
        self.storage = Storage(uninitializedByteCount: bytes)
        self.byteOffset = 0
    }

    /// A new f32 tensor holding `values` (count must match the shape).
    public init(shape: [Int], floats values: [Float]) throws {
        guard DType.f32.byteCount(shape: shape) != nil else {
            throw TensorError.shapeMismatch("invalid shape \(shape) for \(values.count) values")
        }
        let n = shape.reduce(1, *)
        guard n == values.count else {
            throw TensorError.shapeMismatch("\(values.count) values for shape \(shape) (\(n) elements)")
        }
        self.init(zeros: shape)
        values.withUnsafeBytes { src in
            guard let s = src.baseAddress else { return }
            storage.base.advanced(by: byteOffset).copyMemory(from: s, byteCount: n * 4)
        }
    }

    /// Number of elements.
    public var count: Int { shape.reduce(1, *) }
    /// Bytes occupied.
    public var byteCount: Int { dtype.byteCount(shape: shape) ?? 0 }
    public var rank: Int { shape.count }

    var raw: UnsafeMutableRawPointer { storage.base.advanced(by: byteOffset) }
    var f32: UnsafeMutablePointer<Float> { raw.assumingMemoryBound(to: Float.self) }

    /// The same bytes with another shape of equal element count.
    public func reshaped(_ newShape: [Int]) throws -> Tensor {
        // q8_0 keeps its rows: same first dimension and, as rows of blocks, both shapes 2-D or more.
        let q8ok = dtype != .q8_0 || (newShape.first == shape.first && (newShape.count >= 2) == (shape.count >= 2))
        guard newShape.allSatisfy({ $0 >= 0 }), DType.f32.byteCount(shape: newShape) != nil,
              newShape.reduce(1, *) == count, q8ok else {
            throw TensorError.shapeMismatch("cannot reshape \(shape) to \(newShape)")
        }
        return try Tensor(shape: newShape, dtype: dtype, storage: storage, byteOffset: byteOffset)
    }

    /// Rows [start, start + n) along the first dimension, sharing storage.
    public func rows(_ start: Int, _ n: Int) throws -> Tensor {
        guard let first = shape.first, start >= 0, n >= 0, start <= first, n <= first - start,
              dtype != .q8_0 || shape.count >= 2 else {
            throw TensorError.outOfBounds("rows \(start)..<\(start &+ n) of \(dtype.rawValue) \(shape)")
        }
        let rowBytes = (dtype.byteCount(shape: shape) ?? 0) / max(first, 1)
        var s = shape
        s[0] = n
        return try Tensor(shape: s, dtype: dtype, storage: storage, byteOffset: byteOffset + start * rowBytes)
    }

    /// A fresh copy (owned storage).
    public func copy() -> Tensor {
        let t = Tensor(zeros: shape, dtype: dtype)
        t.raw.copyMemory(from: raw, byteCount: byteCount)
        return t
    }

    /// All values as f32 (f16/bf16/q8_0 are expanded, integers converted).
    public func floats() -> [Float] {
        let n = count
        var out = [Float](repeating: 0, count: n)
        out.withUnsafeMutableBufferPointer { dst in
            guard let d = dst.baseAddress, n > 0 else { return }
            switch dtype {
            case .f32: d.update(from: f32, count: n)
            case .f16: vck_f16_to_f32(raw.assumingMemoryBound(to: UInt16.self), d, n)
            case .bf16: vck_bf16_to_f32(raw.assumingMemoryBound(to: UInt16.self), d, n)
            case .q8_0:
                if let (rows, k) = DType.q8Layout(shape: shape) {
                    let rb = vck_q8_0_row_bytes(k)
                    for r in 0..<rows {
                        vck_dequantize_row_q8_0(raw.advanced(by: r * rb).assumingMemoryBound(to: vck_block_q8_0.self), d + r * k, k)
                    }
                }
            case .i32:
                let p = raw.assumingMemoryBound(to: Int32.self)
                for i in 0..<n { d[i] = Float(p[i]) }
            case .i64:
                let p = raw.assumingMemoryBound(to: Int64.self)
                for i in 0..<n { d[i] = Float(p[i]) }
            case .u8:
                let p = raw.assumingMemoryBound(to: UInt8.self)
                for i in 0..<n { d[i] = Float(p[i]) }
            }
        }
        return out
    }

    /// Raw bytes (a copy), as stored.
    public func bytes() -> [UInt8] {
        Array(UnsafeRawBufferPointer(start: raw, count: byteCount))
    }

    /// A tensor of this shape whose bytes are `bytes` (as stored; count must match).
    public init(shape: [Int], dtype: DType, bytes: [UInt8]) throws {
        guard let n = dtype.byteCount(shape: shape), n == bytes.count else {
            throw TensorError.shapeMismatch("\(bytes.count) bytes for \(dtype.rawValue) \(shape)")
        }
        self.init(zeros: shape, dtype: dtype)
        bytes.withUnsafeBytes { src in
            if let s = src.baseAddress, n > 0 { storage.base.copyMemory(from: s, byteCount: n) }
        }
    }

    /// Converts to another float/weight type. f32 -> f16/bf16 rounds to nearest even; -> q8_0
    /// quantizes rows (shape[0] rows of the remaining dimensions) in blocks of 32.
    public func converted(to target: DType) throws -> Tensor {
        if target == dtype { return self }
        let src = dtype == .f32 ? self : try Tensor(shape: shape, floats: floats())
        if target == .f32 { return src }
        let out = Tensor(zeros: shape, dtype: target)
        let n = count
        switch target {
        case .f16: vck_f32_to_f16(src.f32, out.raw.assumingMemoryBound(to: UInt16.self), n)
        case .bf16: vck_f32_to_bf16(src.f32, out.raw.assumingMemoryBound(to: UInt16.self), n)
        case .q8_0:
            guard let (rows, k) = DType.q8Layout(shape: shape) else {
                throw TensorError.shapeMismatch("cannot quantize shape \(shape)")
            }
            let rb = vck_q8_0_row_bytes(k)
            for r in 0..<rows {
                vck_quantize_row_q8_0(src.f32 + r * k, out.raw.advanced(by: r * rb).assumingMemoryBound(to: vck_block_q8_0.self), k)
            }
        default:
            throw TensorError.unsupportedDType(target, "conversion target must be f32, f16, bf16 or q8_0")
        }
        return out
    }

    /// CRC-32C of the stored bytes.
    public func crc32c() -> UInt32 { vck_crc32c(0, raw, byteCount) }
}

extension Tensor: CustomStringConvertible {
    public var description: String { "Tensor(\(dtype.rawValue) \(shape))" }
}
