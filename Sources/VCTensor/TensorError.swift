/// Errors of the tensor core. Messages name what was being done and the sizes involved.
public enum TensorError: Error, CustomStringConvertible, Equatable {
    case shapeMismatch(String)
    case unsupportedDType(DType, String)
    case io(path: String, message: String)
    case outOfBounds(String)
    case allocationTooLarge(bytes: Int, what: String)
    case compression(String)

    public var description: String {
        switch self {
        case .shapeMismatch(let m): return "shape mismatch: \(m)"
        case .unsupportedDType(let t, let m): return "unsupported dtype \(t.rawValue): \(m)"
        case .io(let p, let m): return "\(p): \(m)"
        case .outOfBounds(let m): return "out of bounds: \(m)"
        case .allocationTooLarge(let b, let w): return "refusing to allocate \(b) bytes for \(w)"
        case .compression(let m): return "compression: \(m)"
        }
    }
}
