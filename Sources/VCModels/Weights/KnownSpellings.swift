// Source spellings that differ from the canonical names (TensorNames.swift), and source names
// known to be safe to drop: the one table of known source spellings. Every rule is documented in
// formats/README.md; a test checks each against the official key list.

public enum KnownSpellings {
    public struct Rule: Sendable, Equatable {
        /// How the source spells it.
        public var alternate: String
        /// The canonical spelling.
        public var canonical: String
        /// A prefix rule rewrites the start of the name; an infix rule any `.alternate.` segment.
        public var isPrefix: Bool
        public var note: String
    }

    public static let rules: [Rule] = [
        Rule(alternate: "temporal_conv", canonical: "temopral_conv", isPrefix: false,
             note: "the corrected spelling some re-exports use for upstream's `temopral_conv` (ResBlock temporal convolutions)"),
        Rule(alternate: "_forward_module.", canonical: "", isPrefix: true,
             note: "DeepSpeed / Lightning strategy wrapper prefix (the official loader strips it too)"),
    ]

    /// Names with no meaning for inference that some checkpoints carry; dropped without error.
    public static let ignorable: [String] = ["model_ema.decay", "model_ema.num_updates"]

    /// Tensors of a diffusers pipeline folder (folder-qualified) with no meaning for inference.
    public static let ignorableDiffusers: Set<String> = ["text_encoder/text_model.embeddings.position_ids"]

    /// The canonical spelling of a source name (unchanged when no rule applies).
    public static func canonical(_ name: String) -> String {
        var n = name
        for r in rules where r.isPrefix && n.hasPrefix(r.alternate) {
            n = r.canonical + n.dropFirst(r.alternate.count)
        }
        for r in rules where !r.isPrefix {
            n = n.replacingSegment(r.alternate, with: r.canonical)
        }
        return n
    }

    public static func isIgnorable(_ name: String) -> Bool { ignorable.contains(name) }
}

extension String {
    /// Replaces the dot-separated path segment `old` by `new` (whole segments only).
    func replacingSegment(_ old: String, with new: String) -> String {
        guard contains(old) else { return self }
        let parts = split(separator: ".", omittingEmptySubsequences: false).map { $0 == Substring(old) ? Substring(new) : $0 }
        return parts.joined(separator: ".")
    }
}
