import CVCKernels

extension Ops {
    /// Elementwise (Hadamard) product of two f32 tensors with the same element count.
    public static func mul(_ a: Tensor, _ b: Tensor) throws -> Tensor {
        try requireF32(a, "mul lhs"); try requireF32(b, "mul rhs")
        guard a.count == b.count else { throw TensorError.shapeMismatch("mul \(a.shape) * \(b.shape)") }
        let y = Tensor(zeros: a.shape)
        vck_mul(a.f32, b.f32, y.f32, a.count)
        return y
    }
}

extension Tensor {
    /// Index (row-major) of the first NaN or infinite value, nil when every value is finite.
    /// Float types are scanned as f32 (f16/bf16/q8_0 are expanded first); integer tensors are
    /// always finite.
    public func firstNonFinite() -> Int? {
        switch dtype {
        case .i32, .i64, .u8: return nil
        case .f32:
            let i = vck_first_nonfinite(f32, count)
            return i < 0 ? nil : Int(i)
        case .f16, .bf16, .q8_0:
            guard let t = try? converted(to: .f32) else { return nil }
            return t.firstNonFinite()
        }
    }
}
