// The mojibake detection and re-decoding machinery of ftfy 6.3.1 (rspeer/python-ftfy v6.3.1 = commit 5340af6, PyPI release
// 6.3.1): the badness heuristic (ftfy/badness.py BADNESS_RE), UTF8_DETECTOR_RE, ALTERED_UTF8_RE,
// LOSSY_UTF8_RE and A_GRAVE_WORD_RE (ftfy/chardata.py, ftfy/fixes.py), the single-byte codecs
// (ftfy/bad_codecs/sloppy.py and the stdlib codecs ftfy tries) and the utf-8-variants decoder
// (ftfy/bad_codecs/utf8_variants.py), plus CPython's strict UTF-8 decoder. Used by FixText.swift.
//
// The regular expressions are small alternations of fixed-length character-class sequences; they
// are matched here by explicit scanners with Python `re` semantics (leftmost match, alternatives
// tried in order, `$` also matching before a final "\n").

/// A set of code points (ftfy's character classes).
struct ScalarSet: Sendable {
    private let members: Set<UInt32>

    init(_ members: Set<UInt32>) { self.members = members }

    /// From TextTables' flat inclusive ranges (low, high, low, high, ...).
    init(ranges: [UInt32]) {
        var set = Set<UInt32>()
        var i = 0
        while i + 1 < ranges.count {
            for c in ranges[i]...ranges[i + 1] { set.insert(c) }
            i += 2
        }
        members = set
    }

    init(_ scalars: String) { members = Set(scalars.unicodeScalars.map(\.value)) }

    static func named(_ name: String) -> ScalarSet { ScalarSet(ranges: TextTables.classes[name] ?? []) }

    func contains(_ c: UInt32) -> Bool { members.contains(c) }

    static func + (a: ScalarSet, b: ScalarSet) -> ScalarSet { ScalarSet(a.members.union(b.members)) }
}

// MARK: - badness

/// `ftfy.badness.is_bad`: does BADNESS_RE match anywhere in the text?
enum Badness {
    /// One position of a BADNESS_RE alternative.
    enum Element: Sendable {
        case set(ScalarSet)
        case notASCIILetter   // [^A-Za-z]
        case asciiLower       // [a-z]
        case asciiLetter      // [a-zA-Z]
        case asciiLetterOrSpace // [A-Za-z ]
        case space            // \s (Python re, str pattern: str.isspace)
        case word             // \w (str.isalnum() or "_")
        case notNewline       // .

        func matches(_ c: UInt32) -> Bool {
            switch self {
            case .set(let s): return s.contains(c)
            case .notASCIILetter: return !((c >= 0x41 && c <= 0x5A) || (c >= 0x61 && c <= 0x7A))
            case .asciiLower: return c >= 0x61 && c <= 0x7A
            case .asciiLetter: return (c >= 0x41 && c <= 0x5A) || (c >= 0x61 && c <= 0x7A)
            case .asciiLetterOrSpace: return (c >= 0x41 && c <= 0x5A) || (c >= 0x61 && c <= 0x7A) || c == 0x20
            case .space: return PyStr.isSpace(c)
            case .word: return c == 0x5F || PyStr.isAlnum(c)
            case .notNewline: return c != 0x0A
            }
        }
    }

    struct Alternative: Sendable {
        var elements: [Element]
        var anchoredAtStart = false
    }

    /// BADNESS_RE of ftfy 6.3.1, alternative by alternative (`\s?` is written as two alternatives,
    /// which is the same for a search).
    static let alternatives: [Alternative] = {
        let c1 = ScalarSet.named("c1"), bad = ScalarSet.named("bad"), law = ScalarSet.named("law")
        let currency = ScalarSet.named("currency"), numeric = ScalarSet.named("numeric")
        let sp = ScalarSet.named("start_punctuation"), ep = ScalarSet.named("end_punctuation")
        let kaomoji = ScalarSet.named("kaomoji"), common = ScalarSet.named("common")
        let ua = ScalarSet.named("upper_accented"), la = ScalarSet.named("lower_accented")
        let uc = ScalarSet.named("upper_common"), lc = ScalarSet.named("lower_common")
        let box = ScalarSet.named("box")
        func s(_ x: ScalarSet) -> Element { .set(x) }
        func lit(_ x: String) -> Element { .set(ScalarSet(x)) }
        let arabicFollower = s(common + currency + bad + numeric + sp + ScalarSet("\u{178}\u{160}\u{AE}\u{B0}\u{B5}\u{BB}"))
        let cyrillicFrame = lit("\u{412}\u{413}\u{420}\u{421}") // [ВГРС]
        let greekFrame = lit("\u{392}\u{393}\u{39E}\u{39F}")    // [ΒΓΞΟ]
        let list: [[Element]] = [
            [s(c1)],
            [s(bad + la + ua + box + sp + ep + currency + numeric + law), s(bad)],
            [.asciiLetter, s(lc + uc), s(bad)],
            [s(bad), s(la + ua + box + sp + ep + currency + numeric + law)],
            [s(la + lc + box + ep + currency + numeric), s(ua)],
            [s(box + ep + currency + numeric), s(la)],
            [s(la + box + ep), s(currency)],
            [.space, s(ua), s(currency)],
            [s(ua + box), s(numeric + law)],
            [s(la + ua + box + currency + ep), s(sp), s(numeric)],
            [s(la + ua + currency + numeric + box + law), s(ep), s(sp)],
            [s(currency + numeric + box), s(sp)],
            [.asciiLower, s(ua), s(sp + currency)],
            [s(box), s(kaomoji)],
            [s(la + ua + currency + numeric + sp + ep + law), s(box)],
            [s(box), s(ep)],
            [s(la + ua), s(sp + ep), .word],
            [lit("\u{152}\u{153}"), .notASCIILetter],                        // [Œœ][^A-Za-z]
            [s(ua), lit("\u{B0}")],                                           // [ua]°
            [lit("\u{C2}\u{C3}\u{CE}\u{D0}"),                                 // [ÂÃÎÐ][€œŠš¢£Ÿž\xa0\xad®©°·»...–—´]
             s(ScalarSet("\u{20AC}\u{153}\u{160}\u{161}\u{A2}\u{A3}\u{178}\u{17E}\u{A0}\u{AD}\u{AE}\u{A9}\u{B0}\u{B7}\u{BB}")
               + sp + ep + ScalarSet("\u{2013}\u{2014}\u{B4}"))],
            [lit("\u{D7}"), lit("\u{B2}\u{B3}")],                             // × [²³]
            [lit("\u{D8}\u{D9}"), arabicFollower, lit("\u{D8}\u{D9}"), arabicFollower],
            [lit("\u{E0}"), lit("\u{B2}\u{B5}\u{B9}\u{BC}\u{BD}\u{BE}")],    // à[²µ¹¼½¾]
            [lit("\u{221A}"),                                                 // √[±∂†≠®™´≤≥¥µø]
             lit("\u{B1}\u{2202}\u{2020}\u{2260}\u{AE}\u{2122}\u{B4}\u{2264}\u{2265}\u{A5}\u{B5}\u{F8}")],
            [lit("\u{2248}"), lit("\u{B0}\u{A2}")],                           // ≈[°¢]
            [lit("\u{201A}"), lit("\u{C4}"),                                  // ‚Ä[ìîïòôúùû†°¢π]
             lit("\u{EC}\u{EE}\u{EF}\u{F2}\u{F4}\u{FA}\u{F9}\u{FB}\u{2020}\u{B0}\u{A2}\u{3C0}")],
            [lit("\u{201A}"), lit("\u{E2}\u{F3}"), lit("\u{E0}\u{E4}\u{B0}\u{EA}")], // ‚[âó][àä°ê]
            [lit("\u{432}"), lit("\u{402}")],                                 // вЂ
            [cyrillicFrame, s(c1 + bad + sp + ep + currency + ScalarSet("\u{B0}\u{B5}")), cyrillicFrame],
            [lit("\u{413}"), lit("\u{45E}"), lit("\u{412}"), lit("\u{402}"), lit("\u{412}"), // ГўВЂВ.[A-Za-z ]
             .notNewline, .asciiLetterOrSpace],
            [lit("\u{C3}"), lit("\u{A0}\u{A1}")],                             // Ã[\xa0¡]
            [.asciiLower, lit("\u{C3}\u{C2}"), lit(" ")],                     // [a-z]\s?[ÃÂ][ ]
            [.asciiLower, .space, lit("\u{C3}\u{C2}"), lit(" ")],
            [s(ScalarSet("abcdefghijklmnopqrstuvwxyz.,?!") + ep), lit("\u{C2}"), s(ScalarSet(" ") + sp + ep)],
            [lit("\u{3B2}"), lit("\u{20AC}"), lit("\u{2122}\u{A0}\u{386}\u{AD}\u{AE}\u{B0}")], // β€[™\xa0Ά\xad®°]
            [greekFrame, s(c1 + bad + sp + ep + currency + ScalarSet("\u{B0}")), greekFrame],
            [lit("\u{101}"), lit("\u{20AC}")],                                // ā€
        ]
        var alternatives = list.map { Alternative(elements: $0) }
        alternatives.append(Alternative(elements: [lit("\u{C3}\u{C2}"), lit(" ")], anchoredAtStart: true)) // ^[ÃÂ][ ]
        return alternatives
    }()

    static func isBad(_ text: CodePoints) -> Bool {
        for start in text.indices {
            for alternative in alternatives {
                if alternative.anchoredAtStart && start != 0 { continue }
                let elements = alternative.elements
                guard start + elements.count <= text.count else { continue }
                var k = 0
                while k < elements.count && elements[k].matches(text[start + k]) { k += 1 }
                if k == elements.count { return true }
            }
        }
        return false
    }
}

// MARK: - UTF8_DETECTOR_RE

/// `(?<![continuation_strict])([first_of_2][continuation] | [first_of_3][continuation]{2} |
/// [first_of_4][continuation]{3})+`: runs of characters that look like UTF-8 read as a single-byte
/// encoding. The three lead classes are disjoint, so the greedy repetition never backtracks.
enum UTF8Detector {
    static let firstOf2 = ScalarSet.named("utf8_first_of_2")
    static let firstOf3 = ScalarSet.named("utf8_first_of_3")
    static let firstOf4 = ScalarSet.named("utf8_first_of_4")
    static let continuation = ScalarSet.named("utf8_continuation")
    static let continuationStrict = ScalarSet.named("utf8_continuation_strict")

    /// The end of the match starting at `start`, if any.
    static func match(_ text: CodePoints, at start: Int) -> Int? {
        if start > 0 && continuationStrict.contains(text[start - 1]) { return nil }
        var pos = start
        while pos < text.count {
            let lead = text[pos]
            let needed = firstOf2.contains(lead) ? 1 : firstOf3.contains(lead) ? 2 : firstOf4.contains(lead) ? 3 : 0
            guard needed > 0, pos + needed < text.count else { break }
            var ok = true
            for k in 1...needed where !continuation.contains(text[pos + k]) { ok = false; break }
            guard ok else { break }
            pos += needed + 1
        }
        return pos > start ? pos : nil
    }

    static func search(_ text: CodePoints) -> Bool { text.indices.contains { match(text, at: $0) != nil } }

    /// Non-overlapping matches, left to right (as `re.sub` finds them).
    static func matches(_ text: CodePoints) -> [Range<Int>] {
        var result = [Range<Int>]()
        var i = 0
        while i < text.count {
            if let end = match(text, at: i) {
                result.append(i..<end)
                i = end
            } else {
                i += 1
            }
        }
        return result
    }
}

// MARK: - single-byte codecs

/// A character-map codec: latin-1, the sloppy Windows code pages (holes filled with the Latin-1
/// code point, byte 0x1A standing for U+FFFD), iso-8859-2, macroman, cp437.
struct Charmap: Sendable {
    let name: String
    let sloppy: Bool
    let decode: [UInt32]              // byte -> code point
    private let encoding: [UInt32: UInt8]

    init(name: String, highHalf: [UInt16]) {
        self.name = name
        sloppy = name.hasPrefix("sloppy-")
        var table = (0..<256).map { UInt32($0) }
        for (k, v) in highHalf.enumerated() { table[0x80 + k] = UInt32(v) }
        if sloppy { table[0x1A] = 0xFFFD }
        decode = table
        var inverse = [UInt32: UInt8]()
        for (byte, c) in table.enumerated() where inverse[c] == nil { inverse[c] = UInt8(byte) }
        encoding = inverse
    }

    /// `text.encode(name)`, or nil when a character has no byte (`possible_encoding` is false).
    func encode(_ text: CodePoints) -> [UInt8]? {
        var out = [UInt8]()
        out.reserveCapacity(text.count)
        for c in text {
            guard let b = encoding[c] else { return nil }
            out.append(b)
        }
        return out
    }

    /// ftfy's CHARMAP_ENCODINGS, in the order it tries them.
    static let all: [Charmap] = TextTables.charmapHighHalves.map { Charmap(name: $0.name, highHalf: $0.table) }

    static let sloppyWindows1252: Charmap = all.first { $0.name == "sloppy-windows-1252" }
        ?? Charmap(name: "latin-1", highHalf: (0x80...0xFF).map { UInt16($0) })

    /// `text.encode("latin-1").decode("windows-1252")` (strict: nil on the five undefined bytes).
    static func latin1ToWindows1252(_ text: CodePoints) -> CodePoints? {
        var out = CodePoints()
        out.reserveCapacity(text.count)
        for c in text {
            guard c <= 0xFF, !TextTables.windows1252Holes.contains(UInt8(c)) else { return nil }
            out.append(c == 0x1A ? 0x1A : sloppyWindows1252.decode[Int(c)])
        }
        return out
    }
}

// MARK: - byte patterns

/// An alternation of fixed-length byte-class sequences, matched like Python `re` on bytes.
struct BytePattern: Sendable {
    struct ByteClass: Sendable {
        var member = [Bool](repeating: false, count: 256)
        init(_ ranges: ClosedRange<UInt8>...) {
            for r in ranges { for b in r { member[Int(b)] = true } }
        }
    }

    let alternatives: [[ByteClass]]

    /// Length of the first alternative matching at `pos`.
    func match(_ bytes: [UInt8], at pos: Int) -> Int? {
        for alternative in alternatives where pos + alternative.count <= bytes.count {
            var k = 0
            while k < alternative.count && alternative[k].member[Int(bytes[pos + k])] { k += 1 }
            if k == alternative.count { return k }
        }
        return nil
    }

    func search(_ bytes: [UInt8]) -> Bool { bytes.indices.contains { match(bytes, at: $0) != nil } }

    /// `re.sub` with a function of the matched bytes.
    func substitute(_ bytes: [UInt8], _ replace: (ArraySlice<UInt8>) -> [UInt8]) -> [UInt8] {
        var out = [UInt8]()
        out.reserveCapacity(bytes.count)
        var i = 0
        while i < bytes.count {
            if let n = match(bytes, at: i) {
                out.append(contentsOf: replace(bytes[i..<(i + n)]))
                i += n
            } else {
                out.append(bytes[i])
                i += 1
            }
        }
        return out
    }

    func substitute(_ bytes: [UInt8], with replacement: [UInt8]) -> [UInt8] { substitute(bytes) { _ in replacement } }
}

enum Bytes {
    typealias C = BytePattern.ByteClass
    private static let cont = C(0x80...0xBF)
    private static let contNoA0 = C(0x80...0x84, 0x86...0x9F, 0xA1...0xBF) // [\x80-\x84\x86-\x9f\xa1-\xbf]
    private static let space = C(0x20...0x20)

    /// chardata.ALTERED_UTF8_RE: UTF-8 sequences whose byte A0 became a space.
    static let alteredUTF8 = BytePattern(alternatives: [
        [C(0xC2...0xC3, 0xC5...0xC5, 0xCE...0xCE, 0xD0...0xD0, 0xD9...0xD9), space],
        [C(0xE2...0xE3), space, contNoA0],
        [C(0xE0...0xE3), contNoA0, space],
        [C(0xF0...0xF0), space, cont, cont],
        [C(0xF0...0xF0), cont, space, cont],
        [C(0xF0...0xF0), cont, cont, space],
    ])

    /// chardata.LOSSY_UTF8_RE: UTF-8 sequences with bytes lost to 0x1A (or one "?").
    static let lossyUTF8: BytePattern = {
        let sub = C(0x1A...0x1A), subQ = C(0x1A...0x1A, 0x3F...0x3F)
        let subCont = C(0x1A...0x1A, 0x80...0xBF), subQCont = C(0x1A...0x1A, 0x3F...0x3F, 0x80...0xBF)
        let ed = C(0xED...0xED)
        return BytePattern(alternatives: [
            [C(0xC2...0xDF), sub],
            [C(0xC2...0xC3), C(0x3F...0x3F)],
            [ed, C(0xA0...0xAF), subQ, ed, C(0xB0...0xBF), subQCont],
            [ed, C(0xA0...0xAF), subQCont, ed, C(0xB0...0xBF), subQ],
            [C(0xE0...0xEF), subQ, subCont],
            [C(0xE0...0xEF), subCont, subQ],
            [C(0xF0...0xF4), subQ, subCont, subCont],
            [C(0xF0...0xF4), subCont, subQ, subCont],
            [C(0xF0...0xF4), subCont, subCont, subQ],
            [sub],
        ])
    }()

    /// `fixes.restore_byte_a0`: first A_GRAVE_WORD_RE (`\xc3 (?! |quele|quela|quilo|s )` -> C3 A0 20),
    /// then every ALTERED_UTF8_RE match with its 0x20 bytes turned into 0xA0.
    static func restoreByteA0(_ bytes: [UInt8]) -> [UInt8] {
        var staged = [UInt8]()
        staged.reserveCapacity(bytes.count + 4)
        var i = 0
        while i < bytes.count {
            if bytes[i] == 0xC3 && i + 1 < bytes.count && bytes[i + 1] == 0x20 && !aGraveException(bytes, at: i + 2) {
                staged.append(contentsOf: [0xC3, 0xA0, 0x20])
                i += 2
            } else {
                staged.append(bytes[i])
                i += 1
            }
        }
        return alteredUTF8.substitute(staged) { match in match.map { $0 == 0x20 ? 0xA0 : $0 } }
    }

    private static let aGraveFollowers: [[UInt8]] = [Array(" ".utf8), Array("quele".utf8), Array("quela".utf8),
                                                     Array("quilo".utf8), Array("s ".utf8)]

    private static func aGraveException(_ bytes: [UInt8], at pos: Int) -> Bool {
        aGraveFollowers.contains { f in pos + f.count <= bytes.count && bytes[pos..<(pos + f.count)].elementsEqual(f) }
    }
}

// MARK: - UTF-8 decoding

enum UTF8Decoding {
    /// CPython's strict UTF-8 decoder: nil on any ill-formed sequence (overlong forms, surrogates,
    /// code points above U+10FFFF, truncation).
    static func decode(_ bytes: ArraySlice<UInt8>) -> CodePoints? {
        var out = CodePoints()
        out.reserveCapacity(bytes.count)
        var i = bytes.startIndex
        let end = bytes.endIndex
        func cont(_ k: Int, _ lo: UInt8 = 0x80, _ hi: UInt8 = 0xBF) -> UInt32? {
            k < end && bytes[k] >= lo && bytes[k] <= hi ? UInt32(bytes[k] & 0x3F) : nil
        }
        while i < end {
            let b = bytes[i]
            switch b {
            case 0x00...0x7F:
                out.append(UInt32(b)); i += 1
            case 0xC2...0xDF:
                guard let c1 = cont(i + 1) else { return nil }
                out.append(UInt32(b & 0x1F) << 6 | c1); i += 2
            case 0xE0...0xEF:
                let (lo, hi): (UInt8, UInt8) = b == 0xE0 ? (0xA0, 0xBF) : b == 0xED ? (0x80, 0x9F) : (0x80, 0xBF)
                guard let c1 = cont(i + 1, lo, hi), let c2 = cont(i + 2) else { return nil }
                out.append(UInt32(b & 0x0F) << 12 | c1 << 6 | c2); i += 3
            case 0xF0...0xF4:
                let (lo, hi): (UInt8, UInt8) = b == 0xF0 ? (0x90, 0xBF) : b == 0xF4 ? (0x80, 0x8F) : (0x80, 0xBF)
                guard let c1 = cont(i + 1, lo, hi), let c2 = cont(i + 2), let c3 = cont(i + 3) else { return nil }
                out.append(UInt32(b & 0x07) << 18 | c1 << 12 | c2 << 6 | c3); i += 4
            default:
                return nil
            }
        }
        return out
    }

    /// ftfy's "utf-8-variants" codec (`bytes.decode("utf-8-variants")`): strict UTF-8, except that
    /// CESU-8 surrogate pairs (ED A0-AF 80-BF ED B0-BF 80-BF) decode to the supplementary code point
    /// and C0 80 to U+0000. Its regular expressions use `$`, which in Python also matches before a
    /// final "\n"; that quirk is kept (e.g. a final C0 0A decodes to U+0000).
    static func decodeVariants(_ bytes: [UInt8]) -> CodePoints? {
        let n = bytes.count
        func dollar(_ q: Int) -> Bool { q == n || (q == n - 1 && bytes[q] == 0x0A) }
        /// Matches `(x|$)` groups from `q`; returns the position after them or nil.
        func groups(_ q: Int, _ classes: [ClosedRange<UInt8>]) -> Int? {
            var q = q
            for r in classes {
                if q < n && r.contains(bytes[q]) { q += 1 } else if !dollar(q) { return nil }
            }
            return q
        }
        func special(_ p: Int) -> Bool { // SPECIAL_BYTES_RE = NULL_EXPR | CESU8_EXPR | SURROGATE_EXPR
            if bytes[p] == 0xC0 { return groups(p + 1, [0x80...0x80]) != nil }
            if bytes[p] == 0xED { return groups(p + 1, [0xA0...0xBF, 0x80...0xBF]) != nil } // covers CESU8_EXPR
            return false
        }
        var out = CodePoints()
        var pos = 0
        while pos < n {
            guard let cut = (pos..<n).first(where: special) else {
                guard let rest = decode(bytes[pos...]) else { return nil }
                out.append(contentsOf: rest)
                break
            }
            if cut > pos {
                guard let head = decode(bytes[pos..<cut]) else { return nil }
                out.append(contentsOf: head)
                pos = cut
                continue
            }
            if bytes[pos] == 0xC0 {
                guard n - pos > 1 else { return nil } // a lone final C0: the strict decoder fails
                out.append(0)
                pos += 2
            } else {
                // A surrogate lead: only a complete CESU-8 pair decodes; anything else is an error
                // in the strict decoder the codec falls back to.
                guard n - pos >= 6, bytes[pos] == 0xED,
                      groups(pos + 1, [0xA0...0xAF, 0x80...0xBF, 0xED...0xED, 0xB0...0xBF, 0x80...0xBF]) != nil
                else { return nil }
                let b = bytes[pos..<(pos + 6)].map(UInt32.init)
                let (b1, b2, b4, b5) = (b[1], b[2], b[4], b[5])
                out.append(((b1 & 0x0F) << 16) + ((b2 & 0x3F) << 10) + ((b4 & 0x0F) << 6) + (b5 & 0x3F) + 0x10000)
                pos += 6
            }
        }
        return out
    }
}
