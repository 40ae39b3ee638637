/// A small strict JSON parser for file headers (safetensors), written for this project.
///
/// Foundation's `JSONSerialization` accepts duplicate keys (keeping one silently) and turns `16.0`
/// into an integral `NSNumber`; a header reader built on it would accept files the reference
/// implementation (huggingface/safetensors, serde_json) rejects. This parser:
/// - requires valid UTF-8 (reports the offset of the first bad byte),
/// - follows RFC 8259 exactly (no trailing commas, no leading zeros, no control characters in
///   strings, no lone surrogates in `\u` escapes),
/// - reports duplicate keys in any object,
/// - keeps numbers as their literal text so callers can insist on integers,
/// - keeps object members in file order with their byte offsets,
/// - limits nesting depth (serde_json's limit is 128) so hostile input cannot exhaust the stack.
public indirect enum JSONValue: Sendable, Equatable {
    case object([JSONMember])
    case array([JSONValue])
    case string(String)
    /// The number's literal text, e.g. `"16"`, `"-1"`, `"16.0"`, `"1e3"`.
    case number(String)
    case bool(Bool)
    case null

    /// The member `key` of an object (members are unique once parsed).
    public subscript(key: String) -> JSONValue? {
        guard case .object(let members) = self else { return nil }
        return members.first(where: { $0.key == key })?.value
    }

    /// A short name of the kind of value, for error messages.
    public var kindName: String {
        switch self {
        case .object: return "an object"
        case .array: return "an array"
        case .string: return "a string"
        case .number(let t): return "the number \(t)"
        case .bool(let b): return b ? "true" : "false"
        case .null: return "null"
        }
    }
}

/// One member of a JSON object with the byte offset of its key (relative to what the parser was
/// given plus `baseOffset`).
public struct JSONMember: Sendable, Equatable {
    public var key: String
    public var value: JSONValue
    public var keyOffset: Int
    public var valueOffset: Int
}

/// A JSON syntax error at a byte offset.
public struct JSONSyntaxError: Error, Equatable, CustomStringConvertible {
    public var offset: Int
    public var message: String
    public var description: String { "at byte \(offset): \(message)" }
}

public enum StrictJSON {
    /// The maximum nesting of arrays and objects.
    public static let maxDepth = 128

    /// Parses `bytes` (one JSON value with optional whitespace around it). Offsets in errors and
    /// members are `baseOffset + index into bytes`.
    public static func parse(_ bytes: [UInt8], baseOffset: Int = 0) throws(JSONSyntaxError) -> JSONValue {
        if let bad = firstInvalidUTF8(bytes) {
            throw JSONSyntaxError(offset: baseOffset + bad, message: "not valid UTF-8 (byte 0x\(hex(bytes[bad])))")
        }
        var p = Parser(bytes: bytes, base: baseOffset)
        p.skipWhitespace()
        let v = try p.value(depth: 0)
        p.skipWhitespace()
        if p.i < bytes.count {
            throw p.error("unexpected \(p.describe(bytes[p.i])) after the JSON value")
        }
        return v
    }

    /// The index where the first invalid UTF-8 sequence starts (overlongs,
    /// surrogates and values above U+10FFFF are invalid), or nil.
    public static func firstInvalidUTF8(_ b: [UInt8]) -> Int? {
        var i = 0
        let n = b.count
        while i < n {
            let c = b[i]
            if c < 0x80 { i += 1; continue }
            var need = 0
            var lo: UInt8 = 0x80, hi: UInt8 = 0xBF
            switch c {
            case 0xC2...0xDF: need = 1
            case 0xE0: need = 2; lo = 0xA0
            case 0xE1...0xEC, 0xEE...0xEF: need = 2
            case 0xED: need = 2; hi = 0x9F
            case 0xF0: need = 3; lo = 0x90
            case 0xF1...0xF3: need = 3
            case 0xF4: need = 3; hi = 0x8F
            default: return i
            }
            guard i + need < n else { return i }
            for k in 1...need {
                let x = b[i + k]
                let (l, h) = k == 1 ? (lo, hi) : (UInt8(0x80), UInt8(0xBF))
                if x < l || x > h { return i }
            }
            i += need + 1
        }
        return nil
    }

    static func hex(_ b: UInt8) -> String {
        let s = String(b, radix: 16, uppercase: true)
        return s.count == 1 ? "0" + s : s
    }

    private struct Parser {
        let bytes: [UInt8]
        let base: Int
        var i = 0

        init(bytes: [UInt8], base: Int) { self.bytes = bytes; self.base = base }

        func error(_ m: String, at: Int? = nil) -> JSONSyntaxError {
            JSONSyntaxError(offset: base + (at ?? i), message: m)
        }

        func describe(_ c: UInt8) -> String {
            if c >= 0x21 && c < 0x7F { return "'\(Character(Unicode.Scalar(c)))'" }
            return "byte 0x\(StrictJSON.hex(c))"
        }

        mutating func skipWhitespace() {
            while i < bytes.count, bytes[i] == 0x20 || bytes[i] == 0x0A || bytes[i] == 0x0D || bytes[i] == 0x09 { i += 1 }
        }

        mutating func value(depth: Int) throws(JSONSyntaxError) -> JSONValue {
            guard i < bytes.count else { throw error("unexpected end of the JSON text") }
            switch bytes[i] {
            case UInt8(ascii: "{"): return try object(depth: depth + 1)
            case UInt8(ascii: "["): return try array(depth: depth + 1)
            case UInt8(ascii: "\""): return .string(try string())
            case UInt8(ascii: "t"): try literal("true"); return .bool(true)
            case UInt8(ascii: "f"): try literal("false"); return .bool(false)
            case UInt8(ascii: "n"): try literal("null"); return .null
            case UInt8(ascii: "-"), UInt8(ascii: "0")...UInt8(ascii: "9"): return .number(try number())
            default: throw error("unexpected \(describe(bytes[i])), expected a JSON value")
            }
        }

        mutating func literal(_ word: String) throws(JSONSyntaxError) {
            let w = Array(word.utf8)
            guard i + w.count <= bytes.count, Array(bytes[i..<(i + w.count)]) == w else {
                throw error("invalid literal, expected \(word)")
            }
            i += w.count
        }

        mutating func object(depth: Int) throws(JSONSyntaxError) -> JSONValue {
            guard depth <= StrictJSON.maxDepth else { throw error("nesting deeper than \(StrictJSON.maxDepth)") }
            i += 1 // {
            var members: [JSONMember] = []
            var seen: [String: Int] = [:]
            skipWhitespace()
            if i < bytes.count, bytes[i] == UInt8(ascii: "}") { i += 1; return .object([]) }
            while true {
                skipWhitespace()
                guard i < bytes.count else { throw error("unexpected end inside an object") }
                guard bytes[i] == UInt8(ascii: "\"") else { throw error("unexpected \(describe(bytes[i])), expected a key string") }
                let keyOffset = i
                let key = try string()
                if let first = seen[key] {
                    throw error("duplicate key \"\(key)\" (first at byte \(base + first))", at: keyOffset)
                }
                seen[key] = keyOffset
                skipWhitespace()
                guard i < bytes.count, bytes[i] == UInt8(ascii: ":") else { throw error("expected ':' after key \"\(key)\"") }
                i += 1
                skipWhitespace()
                let valueOffset = i
                let v = try value(depth: depth)
                members.append(JSONMember(key: key, value: v, keyOffset: base + keyOffset, valueOffset: base + valueOffset))
                skipWhitespace()
                guard i < bytes.count else { throw error("unexpected end inside an object") }
                if bytes[i] == UInt8(ascii: ",") { i += 1; continue }
                if bytes[i] == UInt8(ascii: "}") { i += 1; return .object(members) }
                throw error("unexpected \(describe(bytes[i])) in an object, expected ',' or '}'")
            }
        }

        mutating func array(depth: Int) throws(JSONSyntaxError) -> JSONValue {
            guard depth <= StrictJSON.maxDepth else { throw error("nesting deeper than \(StrictJSON.maxDepth)") }
            i += 1 // [
            var items: [JSONValue] = []
            skipWhitespace()
            if i < bytes.count, bytes[i] == UInt8(ascii: "]") { i += 1; return .array([]) }
            while true {
                skipWhitespace()
                items.append(try value(depth: depth))
                skipWhitespace()
                guard i < bytes.count else { throw error("unexpected end inside an array") }
                if bytes[i] == UInt8(ascii: ",") { i += 1; continue }
                if bytes[i] == UInt8(ascii: "]") { i += 1; return .array(items) }
                throw error("unexpected \(describe(bytes[i])) in an array, expected ',' or ']'")
            }
        }

        mutating func number() throws(JSONSyntaxError) -> String {
            let start = i
            if bytes[i] == UInt8(ascii: "-") { i += 1 }
            func isDigit(_ k: Int) -> Bool { k < bytes.count && bytes[k] >= 0x30 && bytes[k] <= 0x39 }
            guard isDigit(i) else { throw error("invalid number", at: start) }
            if bytes[i] == UInt8(ascii: "0") {
                i += 1
                if isDigit(i) { throw error("invalid number (leading zero)", at: start) }
            } else {
                while isDigit(i) { i += 1 }
            }
            if i < bytes.count, bytes[i] == UInt8(ascii: ".") {
                i += 1
                guard isDigit(i) else { throw error("invalid number (no digit after '.')", at: start) }
                while isDigit(i) { i += 1 }
            }
            if i < bytes.count, bytes[i] == UInt8(ascii: "e") || bytes[i] == UInt8(ascii: "E") {
                i += 1
                if i < bytes.count, bytes[i] == UInt8(ascii: "+") || bytes[i] == UInt8(ascii: "-") { i += 1 }
                guard isDigit(i) else { throw error("invalid number (no exponent digits)", at: start) }
                while isDigit(i) { i += 1 }
            }
            return String(decoding: bytes[start..<i], as: UTF8.self)
        }

        mutating func hex4() throws(JSONSyntaxError) -> UInt32 {
            guard i + 4 <= bytes.count else { throw error("truncated \\u escape") }
            var v: UInt32 = 0
            for k in 0..<4 {
                let c = bytes[i + k]
                let d: UInt32
                switch c {
                case 0x30...0x39: d = UInt32(c - 0x30)
                case 0x41...0x46: d = UInt32(c - 0x41 + 10)
                case 0x61...0x66: d = UInt32(c - 0x61 + 10)
                default: throw error("invalid hex digit in \\u escape", at: i + k)
                }
                v = v << 4 | d
            }
            i += 4
            return v
        }

        mutating func string() throws(JSONSyntaxError) -> String {
            let start = i
            i += 1 // opening quote
            var out: [UInt8] = []
            while true {
                guard i < bytes.count else { throw error("unterminated string", at: start) }
                let c = bytes[i]
                if c == UInt8(ascii: "\"") { i += 1; break }
                if c < 0x20 { throw error("control character 0x\(StrictJSON.hex(c)) inside a string") }
                if c != UInt8(ascii: "\\") { out.append(c); i += 1; continue }
                let escAt = i
                i += 1
                guard i < bytes.count else { throw error("unterminated escape", at: escAt) }
                let e = bytes[i]
                i += 1
                switch e {
                case UInt8(ascii: "\""): out.append(0x22)
                case UInt8(ascii: "\\"): out.append(0x5C)
                case UInt8(ascii: "/"): out.append(0x2F)
                case UInt8(ascii: "b"): out.append(0x08)
                case UInt8(ascii: "f"): out.append(0x0C)
                case UInt8(ascii: "n"): out.append(0x0A)
                case UInt8(ascii: "r"): out.append(0x0D)
                case UInt8(ascii: "t"): out.append(0x09)
                case UInt8(ascii: "u"):
                    var u = try hex4()
                    if u >= 0xD800 && u <= 0xDBFF {
                        guard i + 1 < bytes.count, bytes[i] == UInt8(ascii: "\\"), bytes[i + 1] == UInt8(ascii: "u") else {
                            throw error("lone leading surrogate in \\u escape", at: escAt)
                        }
                        i += 2
                        let low = try hex4()
                        guard low >= 0xDC00 && low <= 0xDFFF else { throw error("invalid surrogate pair in \\u escape", at: escAt) }
                        u = 0x10000 + ((u - 0xD800) << 10) + (low - 0xDC00)
                    } else if u >= 0xDC00 && u <= 0xDFFF {
                        throw error("lone trailing surrogate in \\u escape", at: escAt)
                    }
                    guard let scalar = Unicode.Scalar(u) else { throw error("invalid \\u escape", at: escAt) }
                    out.append(contentsOf: Array(String(Character(scalar)).utf8))
                default:
                    throw error("invalid escape \\\(describe(e))", at: escAt)
                }
            }
            return String(decoding: out, as: UTF8.self)
        }
    }
}

extension StrictJSON {
    /// `s` as a JSON string literal (quotes included). Non-ASCII characters are written as UTF-8.
    public static func quote(_ s: String) -> String {
        var out = "\""
        for u in s.unicodeScalars {
            switch u {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            default:
                if u.value < 0x20 {
                    let h = String(u.value, radix: 16)
                    out += "\\u" + String(repeating: "0", count: 4 - h.count) + h
                } else {
                    out.unicodeScalars.append(u)
                }
            }
        }
        return out + "\""
    }
}
