/// Element types the runtime stores and computes with.
///
/// `q8_0` is the ggml q8_0 block layout: rows of `K` values in blocks of 32 int8 quants with one
/// fp16 scale (34 bytes a block); a partial last block is zero-padded (formats/vcm.md).
public enum DType: String, Sendable, CaseIterable, Codable {
    case f32, f16, bf16, q8_0, i32, i64, u8

    /// Bytes of one element (for q8_0: per value, rounded; use `byteCount(shape:)`).
    public var elementSize: Int {
        switch self {
        case .f32, .i32: return 4
        case .f16, .bf16: return 2
        case .i64: return 8
        case .u8: return 1
        case .q8_0: return 1
        }
    }

    /// Whether the type is a weight type the GEMM kernels accept.
    public var isWeightType: Bool { self == .f32 || self == .f16 || self == .bf16 || self == .q8_0 }

    /// Bytes a tensor of this shape occupies. For q8_0 the last dimension is the block axis
    /// (rows = product of the other dimensions, K = last dimension, or the product of all but the
    /// first for a conv weight: see `q8Rows`). Returns nil on overflow.
    public func byteCount(shape: [Int]) -> Int? {
        if self == .q8_0 {
            guard let (rows, k) = DType.q8Layout(shape: shape) else { return nil }
            let blocks = (k + 31) / 32
            let (rb, o1) = blocks.multipliedReportingOverflow(by: 34)
            let (total, o2) = rb.multipliedReportingOverflow(by: rows)
            return o1 || o2 ? nil : total
        }
        var n = elementSize
        for d in shape {
            guard d >= 0 else { return nil }
            let (m, o) = n.multipliedReportingOverflow(by: d)
            if o { return nil }
            n = m
        }
        return n
    }

    /// The (rows, K) view of a weight of this shape: rows = shape[0] (outputs), K = the product of
    /// the rest (inputs, in PyTorch order). A 1-D shape is one row.
    public static func q8Layout(shape: [Int]) -> (rows: Int, k: Int)? {
        guard let first = shape.first else { return (1, 1) }
        if shape.count == 1 { return (1, first) }
        var k = 1
        for d in shape.dropFirst() {
            guard d >= 0 else { return nil }
            let (m, o) = k.multipliedReportingOverflow(by: d)
            if o { return nil }
            k = m
        }
        return (first, k)
    }
}
