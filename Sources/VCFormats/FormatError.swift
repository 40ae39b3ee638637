/// Errors of the file readers and writers. Every case names the file; byte offsets and tensor
/// names are included where they exist.
public enum FormatError: Error, CustomStringConvertible, Equatable {
    /// The bytes break the format's rules at `offset`.
    case malformed(path: String, offset: Int, String)
    /// Well-formed, but something we do not (or will not) handle.
    case unsupported(path: String, String)
    /// A tensor is missing, misnamed or has the wrong shape for the model.
    case model(path: String, String)
    /// An operating-system error.
    case io(path: String, String)

    public var description: String {
        switch self {
        case .malformed(let p, let o, let m): return "\(p): at byte \(o): \(m)"
        case .unsupported(let p, let m): return "\(p): \(m)"
        case .model(let p, let m): return "\(p): \(m)"
        case .io(let p, let m): return "\(p): \(m)"
        }
    }

    /// The message without the path (for nesting one error inside another about the same file).
    public var message: String {
        switch self {
        case .malformed(_, let o, let m): return "at byte \(o): \(m)"
        case .unsupported(_, let m), .model(_, let m), .io(_, let m): return m
        }
    }
}
