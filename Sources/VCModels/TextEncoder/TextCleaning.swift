// Ports the text cleanup of open_clip's SimpleTokenizer (mlfoundations/open_clip v2.22.0,
// src/open_clip/tokenizer.py: basic_clean, whitespace_clean and the `.lower()` in encode) together
// with the Python behaviour it relies on: CPython 3.11's `html.unescape` (Lib/html/__init__.py),
// `str.strip`, `str.lower` (full case mapping with the Final_Sigma rule) and the `regex` module's
// `\s`. The ftfy part (`ftfy.fix_text`) is in FixText.swift.
//
// Text is handled the way Python sees it: as an array of code points (`CodePoints`), never as
// Swift `String`s, whose comparison and hashing use canonical equivalence ("é" == "e\u{301}").
import Foundation

/// A Python `str`: a sequence of Unicode code points.
typealias CodePoints = [UInt32]

extension Array where Element == UInt32 {
    init(codePointsOf text: String) { self = text.unicodeScalars.map(\.value) }

    var string: String {
        var view = String.UnicodeScalarView()
        for c in self { if let s = Unicode.Scalar(c) { view.append(s) } }
        return String(view)
    }
}

/// open_clip's prompt cleanup, `whitespace_clean(basic_clean(text)).lower()`.
public enum TextCleaning {
    /// The text SimpleTokenizer.encode splits into words: ftfy.fix_text, html.unescape twice,
    /// strip, whitespace runs -> one space, strip, lowercase.
    public static func clean(_ text: String) -> String { clean(CodePoints(codePointsOf: text)).string }

    /// `ftfy.fix_text(text)` with ftfy's default configuration (see FixText.swift for what is ported).
    public static func fixText(_ text: String) -> String { FixText.fixText(CodePoints(codePointsOf: text)).string }

    /// Python's `html.unescape(text)`.
    public static func htmlUnescape(_ text: String) -> String { PyHTML.unescape(CodePoints(codePointsOf: text)).string }

    static func clean(_ text: CodePoints) -> CodePoints {
        // basic_clean
        var t = FixText.fixText(text)
        t = PyHTML.unescape(PyHTML.unescape(t))
        t = PyStr.strip(t)
        // whitespace_clean: regex.sub(r'\s+', ' ', text).strip()
        t = PyStr.collapseWhitespace(t)
        t = PyStr.strip(t)
        return PyStr.lower(t)
    }
}

/// Python `str` operations with CPython 3.11 semantics.
enum PyStr {
    /// `str.isspace()` (Py_UNICODE_ISSPACE): bidi classes WS/B/S or category Zs. Used by `strip`.
    static func isSpace(_ c: UInt32) -> Bool {
        switch c {
        case 0x09...0x0D, 0x1C...0x1F, 0x20, 0x85, 0xA0, 0x1680, 0x2000...0x200A, 0x2028, 0x2029,
             0x202F, 0x205F, 0x3000: return true
        default: return false
        }
    }

    /// `\s` of the `regex` module (the White_Space property: no U+001C...U+001F, unlike isspace).
    static func isRegexSpace(_ c: UInt32) -> Bool {
        switch c {
        case 0x09...0x0D, 0x20, 0x85, 0xA0, 0x1680, 0x2000...0x200A, 0x2028, 0x2029, 0x202F, 0x205F,
             0x3000: return true
        default: return false
        }
    }

    static func strip(_ s: CodePoints) -> CodePoints {
        guard let first = s.firstIndex(where: { !isSpace($0) }),
              let last = s.lastIndex(where: { !isSpace($0) }) else { return [] }
        return first == 0 && last == s.count - 1 ? s : Array(s[first...last])
    }

    /// `regex.sub(r'\s+', ' ', s)`.
    static func collapseWhitespace(_ s: CodePoints) -> CodePoints {
        var out = CodePoints()
        out.reserveCapacity(s.count)
        var inRun = false
        for c in s {
            if isRegexSpace(c) {
                if !inRun { out.append(0x20) }
                inRun = true
            } else {
                out.append(c)
                inRun = false
            }
        }
        return out
    }

    /// `str.lower()`: the full lowercase mapping of each code point, except U+03A3 (capital sigma),
    /// which becomes final sigma U+03C2 in the Final_Sigma context (CPython's handle_capital_sigma).
    static func lower(_ s: CodePoints) -> CodePoints {
        var out = CodePoints()
        out.reserveCapacity(s.count)
        for i in s.indices {
            let c = s[i]
            if c < 0x80 {
                out.append(c >= 0x41 && c <= 0x5A ? c + 0x20 : c)
            } else if c == 0x3A3 {
                out.append(isFinalSigma(s, at: i) ? 0x3C2 : 0x3C3)
            } else if let scalar = Unicode.Scalar(c) {
                for m in scalar.properties.lowercaseMapping.unicodeScalars { out.append(m.value) }
            } else {
                out.append(c)
            }
        }
        return out
    }

    /// `str.upper()`: the full uppercase mapping of each code point (no context rules in Python).
    static func upper(_ s: CodePoints) -> CodePoints {
        var out = CodePoints()
        for c in s {
            if c < 0x80 {
                out.append(c >= 0x61 && c <= 0x7A ? c - 0x20 : c)
            } else if let scalar = Unicode.Scalar(c) {
                for m in scalar.properties.uppercaseMapping.unicodeScalars { out.append(m.value) }
            } else {
                out.append(c)
            }
        }
        return out
    }

    /// `\p{cased} \p{case-ignorable}* U+03A3 !(\p{case-ignorable}* \p{cased})`, scanned as CPython does.
    private static func isFinalSigma(_ s: CodePoints, at i: Int) -> Bool {
        var j = i - 1
        while j >= 0 && isCaseIgnorable(s[j]) { j -= 1 }
        guard j >= 0 && isCased(s[j]) else { return false }
        var k = i + 1
        while k < s.count && isCaseIgnorable(s[k]) { k += 1 }
        return k == s.count || !isCased(s[k])
    }

    private static func isCased(_ c: UInt32) -> Bool { Unicode.Scalar(c)?.properties.isCased ?? false }
    private static func isCaseIgnorable(_ c: UInt32) -> Bool { Unicode.Scalar(c)?.properties.isCaseIgnorable ?? false }

    /// `str.isalnum()` for one code point (letters L*, or a numeric value), as `\w` uses it.
    static func isAlnum(_ c: UInt32) -> Bool {
        if c < 0x80 {
            return (c >= 0x30 && c <= 0x39) || (c >= 0x41 && c <= 0x5A) || (c >= 0x61 && c <= 0x7A)
        }
        guard let p = Unicode.Scalar(c)?.properties else { return false }
        switch p.generalCategory {
        case .uppercaseLetter, .lowercaseLetter, .titlecaseLetter, .modifierLetter, .otherLetter: return true
        default: return p.numericType != nil
        }
    }

    /// `\d` of Python's `re` on str patterns: decimal digits (Numeric_Type=Decimal).
    static func isDecimal(_ c: UInt32) -> Bool {
        if c < 0x80 { return c >= 0x30 && c <= 0x39 }
        return Unicode.Scalar(c)?.properties.numericType == .decimal
    }

    static func isASCIIAlnum(_ c: UInt32) -> Bool {
        (c >= 0x30 && c <= 0x39) || (c >= 0x41 && c <= 0x5A) || (c >= 0x61 && c <= 0x7A)
    }

    /// A key for dictionaries of ASCII names: Swift `String` keys would compare canonically, and
    /// e.g. U+212A KELVIN SIGN is canonically equivalent to "K". Nil when `s` is not all ASCII.
    static func asciiKey<C: Collection>(_ s: C) -> [UInt8]? where C.Element == UInt32 {
        var key = [UInt8]()
        key.reserveCapacity(s.count)
        for c in s {
            guard c < 0x80 else { return nil }
            key.append(UInt8(c))
        }
        return key
    }
}

/// CPython 3.11 `html.unescape` and the HTML5 named character references (`html.entities.html5`).
enum PyHTML {
    /// name (with or without the trailing ";", as in Python's table) -> replacement.
    static let html5: [[UInt8]: CodePoints] = {
        var table = [[UInt8]: CodePoints]()
        for line in TextTables.html5Entities.split(separator: "\n") {
            let parts = line.split(separator: " ")
            guard parts.count == 2 else { continue }
            let value = parts[1].split(separator: ",").compactMap { UInt32($0, radix: 16) }
            table[Array(parts[0].utf8)] = value
        }
        return table
    }()

    /// Numeric references the HTML5 parser maps elsewhere (Python's `_invalid_charrefs`).
    private static let invalidCharrefs: [UInt32: UInt32] = [
        0x00: 0xFFFD, 0x0D: 0x0D, 0x80: 0x20AC, 0x81: 0x81, 0x82: 0x201A, 0x83: 0x0192, 0x84: 0x201E,
        0x85: 0x2026, 0x86: 0x2020, 0x87: 0x2021, 0x88: 0x02C6, 0x89: 0x2030, 0x8A: 0x0160, 0x8B: 0x2039,
        0x8C: 0x0152, 0x8D: 0x8D, 0x8E: 0x017D, 0x8F: 0x8F, 0x90: 0x90, 0x91: 0x2018, 0x92: 0x2019,
        0x93: 0x201C, 0x94: 0x201D, 0x95: 0x2022, 0x96: 0x2013, 0x97: 0x2014, 0x98: 0x02DC, 0x99: 0x2122,
        0x9A: 0x0161, 0x9B: 0x203A, 0x9C: 0x0153, 0x9D: 0x9D, 0x9E: 0x017E, 0x9F: 0x0178,
    ]

    /// Python's `_invalid_codepoints`: numeric references that decode to nothing.
    private static func isInvalidCodepoint(_ n: UInt32) -> Bool {
        switch n {
        case 0x1...0x8, 0xB, 0xE...0x1F, 0x7F...0x9F, 0xFDD0...0xFDEF: return true
        default: return n <= 0x10FFFF && (n & 0xFFFE) == 0xFFFE
        }
    }

    /// `html.unescape(s)`: replaces every match of
    /// `&(#[0-9]+;?|#[xX][0-9a-fA-F]+;?|[^\t\n\f <&#;]{1,32};?)` like `_replace_charref`.
    static func unescape(_ s: CodePoints) -> CodePoints {
        guard s.contains(0x26) else { return s }
        var out = CodePoints()
        out.reserveCapacity(s.count)
        var i = 0
        while i < s.count {
            if s[i] == 0x26, let (length, replacement) = charref(s, at: i) {
                out.append(contentsOf: replacement)
                i += length
            } else {
                out.append(s[i])
                i += 1
            }
        }
        return out
    }

    /// The match of the character-reference pattern at `i` (an "&") and its replacement.
    private static func charref(_ s: CodePoints, at i: Int) -> (Int, CodePoints)? {
        let n = s.count
        let j = i + 1
        guard j < n else { return nil }
        if s[j] == 0x23 { // "#": only the two numeric alternatives can match
            var k = j + 1
            var radix: UInt32 = 10
            if k < n && (s[k] == 0x78 || s[k] == 0x58) && k + 1 < n && hexValue(s[k + 1]) != nil {
                radix = 16
                k += 1
            } else if !(k < n && s[k] >= 0x30 && s[k] <= 0x39) {
                return nil
            }
            var value: UInt32 = 0
            while k < n, let d = (radix == 16 ? hexValue(s[k]) : decimalValue(s[k])) {
                value = min(value &* radix &+ d, 0x110000) // saturates past the last code point
                k += 1
            }
            if k < n && s[k] == 0x3B { k += 1 }
            return (k - i, numeric(value))
        }
        var k = j
        while k < n && k - j < 32 && !isNameTerminator(s[k]) { k += 1 }
        guard k > j else { return nil }
        if k < n && s[k] == 0x3B { k += 1 }
        return (k - i, named(s[j..<k]))
    }

    private static func isNameTerminator(_ c: UInt32) -> Bool {
        c == 0x09 || c == 0x0A || c == 0x0C || c == 0x20 || c == 0x3C || c == 0x26 || c == 0x23 || c == 0x3B
    }

    private static func decimalValue(_ c: UInt32) -> UInt32? { c >= 0x30 && c <= 0x39 ? c - 0x30 : nil }

    private static func hexValue(_ c: UInt32) -> UInt32? {
        switch c {
        case 0x30...0x39: return c - 0x30
        case 0x41...0x46: return c - 0x41 + 10
        case 0x61...0x66: return c - 0x61 + 10
        default: return nil
        }
    }

    private static func numeric(_ n: UInt32) -> CodePoints {
        if let r = invalidCharrefs[n] { return [r] }
        if (0xD800...0xDFFF).contains(n) || n > 0x10FFFF { return [0xFFFD] }
        if isInvalidCodepoint(n) { return [] }
        return [n]
    }

    /// A named reference: the whole name, else its longest known prefix (at least 2 characters,
    /// which only the legacy names without ";" can be), else the text unchanged.
    private static func named(_ name: ArraySlice<UInt32>) -> CodePoints {
        if let key = PyStr.asciiKey(name), let value = html5[key] { return value }
        var x = name.count - 1
        while x > 1 {
            let prefix = name.prefix(x)
            if let key = PyStr.asciiKey(prefix), let value = html5[key] { return value + name.dropFirst(x) }
            x -= 1
        }
        return [0x26] + name
    }
}
