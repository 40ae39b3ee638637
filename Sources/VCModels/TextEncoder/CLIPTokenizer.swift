// Ports open_clip's SimpleTokenizer and `tokenize` (mlfoundations/open_clip v2.22.0,
// src/open_clip/tokenizer.py): bytes_to_unicode, the vocabulary built from the BPE merges, the
// pre-tokenisation regex, BPE with its cache, SOT/EOT framing, zero padding and truncation.
// The text cleanup it runs first (ftfy, html.unescape, whitespace, lowercase) is TextCleaning.swift.
import Foundation
import Synchronization
import VCTensor

/// Errors building a tokenizer.
public enum TokenizerError: Error, CustomStringConvertible, Equatable {
    /// The bundled vocabulary is missing from the package resources.
    case missingResource(String)
    /// The vocabulary could not be decompressed or decoded.
    case unreadableVocabulary(String)
    /// `contextLength` below 1.
    case badContextLength(Int)

    public var description: String {
        switch self {
        case .missingResource(let name): return "tokenizer: resource \(name) is missing from the VCModels bundle"
        case .unreadableVocabulary(let why): return "tokenizer: unreadable BPE vocabulary: \(why)"
        case .badContextLength(let n): return "tokenizer: context length must be at least 1, got \(n)"
        }
    }
}

/// open_clip's `SimpleTokenizer` with `open_clip.tokenize`: prompt -> 77 token ids.
///
/// Construction builds the vocabulary once (~49k entries); encoded words are cached, so a
/// tokenizer should be kept and reused. Thread-safe.
public final class CLIPTokenizer: Sendable {
    /// The number of ids `tokenize` returns (open_clip's `context_length`, 77 for all CLIP models).
    public let contextLength: Int
    /// Id of `<start_of_text>` (49406 with the standard vocabulary).
    public let startOfText: Int32
    /// Id of `<end_of_text>` (49407 with the standard vocabulary).
    public let endOfText: Int32
    /// Number of ids (49408 with the standard vocabulary).
    public let vocabularySize: Int

    /// The UTF-8 spelling of the vocabulary strings, id i at symbolData[symbolOffsets[i] ..< symbolOffsets[i + 1]].
    private let symbolData: [UInt8]
    private let symbolOffsets: [Int32]
    /// Id of the one-byte symbol for byte b (index b) and of its end-of-word form (index 256 + b).
    private let byteSymbol: [Int32]
    /// (left id << 32 | right id) -> (merge rank, id of the merged symbol).
    private let merges: [UInt64: Merge]
    private let specialTokens: [(CodePoints, Int32)]
    private let cache = Mutex<[[UInt8]: [Int32]]>([:])
    private static let cacheLimit = 100_000

    private struct Merge: Sendable {
        let rank: Int32
        let merged: Int32
    }

    /// Name and size of the bundled vocabulary: the first 48,895 lines (header + the 48,894 merges
    /// open_clip uses) of open_clip's bpe_simple_vocab_16e6.txt, zstd-compressed.
    public static let bundledResourceName = "bpe_simple_vocab_16e6.txt"
    static let bundledVocabularyLimit = 4 << 20

    /// The tokenizer over the vocabulary bundled with VCModels.
    public static func bundled(contextLength: Int = 77) throws -> CLIPTokenizer {
        try CLIPTokenizer(mergesText: bundledMergesText(), contextLength: contextLength)
    }

    /// The bundled vocabulary as shipped: a zstd frame of the merges text (what an import stores
    /// in a `.vcm`, so a model file is self-contained; provenance in fixtures/MANIFEST.md). The
    /// one place that loads the resource.
    public static func bundledVocabularyZstd() throws -> [UInt8] {
        guard let url = Bundle.module.url(forResource: bundledResourceName, withExtension: "zst") else {
            throw TokenizerError.missingResource(bundledResourceName + ".zst")
        }
        do {
            return Array(try Data(contentsOf: url))
        } catch {
            throw TokenizerError.unreadableVocabulary("\(url.path): \(error)")
        }
    }

    /// The bundled merges text, decompressed, as bytes.
    public static func bundledMergesBytes() throws -> [UInt8] {
        do {
            return try Zstd.decompress(try bundledVocabularyZstd(), limit: bundledVocabularyLimit)
        } catch let e as TokenizerError {
            throw e
        } catch {
            throw TokenizerError.unreadableVocabulary("\(bundledResourceName).zst: \(error)")
        }
    }

    /// The bundled merges text.
    public static func bundledMergesText() throws -> String {
        guard let text = String(validating: try bundledMergesBytes(), as: UTF8.self) else {
            throw TokenizerError.unreadableVocabulary("\(bundledResourceName).zst: not UTF-8")
        }
        return text
    }

    /// Builds the vocabulary from the text of a BPE merges file, as SimpleTokenizer.__init__ does:
    /// lines 1 ..< 49152-256-2+1 are the merges (line 0 is a header); the ids are the 256 byte
    /// symbols, the same with "</w>", one per merge (its two parts joined), then `<start_of_text>`
    /// and `<end_of_text>`. A string listed twice keeps its last id (Python's dict(zip(...))).
    public init(mergesText: String, contextLength: Int = 77) throws {
        guard contextLength >= 1 else { throw TokenizerError.badContextLength(contextLength) }
        self.contextLength = contextLength

        // The vocabulary strings, as UTF-8, back to back in one buffer: id i is
        // data[offsets[i] ..< offsets[i + 1]].
        let text = Array(mergesText.utf8)
        var data = [UInt8]()
        data.reserveCapacity(text.count + 4096)
        var offsets = [0]
        offsets.reserveCapacity(49410)
        let byteEncoder = Self.bytesToUnicode()
        for endOfWord in [false, true] {
            for b in Self.byteOrder() {
                data += Self.utf8([byteEncoder[b]]) + (endOfWord ? Self.endOfWord : [])
                offsets.append(data.count)
            }
        }

        // merges = text.split('\n')[1:49152-256-2+1]; each merge is `tuple(line.split())` and adds
        // its parts joined; only two-part lines can ever apply (`pairs`: their ranges in `text`).
        var pairs = [(rank: Int, left: Range<Int>, right: Range<Int>)]()
        pairs.reserveCapacity(49152)
        var lineStart = 0, lineIndex = 0
        let mergeLineLimit = 49152 - 256 - 2 + 1
        while lineStart <= text.count && lineIndex < mergeLineLimit {
            let lineEnd = text[lineStart...].firstIndex(of: 0x0A) ?? text.count
            if lineIndex >= 1 {
                let parts = Self.splitOnWhitespace(text, lineStart..<lineEnd)
                for part in parts { data += text[part] }
                offsets.append(data.count)
                if parts.count == 2 { pairs.append((lineIndex - 1, parts[0], parts[1])) }
            }
            lineStart = lineEnd + 1
            lineIndex += 1
        }
        let specials = ["<start_of_text>", "<end_of_text>"]
        for special in specials {
            data += Array(special.utf8)
            offsets.append(data.count)
        }
        let count = offsets.count - 1

        // encoder = dict(zip(vocab, range(len(vocab)))): a string listed twice keeps its last id.
        var encoder = [SymbolKey: Int32](minimumCapacity: count)
        for id in 0..<count { encoder[SymbolKey(data[offsets[id]..<offsets[id + 1]])] = Int32(id) }

        // bpe_ranks over symbol ids (the last rank of a pair listed twice wins, as in Python).
        var merges = [UInt64: Merge](minimumCapacity: pairs.count)
        for (rank, left, right) in pairs {
            let joined = 512 + rank
            guard let l = encoder[SymbolKey(text[left])], let r = encoder[SymbolKey(text[right])],
                  let m = encoder[SymbolKey(data[offsets[joined]..<offsets[joined + 1]])] else { continue }
            merges[UInt64(UInt32(l)) << 32 | UInt64(UInt32(r))] = Merge(rank: Int32(rank), merged: m)
        }

        var byteSymbol = [Int32](repeating: 0, count: 512)
        for b in 0..<256 {
            let plain = Self.utf8([byteEncoder[b]])
            guard let p = encoder[SymbolKey(plain[...])], let f = encoder[SymbolKey((plain + Self.endOfWord)[...])] else {
                throw TokenizerError.unreadableVocabulary("byte symbol \(b) has no id")
            }
            byteSymbol[b] = p
            byteSymbol[256 + b] = f
        }
        guard let sot = encoder[SymbolKey(Array(specials[0].utf8)[...])],
              let eot = encoder[SymbolKey(Array(specials[1].utf8)[...])] else {
            throw TokenizerError.unreadableVocabulary("special tokens have no id")
        }
        self.symbolData = data
        self.symbolOffsets = offsets.map { Int32($0) }
        self.byteSymbol = byteSymbol
        self.merges = merges
        self.startOfText = sot
        self.endOfText = eot
        self.vocabularySize = count
        self.specialTokens = [(CodePoints(codePointsOf: specials[0]), sot), (CodePoints(codePointsOf: specials[1]), eot)]
    }

    /// A vocabulary string as dictionary key, hashed once (FNV-1a) instead of byte by byte.
    private struct SymbolKey: Hashable {
        let bytes: ArraySlice<UInt8>
        let hash: UInt64

        init(_ bytes: ArraySlice<UInt8>) {
            self.bytes = bytes
            var h: UInt64 = 0xCBF2_9CE4_8422_2325
            for b in bytes { h = (h ^ UInt64(b)) &* 0x100_0000_01B3 }
            hash = h
        }

        static func == (a: SymbolKey, b: SymbolKey) -> Bool { a.hash == b.hash && a.bytes == b.bytes }
        func hash(into hasher: inout Hasher) { hasher.combine(hash) }
    }

    /// The byte ranges of `str.split()` (runs of Python whitespace separate, empty pieces dropped)
    /// within `range` of valid UTF-8 `text`.
    private static func splitOnWhitespace(_ text: [UInt8], _ range: Range<Int>) -> [Range<Int>] {
        var parts = [Range<Int>]()
        var i = range.lowerBound
        var start: Int?
        while i < range.upperBound {
            let n = whitespaceLength(text, i, range.upperBound)
            if n > 0 {
                if let s = start { parts.append(s..<i) }
                start = nil
                i += n
            } else {
                if start == nil { start = i }
                i += 1
            }
        }
        if let s = start { parts.append(s..<range.upperBound) }
        return parts
    }

    /// Bytes of the `str.isspace()` character starting at `i` (0 if there is none). Continuation
    /// bytes never start a match, so scanning byte by byte is safe.
    private static func whitespaceLength(_ t: [UInt8], _ i: Int, _ end: Int) -> Int {
        let b = t[i]
        if b < 0x80 { return PyStr.isSpace(UInt32(b)) ? 1 : 0 }
        guard b == 0xC2 || b == 0xE1 || b == 0xE2 || b == 0xE3 else { return 0 }
        let length = b == 0xC2 ? 2 : 3
        guard i + length <= end, let s = String(validating: t[i..<(i + length)], as: UTF8.self),
              let c = s.unicodeScalars.first else { return 0 }
        return PyStr.isSpace(c.value) ? length : 0
    }

    // MARK: - encoding

    /// `open_clip.tokenize(text)`: `[SOT] + encode(text) + [EOT]`, cut to `contextLength` with the
    /// last id forced to EOT, then zero-padded (id 0 is "!"; open_clip pads with it all the same).
    public func tokenize(_ text: String) -> [Int32] {
        var ids = [startOfText] + encode(text) + [endOfText]
        if ids.count > contextLength {
            ids.removeSubrange(contextLength...)
            ids[contextLength - 1] = endOfText
        }
        ids += [Int32](repeating: 0, count: contextLength - ids.count)
        return ids
    }

    /// `tokenize` of several prompts (one row each).
    public func tokenize(_ texts: [String]) -> [[Int32]] { texts.map(tokenize) }

    /// `SimpleTokenizer.encode(text)`: the BPE ids of the cleaned text, without SOT/EOT/padding.
    public func encode(_ text: String) -> [Int32] {
        var ids = [Int32]()
        for word in words(of: TextCleaning.clean(CodePoints(codePointsOf: text))) {
            ids += bpe(word)
        }
        return ids
    }

    /// The pieces the pre-tokenisation regex finds in cleaned text (for display), e.g.
    /// "it's 4k!" -> ["it", "'s", "4", "k", "!"].
    public func words(_ text: String) -> [String] {
        words(of: TextCleaning.clean(CodePoints(codePointsOf: text))).map(\.string)
    }

    // MARK: - decoding

    /// The vocabulary string of an id with its byte symbols turned back into bytes (shown as UTF-8,
    /// invalid sequences as U+FFFD), e.g. 1449 -> "black</w>", 49406 -> "<start_of_text>".
    /// Nil for an id outside the vocabulary.
    public func symbol(_ id: Int32) -> String? {
        guard let bytes = symbolBytes(id) else { return nil }
        return String(decoding: bytes, as: UTF8.self)
    }

    /// The bytes an id stands for, "</w>" included (a piece of a multi-byte character is not valid
    /// UTF-8 on its own). Nil for an id outside the vocabulary.
    public func symbolBytes(_ id: Int32) -> [UInt8]? {
        guard id >= 0 && Int(id) < vocabularySize else { return nil }
        return rawSymbolBytes(Int(id))
    }

    /// `SimpleTokenizer.decode`: the ids' bytes as text (invalid UTF-8 as U+FFFD), "</w>" -> " ".
    public func decode(_ ids: [Int32]) -> String {
        var bytes = [UInt8]()
        for id in ids where id >= 0 && Int(id) < vocabularySize { bytes += rawSymbolBytes(Int(id)) }
        return String(decoding: bytes, as: UTF8.self).replacingOccurrences(of: "</w>", with: " ")
    }

    /// The bytes a vocabulary string stands for (characters outside the byte alphabet, which only a
    /// foreign merges file can have, are kept as their UTF-8).
    private func rawSymbolBytes(_ id: Int) -> [UInt8] {
        var bytes = [UInt8]()
        let raw = symbolData[Int(symbolOffsets[id])..<Int(symbolOffsets[id + 1])]
        for c in String(decoding: raw, as: UTF8.self).unicodeScalars {
            if let b = Self.byteDecoder[c.value] { bytes.append(b) } else { bytes += Array(String(c).utf8) }
        }
        return bytes
    }

    // MARK: - internals

    private static let endOfWord: [UInt8] = Array("</w>".utf8)

    private static func utf8(_ codePoints: CodePoints) -> [UInt8] { Array(codePoints.string.utf8) }

    /// `bytes_to_unicode()`: byte -> code point. Printable Latin-1 bytes map to themselves, the
    /// other 68 to U+0100, U+0101, ... in byte order. Index = byte.
    static func bytesToUnicode() -> [UInt32] {
        var table = [UInt32](repeating: 0, count: 256)
        var printable = [Bool](repeating: false, count: 256)
        for b in 0x21...0x7E { printable[b] = true }
        for b in 0xA1...0xAC { printable[b] = true }
        for b in 0xAE...0xFF { printable[b] = true }
        var n: UInt32 = 0
        for b in 0..<256 {
            if printable[b] { table[b] = UInt32(b) } else { table[b] = 256 + n; n += 1 }
        }
        return table
    }

    /// The order of `bytes_to_unicode().values()`: the vocabulary's first 256 ids (printable bytes
    /// first, then the others).
    private static func byteOrder() -> [Int] {
        let table = bytesToUnicode()
        return (0..<256).sorted { (a, b) in
            let pa = table[a] < 256, pb = table[b] < 256
            return pa != pb ? pa : a < b
        }
    }

    private static let byteDecoder: [UInt32: UInt8] = {
        var d = [UInt32: UInt8]()
        for (b, c) in bytesToUnicode().enumerated() { d[c] = UInt8(b) }
        return d
    }()

    /// `self.pat.findall(text)` with pat = `<start_of_text>|<end_of_text>|'s|'t|'re|'ve|'m|'ll|'d|
    /// [\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+` and re.IGNORECASE (`regex` module).
    func words(of text: CodePoints) -> [CodePoints] {
        var out = [CodePoints]()
        var i = 0
        let n = text.count
        scan: while i < n {
            for (literal, _) in specialTokens where Self.matchesLiteral(text, at: i, literal) {
                out.append(Array(text[i..<(i + literal.count)]))
                i += literal.count
                continue scan
            }
            if text[i] == 0x27 {
                for literal in Self.contractions where Self.matchesLiteral(text, at: i, literal) {
                    out.append(Array(text[i..<(i + literal.count)]))
                    i += literal.count
                    continue scan
                }
            }
            let kind = Self.kind(text[i])
            switch kind {
            case .letter:
                var j = i + 1
                while j < n && Self.kind(text[j]) == .letter { j += 1 }
                out.append(Array(text[i..<j]))
                i = j
            case .number:
                out.append([text[i]])
                i += 1
            case .other:
                var j = i + 1
                while j < n && Self.kind(text[j]) == .other { j += 1 }
                out.append(Array(text[i..<j]))
                i = j
            case .none:
                i += 1
            }
        }
        return out
    }

    private static let contractions: [CodePoints] = ["'s", "'t", "'re", "'ve", "'m", "'ll", "'d"].map {
        CodePoints(codePointsOf: $0)
    }

    /// Case-insensitive literal match as the `regex` module does it (simple case folding): an ASCII
    /// letter also matches its upper case, and "s" also U+017F (long s).
    private static func matchesLiteral(_ text: CodePoints, at i: Int, _ literal: CodePoints) -> Bool {
        guard i + literal.count <= text.count else { return false }
        for (k, l) in literal.enumerated() {
            let c = text[i + k]
            if c == l { continue }
            if l >= 0x61 && l <= 0x7A && c == l - 0x20 { continue }
            if l == 0x73 && c == 0x17F { continue }
            return false
        }
        return true
    }

    private enum Kind { case letter, number, other, none }

    /// \p{L}, \p{N}, [^\s\p{L}\p{N}] or none. U+0345 (combining ypogegrammeni) is in none: it
    /// case-folds to a letter, so under IGNORECASE the negated class rejects it while \p{L} does
    /// not take it either, and open_clip drops it like whitespace.
    private static func kind(_ c: UInt32) -> Kind {
        if c < 0x80 {
            if (c >= 0x61 && c <= 0x7A) || (c >= 0x41 && c <= 0x5A) { return .letter }
            if c >= 0x30 && c <= 0x39 { return .number }
            return PyStr.isRegexSpace(c) ? .none : .other
        }
        if PyStr.isRegexSpace(c) || c == 0x345 { return .none }
        guard let scalar = Unicode.Scalar(c) else { return .other }
        switch scalar.properties.generalCategory {
        case .uppercaseLetter, .lowercaseLetter, .titlecaseLetter, .modifierLetter, .otherLetter: return .letter
        case .decimalNumber, .letterNumber, .otherNumber: return .number
        default: return .other
        }
    }

    /// `self.bpe(token)` mapped through the encoder: the ids of one word's BPE symbols.
    func bpe(_ word: CodePoints) -> [Int32] {
        for (literal, id) in specialTokens where literal == word { return [id] }
        let bytes = Self.utf8(word)
        if let hit = cache.withLock({ $0[bytes] }) { return hit }
        var symbols = bytes.enumerated().map { k, b in byteSymbol[(k == bytes.count - 1 ? 256 : 0) + Int(b)] }
        while symbols.count > 1 {
            // The adjacent pair with the lowest merge rank.
            var best: Merge?
            var bestPair: UInt64 = 0
            for k in 0..<(symbols.count - 1) {
                let pair = UInt64(UInt32(symbols[k])) << 32 | UInt64(UInt32(symbols[k + 1]))
                if let m = merges[pair], m.rank < (best?.rank ?? .max) {
                    best = m
                    bestPair = pair
                }
            }
            guard let merge = best else { break }
            let left = Int32(truncatingIfNeeded: bestPair >> 32), right = Int32(truncatingIfNeeded: bestPair)
            // Merge every occurrence, left to right.
            var merged = [Int32]()
            merged.reserveCapacity(symbols.count)
            var k = 0
            while k < symbols.count {
                if k + 1 < symbols.count && symbols[k] == left && symbols[k + 1] == right {
                    merged.append(merge.merged)
                    k += 2
                } else {
                    merged.append(symbols[k])
                    k += 1
                }
            }
            symbols = merged
        }
        cache.withLock { cache in
            if cache.count >= Self.cacheLimit { cache.removeAll(keepingCapacity: true) }
            cache[bytes] = symbols
        }
        return symbols
    }
}
