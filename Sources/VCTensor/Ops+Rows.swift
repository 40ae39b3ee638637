// Row-wise assembly of tensors (additive helper for models that compute a tensor in pieces,
// e.g. attention over query chunks or a batch decoded frame by frame).

extension Ops {
    /// Concatenation along the first dimension: parts `[n_i, rest...]` (all f32, same `rest`)
    /// -> `[sum n_i, rest...]`.
    public static func concatRows(_ parts: [Tensor]) throws -> Tensor {
        guard let first = parts.first else { throw TensorError.shapeMismatch("concatRows of no tensors") }
        let rest = Array(first.shape.dropFirst())
        var total = 0
        for p in parts {
            try requireF32(p, "concatRows part")
            guard p.rank >= 1, Array(p.shape.dropFirst()) == rest else {
                throw TensorError.shapeMismatch("concatRows of \(first.shape) and \(p.shape)")
            }
            total += p.shape[0]
        }
        let y = Tensor(zeros: [total] + rest)
        var offset = 0
        for p in parts {
            y.raw.advanced(by: offset).copyMemory(from: p.raw, byteCount: p.byteCount)
            offset += p.byteCount
        }
        return y
    }
}
