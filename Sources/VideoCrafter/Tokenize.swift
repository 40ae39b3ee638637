import VCModels

/// Where a tokenizer's BPE vocabulary comes from.
public enum TokenizerVocabulary: Sendable {
    /// The vocabulary bundled with the library (open_clip's bpe_simple_vocab_16e6, as VC2 uses).
    case bundled
    /// The text of a BPE merges file (header line, then one "left right" merge per line).
    case mergesText(String)
    /// The vocabulary stored in a `.vcm` model file.
    case model(path: String)
}

/// Errors of the tokenize job.
public enum TokenizeError: Error, CustomStringConvertible {
    /// The `.vcm` reader is not part of this build yet.
    case modelVocabularyUnavailable(path: String)

    public var description: String {
        switch self {
        case .modelVocabularyUnavailable(let path):
            return "\(path): reading the tokenizer vocabulary of a .vcm file is not available in this build"
        }
    }
}

/// Prompt -> token ids, with everything a user debugging a prompt wants to see.
public enum Tokenize {
    /// One id of the result and what it stands for.
    public struct Token: Sendable, Equatable, Codable {
        public var id: Int32
        /// The vocabulary string ("</w>" marks the end of a word). Byte pieces of a character that
        /// the BPE split are shown as `\xNN` escapes.
        public var text: String
    }

    /// What `run` returns.
    public struct Result: Sendable, Equatable, Codable {
        public var prompt: String
        /// The text after open_clip's cleanup (ftfy, HTML unescape, whitespace, lowercase).
        public var cleaned: String
        /// The pieces the pre-tokenisation splits the cleaned text into.
        public var words: [String]
        /// The `contextLength` ids the text encoder receives (zero-padded).
        public var ids: [Int32]
        /// The ids before padding, start and end tokens included.
        public var tokens: [Token]
        /// start + prompt tokens + end, before truncation.
        public var fullCount: Int
        /// Whether the prompt did not fit (its last kept token was replaced by the end token).
        public var truncated: Bool
        public var contextLength: Int

        enum CodingKeys: String, CodingKey {
            case prompt, cleaned, words, ids, tokens, truncated
            case fullCount = "full_count"
            case contextLength = "context_length"
        }
    }

    /// The tokenizer over `vocabulary`.
    public static func tokenizer(_ vocabulary: TokenizerVocabulary) throws -> CLIPTokenizer {
        switch vocabulary {
        case .bundled: return try CLIPTokenizer.bundled()
        case .mergesText(let text): return try CLIPTokenizer(mergesText: text)
        case .model(let path): return try CLIPTokenizer(mergesText: modelMergesText(path: path))
        }
    }

    /// Tokenizes `prompt` as VideoCrafter2's text encoder (open_clip.tokenize) does.
    public static func run(prompt: String, vocabulary: TokenizerVocabulary = .bundled) throws -> Result {
        run(prompt: prompt, tokenizer: try tokenizer(vocabulary))
    }

    public static func run(prompt: String, tokenizer: CLIPTokenizer) -> Result {
        let ids = tokenizer.tokenize(prompt)
        let body = tokenizer.encode(prompt)
        let fullCount = body.count + 2
        let kept = min(fullCount, tokenizer.contextLength)
        let tokens = ids.prefix(kept).map { Token(id: $0, text: display(tokenizer.symbolBytes($0) ?? [])) }
        return Result(prompt: prompt, cleaned: TextCleaning.clean(prompt), words: tokenizer.words(prompt),
                      ids: ids, tokens: tokens, fullCount: fullCount,
                      truncated: fullCount > tokenizer.contextLength, contextLength: tokenizer.contextLength)
    }

    /// The merges text stored in a `.vcm` file.
    // TODO(lead): wire to the .vcm reader (VCFormats) once it is merged: return the file's tokenizer
    // vocabulary text here; everything else (`--model` in `vcrun tokenize`) already goes through it.
    static func modelMergesText(path: String) throws -> String {
        throw TokenizeError.modelVocabularyUnavailable(path: path)
    }

    /// UTF-8 text, with bytes that are not part of a valid sequence written as `\xNN`.
    static func display(_ bytes: [UInt8]) -> String {
        var out = ""
        var i = 0
        while i < bytes.count {
            let lead = bytes[i]
            let length = lead < 0x80 ? 1 : lead >= 0xC2 && lead <= 0xDF ? 2 : lead >= 0xE0 && lead <= 0xEF ? 3
                : lead >= 0xF0 && lead <= 0xF4 ? 4 : 0
            if length > 0, i + length <= bytes.count,
               let s = String(validating: bytes[i..<(i + length)], as: UTF8.self) {
                out += s
                i += length
            } else {
                out += "\\x" + String(lead, radix: 16, uppercase: false).leftPadded(to: 2)
                i += 1
            }
        }
        return out
    }
}

private extension String {
    func leftPadded(to width: Int) -> String { count >= width ? self : String(repeating: "0", count: width - count) + self }
}
