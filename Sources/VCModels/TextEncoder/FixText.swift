// Ports `ftfy.fix_text` (rspeer/python-ftfy v6.3.1 = commit 5340af6, as released on PyPI: ftfy/__init__.py,
// ftfy/fixes.py, ftfy/chardata.py, ftfy/badness.py, ftfy/bad_codecs/sloppy.py and
// ftfy/bad_codecs/utf8_variants.py) with its default TextFixerConfig, which is how open_clip 2.22.0
// calls it (`ftfy.fix_text(text)` in basic_clean). open_clip does not pin ftfy; 6.3.1 is the release
// pip installs with it today (the golden generator does not record its ftfy version; the golden
// prompts come out the same with 6.3.1). Since 6.1 the releases differ only in the badness
// heuristic's character classes and the macroman exception of restore_byte_a0.
//
// Ported, in fix_text's order, for every line (segment) of the text and repeated until nothing
// changes:
//   - unescape_html ("auto": off from the first line that contains "<" on), with ftfy's entity
//     table (HTML5 names ending in ";" plus the upper-case spellings it accepts, e.g. &EACUTE;);
//   - fix_encoding: the mojibake repair: badness heuristic (BADNESS_RE), re-encoding in latin-1,
//     sloppy-windows-1252/1251/1250/1253/1254/1257, iso-8859-2, macroman and cp437 and decoding
//     as UTF-8 (or ftfy's utf-8-variants codec: CESU-8 pairs, Java's C0 80), restore_byte_a0,
//     replace_lossy_sequences, decode_inconsistent_utf8 (UTF8_DETECTOR_RE), the latin-1 ->
//     windows-1252 step and fix_c1_controls;
//   - fix_c1_controls, fix_latin_ligatures, fix_character_width, uncurl_quotes, fix_line_breaks,
//     remove_terminal_escapes, remove_control_chars, NFC normalisation.
// Not ported:
//   - fix_surrogates: a Swift String cannot hold surrogate code points, so there is nothing to fix;
//   - explanations (`explain`), other configurations, and the functions fix_text does not call
//     (decode_escapes, remove_bom, guess_bytes, fix_file, ...);
//   - Unicode data versions: character properties and NFC come from the Swift runtime (Unicode 17
//     in Swift 6.3) where Python 3.11 uses Unicode 14; only characters assigned since differ.
// One deliberate difference: the fixing loops stop after `maxRounds` rounds instead of looping
// for ever (ftfy has no bound; no real text needs more than a few rounds).
import Foundation

enum FixText {
    /// ftfy's `max_decode_length`: longer lines are fixed in pieces of this many code points.
    static let maxDecodeLength = 1_000_000
    /// Bound on the fix/re-fix loops (see the header).
    static let maxRounds = 64

    /// `ftfy.fix_text(text)` with the default configuration.
    static func fixText(_ text: CodePoints) -> CodePoints {
        var unescapeHTML = true // "auto"
        var out = CodePoints()
        out.reserveCapacity(text.count)
        var pos = 0
        while pos < text.count {
            var end = (text[pos...].firstIndex(of: 0x0A) ?? (text.count - 1)) + 1
            if end - pos > maxDecodeLength { end = pos + maxDecodeLength }
            let segment = Array(text[pos..<end])
            // "auto" turns off for this segment and, as fix_text rebinds its config, all later ones.
            if unescapeHTML && segment.contains(0x3C) { unescapeHTML = false }
            out.append(contentsOf: fixSegment(segment, unescapeHTML: unescapeHTML))
            pos = end
        }
        return out
    }

    /// `fix_and_explain(segment, config)` without the explanation.
    static func fixSegment(_ segment: CodePoints, unescapeHTML: Bool) -> CodePoints {
        var text = segment
        for _ in 0..<maxRounds {
            let original = text
            if unescapeHTML { text = unescapeHTMLEntities(text) }
            text = fixEncoding(text)
            text = fixC1Controls(text)
            text = fixLatinLigatures(text)
            text = fixCharacterWidth(text)
            text = uncurlQuotes(text)
            text = fixLineBreaks(text)
            text = removeTerminalEscapes(text)
            text = removeControlChars(text)
            text = nfc(text)
            if text == original { break }
        }
        return text
    }

    // MARK: - unescape_html

    /// ftfy's `HTML_ENTITIES`: "&name;" for every HTML5 name ending in ";", plus "&NAME;" ->
    /// upper-cased replacement for all-lower-case names whose upper-case spelling Python's
    /// html.unescape leaves alone.
    static let entities: [[UInt8]: CodePoints] = {
        var table = [[UInt8]: CodePoints]()
        for line in TextTables.html5Entities.split(separator: "\n") {
            let parts = line.split(separator: " ")
            guard parts.count == 2, parts[0].hasSuffix(";"),
                  let value = PyHTML.html5[Array(parts[0].utf8)] else { continue }
            let name = Array(parts[0].utf8)
            table[[0x26] + name] = value
            if name == name.map({ $0 >= 0x41 && $0 <= 0x5A ? $0 + 0x20 : $0 }) {
                let upper: [UInt8] = [0x26] + name.map { $0 >= 0x61 && $0 <= 0x7A ? $0 - 0x20 : $0 }
                let probe = upper.map(UInt32.init)
                if PyHTML.unescape(probe) == probe { table[upper] = PyStr.upper(value) }
            }
        }
        return table
    }()

    /// `fixes.unescape_html`: replaces matches of `&#?[0-9A-Za-z]{1,24};` found in `entities`, and
    /// numeric references that html.unescape decodes completely.
    static func unescapeHTMLEntities(_ s: CodePoints) -> CodePoints {
        guard s.contains(0x26) else { return s }
        var out = CodePoints()
        out.reserveCapacity(s.count)
        var i = 0
        while i < s.count {
            guard s[i] == 0x26 else { out.append(s[i]); i += 1; continue }
            let hash = i + 1 < s.count && s[i + 1] == 0x23
            let start = hash ? i + 2 : i + 1
            var k = start
            while k < s.count && k - start <= 24 && PyStr.isASCIIAlnum(s[k]) { k += 1 }
            let run = k - start
            guard run >= 1 && run <= 24 && k < s.count && s[k] == 0x3B else { out.append(s[i]); i += 1; continue }
            let match = Array(s[i...k])
            if let key = PyStr.asciiKey(match), let value = entities[key] {
                out.append(contentsOf: value)
            } else if hash {
                let decoded = PyHTML.unescape(match)
                out.append(contentsOf: decoded.contains(0x3B) ? match : decoded)
            } else {
                out.append(contentsOf: match)
            }
            i = k + 1
        }
        return out
    }

    // MARK: - fix_encoding

    /// `ftfy.fix_encoding`: one-step fixes until the text stops changing.
    static func fixEncoding(_ text: CodePoints) -> CodePoints {
        var text = text
        for _ in 0..<maxRounds {
            let previous = text
            text = fixEncodingOneStep(text)
            if text == previous { break }
        }
        return text
    }

    /// `_fix_encoding_one_step_and_explain`.
    static func fixEncodingOneStep(_ text: CodePoints) -> CodePoints {
        if text.isEmpty || text.allSatisfy({ $0 < 0x80 }) || !Badness.isBad(text) { return text }
        var latin1Possible = false
        for codec in Charmap.all {
            guard var bytes = codec.encode(text) else { continue } // chardata.possible_encoding
            if codec.name == "latin-1" { latin1Possible = true }
            if codec.name != "macroman" && Bytes.alteredUTF8.search(bytes) {
                bytes = Bytes.restoreByteA0(bytes)
            }
            if codec.sloppy { bytes = Bytes.lossyUTF8.substitute(bytes, with: [0xEF, 0xBF, 0xBD]) }
            let decoded = bytes.contains(0xED) || bytes.contains(0xC0)
                ? UTF8Decoding.decodeVariants(bytes) : UTF8Decoding.decode(bytes[...])
            if let decoded { return decoded }
        }
        if UTF8Detector.search(text) {
            let fixed = decodeInconsistentUTF8(text)
            if fixed != text { return fixed }
        }
        // ftfy asks whether "windows-1252" is among the possible encodings, but the list only
        // ever holds "sloppy-windows-1252", so latin-1 text always goes on to this re-decoding.
        if latin1Possible, let fixed = Charmap.latin1ToWindows1252(text), fixed != text { return fixed }
        if text.contains(where: { $0 >= 0x80 && $0 <= 0x9F }) { return fixC1Controls(text) }
        return text
    }

    /// `fixes.decode_inconsistent_utf8`: fixes each UTF8_DETECTOR_RE match that is shorter than the
    /// text and looks bad on its own.
    static func decodeInconsistentUTF8(_ text: CodePoints) -> CodePoints {
        var out = CodePoints()
        var last = 0
        for range in UTF8Detector.matches(text) {
            out.append(contentsOf: text[last..<range.lowerBound])
            let piece = Array(text[range])
            out.append(contentsOf: piece.count < text.count && Badness.isBad(piece) ? fixEncoding(piece) : piece)
            last = range.upperBound
        }
        out.append(contentsOf: text[last...])
        return out
    }

    // MARK: - character fixers

    /// `fixes.fix_c1_controls`: U+0080...U+009F read as sloppy-windows-1252 bytes.
    static func fixC1Controls(_ s: CodePoints) -> CodePoints {
        guard s.contains(where: { $0 >= 0x80 && $0 <= 0x9F }) else { return s }
        return s.map { $0 >= 0x80 && $0 <= 0x9F ? Charmap.sloppyWindows1252.decode[Int($0)] : $0 }
    }

    /// `chardata.LIGATURES`.
    private static let ligatures: [UInt32: CodePoints] = [
        0x0132: [0x49, 0x4A], 0x0133: [0x69, 0x6A], 0x0149: [0x02BC, 0x6E],
        0x01F1: [0x44, 0x5A], 0x01F2: [0x44, 0x7A], 0x01F3: [0x64, 0x7A],
        0x01C4: [0x44, 0x17D], 0x01C5: [0x44, 0x17E], 0x01C6: [0x64, 0x17E],
        0x01C7: [0x4C, 0x4A], 0x01C8: [0x4C, 0x6A], 0x01C9: [0x6C, 0x6A],
        0x01CA: [0x4E, 0x4A], 0x01CB: [0x4E, 0x6A], 0x01CC: [0x6E, 0x6A],
        0xFB00: [0x66, 0x66], 0xFB01: [0x66, 0x69], 0xFB02: [0x66, 0x6C], 0xFB03: [0x66, 0x66, 0x69],
        0xFB04: [0x66, 0x66, 0x6C], 0xFB05: [0x17F, 0x74], 0xFB06: [0x73, 0x74],
    ]

    static func fixLatinLigatures(_ s: CodePoints) -> CodePoints { translate(s, ligatures) }

    private static let widthMap: [UInt32: CodePoints] = {
        var map = [UInt32: CodePoints]()
        for (from, to) in TextTables.widthMap { map[from] = to }
        return map
    }()

    /// `fixes.fix_character_width` (U+3000 and the halfwidth/fullwidth forms).
    static func fixCharacterWidth(_ s: CodePoints) -> CodePoints { translate(s, widthMap) }

    private static func translate(_ s: CodePoints, _ table: [UInt32: CodePoints]) -> CodePoints {
        guard s.contains(where: { table[$0] != nil }) else { return s }
        var out = CodePoints()
        out.reserveCapacity(s.count)
        for c in s {
            if let r = table[c] { out.append(contentsOf: r) } else { out.append(c) }
        }
        return out
    }

    /// `fixes.uncurl_quotes`: [U+02BC U+2018-U+201B] -> ', [U+201C-U+201F] -> ".
    static func uncurlQuotes(_ s: CodePoints) -> CodePoints {
        s.map { c in
            switch c {
            case 0x02BC, 0x2018...0x201B: return 0x27
            case 0x201C...0x201F: return 0x22
            default: return c
            }
        }
    }

    /// `fixes.fix_line_breaks`: CRLF, CR, U+2028, U+2029 and U+0085 -> LF.
    static func fixLineBreaks(_ s: CodePoints) -> CodePoints {
        var out = CodePoints()
        out.reserveCapacity(s.count)
        var i = 0
        while i < s.count {
            switch s[i] {
            case 0x0D:
                out.append(0x0A)
                if i + 1 < s.count && s[i + 1] == 0x0A { i += 1 }
            case 0x2028, 0x2029, 0x85: out.append(0x0A)
            default: out.append(s[i])
            }
            i += 1
        }
        return out
    }

    /// `fixes.remove_terminal_escapes`: removes matches of `\x1b\[((?:\d|;)*)([a-zA-Z])`.
    static func removeTerminalEscapes(_ s: CodePoints) -> CodePoints {
        guard s.contains(0x1B) else { return s }
        var out = CodePoints()
        var i = 0
        while i < s.count {
            if s[i] == 0x1B && i + 1 < s.count && s[i + 1] == 0x5B {
                var k = i + 2
                while k < s.count && (s[k] == 0x3B || PyStr.isDecimal(s[k])) { k += 1 }
                if k < s.count, (s[k] >= 0x41 && s[k] <= 0x5A) || (s[k] >= 0x61 && s[k] <= 0x7A) {
                    i = k + 1
                    continue
                }
            }
            out.append(s[i])
            i += 1
        }
        return out
    }

    /// `fixes.remove_control_chars` (chardata.CONTROL_CHARS).
    static func removeControlChars(_ s: CodePoints) -> CodePoints {
        s.filter { c in
            switch c {
            case 0x00...0x08, 0x0B, 0x0E...0x1F, 0x7F, 0x206A...0x206F, 0xFEFF, 0xFFF9...0xFFFC: return false
            default: return true
            }
        }
    }

    /// `unicodedata.normalize("NFC", s)`.
    static func nfc(_ s: CodePoints) -> CodePoints {
        // Below U+0300 nothing decomposes and no two code points compose (checked exhaustively
        // against Python's unicodedata for all pairs), so such text is already NFC.
        if s.allSatisfy({ $0 < 0x300 }) { return s }
        return CodePoints(codePointsOf: s.string.precomposedStringWithCanonicalMapping)
    }
}
