import VCTensor

/// The `--type` of an import: the storage type of the big matrices.
public enum WeightType: String, Sendable, CaseIterable, Codable {
    case f32, f16, bf16, q8
}

/// Which stored type each tensor gets (formats/README.md, "Quantization policy"):
///
/// | role                                   | f32 | f16 | bf16 | q8     |
/// |----------------------------------------|-----|-----|------|--------|
/// | UNet Linear/Conv weights               | f32 | f16 | bf16 | q8_0   |
/// | text / VAE Linear/Conv weights         | f32 | f16 | bf16 | f16    |
/// | embeddings (token, position, relpos)   | f32 | f32 | f32  | f16    |
/// | biases, norm parameters, scalars, buffers | f32 | f32 | f32 | f32 |
///
/// Norms, biases and embeddings stay wider than the chosen type: they are a small share of the
/// bytes and the most sensitive to rounding. q8 covers the UNet matrices (about 78% of the
/// parameters) and leaves the text tower and the VAE in f16, the variant the golden bundle
/// measured (`q8_0_unet_fp16_rest`). Per-name overrides (`--override 'PATTERN=TYPE'`, glob
/// patterns with `*` and `?`, last match wins) change any of this.
public struct QuantizationPolicy: Sendable, Equatable {
    public struct Override: Sendable, Equatable {
        public var pattern: String
        public var dtype: DType
        public init(pattern: String, dtype: DType) { self.pattern = pattern; self.dtype = dtype }
    }

    public var type: WeightType
    public var overrides: [Override]

    public init(type: WeightType, overrides: [Override] = []) {
        self.type = type
        self.overrides = overrides
    }

    /// Parses `PATTERN=TYPE` (TYPE one of f32, f16, bf16, q8 / q8_0).
    public static func parseOverride(_ s: String) throws -> Override {
        guard let eq = s.lastIndex(of: "="), eq != s.startIndex else {
            throw ConfigError("override '\(s)' is not PATTERN=TYPE")
        }
        let pattern = String(s[..<eq]), type = String(s[s.index(after: eq)...])
        let dtype: DType
        switch type {
        case "f32": dtype = .f32
        case "f16": dtype = .f16
        case "bf16": dtype = .bf16
        case "q8", "q8_0": dtype = .q8_0
        default: throw ConfigError("override '\(s)': type must be f32, f16, bf16 or q8")
        }
        return Override(pattern: pattern, dtype: dtype)
    }

    /// The stored type of `spec` by the table above, before overrides.
    public func defaultType(for spec: TensorSpec) -> DType {
        switch spec.role {
        case .bias, .norm, .scalar, .buffer:
            return .f32
        case .embedding:
            return type == .q8 ? .f16 : .f32
        case .weight:
            switch type {
            case .f32: return .f32
            case .f16: return .f16
            case .bf16: return .bf16
            case .q8: return spec.component == .unet ? .q8_0 : .f16
            }
        }
    }

    /// The stored type of `spec` (overrides applied).
    public func dtype(for spec: TensorSpec) -> DType {
        var t = defaultType(for: spec)
        for o in overrides where Glob.matches(o.pattern, spec.name) { t = o.dtype }
        return t
    }

    /// Checks the overrides against the tensors to be written: each must match something, and
    /// q8 only applies to tensors of rank >= 2 (rows x blocks of 32).
    public func validate(_ specs: [TensorSpec]) throws {
        for o in overrides {
            let hits = specs.filter { Glob.matches(o.pattern, $0.name) }
            guard !hits.isEmpty else { throw ConfigError("override pattern '\(o.pattern)' matches no tensor") }
        }
        for s in specs where dtype(for: s) == .q8_0 && s.shape.count < 2 {
            throw ConfigError("override makes '\(s.name)' (shape \(s.shape)) q8, which needs a matrix")
        }
    }
}

/// Shell-style patterns: `*` any run of characters (dots included), `?` one character.
public enum Glob {
    public static func matches(_ pattern: String, _ text: String) -> Bool {
        let p = Array(pattern.unicodeScalars), t = Array(text.unicodeScalars)
        var pi = 0, ti = 0, star = -1, mark = 0
        while ti < t.count {
            if pi < p.count && (p[pi] == "?" || p[pi] == t[ti]) {
                pi += 1; ti += 1
            } else if pi < p.count && p[pi] == "*" {
                star = pi; mark = ti; pi += 1
            } else if star >= 0 {
                pi = star + 1; mark += 1; ti = mark
            } else {
                return false
            }
        }
        while pi < p.count && p[pi] == "*" { pi += 1 }
        return pi == p.count
    }
}
