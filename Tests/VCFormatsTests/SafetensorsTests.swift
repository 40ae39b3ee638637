import Foundation
import Testing
import VCFormats
import VCTensor
import VCTestSupport

/// A safetensors file from a header text and data bytes (no validation: for malformed inputs).
func safetensorsBytes(_ header: String, _ data: [UInt8] = [], headerLength: UInt64? = nil) -> [UInt8] {
    let h = Array(header.utf8)
    return ZipWriter.le(headerLength ?? UInt64(h.count), 8) + h + data
}

/// Expects `body` to throw a `FormatError` whose message names the file and contains `parts`.
func expectFormatError(_ path: String, _ parts: [String], sourceLocation: SourceLocation = #_sourceLocation,
                       _ body: () throws -> Void) {
    do {
        try body()
        Issue.record("expected an error containing \(parts) for \(path)", sourceLocation: sourceLocation)
    } catch let e as FormatError {
        let text = e.description
        #expect(text.hasPrefix(path + ":"), "error does not name the file: \(text)", sourceLocation: sourceLocation)
        for p in parts {
            #expect(text.contains(p), "error '\(text)' lacks '\(p)'", sourceLocation: sourceLocation)
        }
    } catch {
        Issue.record("unexpected error type \(type(of: error)): \(error)", sourceLocation: sourceLocation)
    }
}

@Suite("Safetensors")
struct SafetensorsTests {
    let tmp: TempDir
    init() throws { tmp = try TempDir() }

    func open(_ bytes: [UInt8], _ name: String = "t.safetensors") throws -> SafetensorsFile {
        try SafetensorsFile(path: try tmp.write(name, bytes))
    }

    func rejects(_ bytes: [UInt8], _ parts: String..., sourceLocation: SourceLocation = #_sourceLocation) throws {
        let p = try tmp.write("bad-\(UUID().uuidString).safetensors", bytes)
        expectFormatError(p, parts, sourceLocation: sourceLocation) { _ = try SafetensorsFile(path: p) }
    }

    @Test func goldenTinyModelOpens() throws {
        let f = try SafetensorsFile(path: Fixtures.path("vc2-tiny-a/model.safetensors"))
        #expect(f.entries.count == 1717)
        // Offsets are contiguous and the last one ends at the end of the file.
        #expect(f.entries.last.map { f.dataOffset + $0.end } == f.file.size)
    }

    @Test func readsF64ReferenceValuesAsDoubles() throws {
        let bits = [1.0, -0.1, 1e300].map { $0.bitPattern }.flatMap { ZipWriter.le($0, 8) }
        let f = try open(safetensorsBytes("{\"d\":{\"dtype\":\"F64\",\"shape\":[3],\"data_offsets\":[0,24]},\"f\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[24,28]}}", bits + f32Bytes([0.5])))
        #expect(try f.doubles(named: "d") == [1.0, -0.1, 1e300])
        #expect(try f.doubles(named: "f") == [0.5])
        // The golden bundle's fp64 references.
        let g = try Fixtures.golden()
        #expect(try g.doubles(named: "fp64.sample.latent")?.count == g.entry(named: "fp64.sample.latent").map { $0.byteCount / 8 })
    }

    @Test func acceptsEdgeCasesTheReferenceAccepts() throws {
        // Empty header, whitespace on both sides, a scalar, a zero-size tensor, extra fields.
        let e = try open(safetensorsBytes("{}"))
        #expect(e.entries.isEmpty)
        let h = " \t\n{\"__metadata__\":{\"format\":\"pt\"},\"s\":{\"dtype\":\"F32\",\"shape\":[],\"data_offsets\":[0,4],\"extra\":1},"
            + "\"z\":{\"dtype\":\"F16\",\"shape\":[0,3],\"data_offsets\":[4,4]}}\r\n  "
        let f = try open(safetensorsBytes(h, f32Bytes([2.5])))
        #expect(f.metadata == ["format": "pt"])
        #expect(f.tensorNames.sorted() == ["s", "z"])
        let s = try #require(try f.tensor(named: "s"))
        #expect(s.shape == [] && s.floats() == [2.5])
        #expect(try f.tensor(named: "z")?.shape == [0, 3])
        #expect(try f.tensor(named: "missing") == nil)
    }

    @Test func misalignedDataIsCopiedCorrectly() throws {
        // An 8-byte header + a 3-byte u8 tensor puts the f32 tensor at an odd absolute offset.
        let h = "{\"a\":{\"dtype\":\"U8\",\"shape\":[3],\"data_offsets\":[0,3]},\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[3,11]}}"
        let hb = Array(h.utf8) + [UInt8](repeating: 0x20, count: (8 - h.utf8.count % 8) % 8)
        let f = try open(ZipWriter.le(UInt64(hb.count), 8) + hb + [1, 2, 3] + f32Bytes([1.5, -7]))
        #expect((f.dataOffset + 3) % 4 != 0)
        let b = try #require(try f.tensor(named: "b"))
        #expect(b.floats() == [1.5, -7])
        #expect(!b.storage.isMapped)
        #expect(try f.tensor(named: "a")?.bytes() == [1, 2, 3])
        #expect(try f.tensor(named: "a")?.storage.isMapped == true)
    }

    @Test func everyFormatDTypeIsRecognised() throws {
        for dt in FileDType.allCases where dt.isSafetensorsType {
            let numel = 8 // 8 elements fill whole bytes for every bit width (4, 6, 8, ...)
            let n = dt.byteCount(elements: numel) ?? -1
            let h = "{\"x\":{\"dtype\":\"\(dt.rawValue)\",\"shape\":[2,4],\"data_offsets\":[0,\(n)]}}"
            let f = try open(safetensorsBytes(h, [UInt8](repeating: 0, count: n)), "dt-\(dt.rawValue).safetensors")
            #expect(f.entries.first?.dtype == dt)
            if let r = dt.runtime {
                #expect(try f.tensor(named: "x")?.dtype == r)
            } else {
                expectFormatError(f.path, ["tensor 'x' has dtype \(dt.rawValue)", "cannot use"]) { _ = try f.tensor(named: "x") }
                #expect(try f.rawStorage(named: "x")?.byteCount == n)
            }
        }
    }

    // MARK: the reference implementation's validation rules, one case each

    @Test func rejectsShortFile() throws { try rejects([1, 2, 3], "at byte 0", "shorter than the 8-byte header length") }

    @Test func rejectsHeaderOverLimit() throws {
        try rejects(safetensorsBytes("{}", headerLength: 100_000_001), "100,000,000-byte limit")
        try rejects(safetensorsBytes("{}", headerLength: UInt64.max), "exceeds the 100,000,000-byte limit")
    }

    @Test func rejectsHeaderPastEnd() throws { try rejects(safetensorsBytes("{}", headerLength: 3), "runs past the end of the file") }

    @Test func rejectsNonUTF8() throws {
        let b = ZipWriter.le(8, 8) + [0x7B, 0x22, 0x61, 0xC3, 0x28, 0x22, 0x7D, 0x20]
        try rejects(b, "at byte 11", "not valid UTF-8")
    }

    @Test func rejectsNonJSON() throws {
        try rejects(safetensorsBytes("{\"a\":}"), "at byte 13", "expected a JSON value")
        try rejects(safetensorsBytes("[1]"), "not a JSON object")
        try rejects(safetensorsBytes("{} x"), "after the JSON value")
        try rejects(safetensorsBytes("{\"a\":{\"dtype\":\"F32\",\"shape\":[1,],\"data_offsets\":[0,4]}}", f32Bytes([0])), "expected a JSON value")
    }

    @Test func rejectsDuplicateKeys() throws {
        let t = "{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}"
        try rejects(safetensorsBytes("{\"w\":\(t),\"w\":\(t)}", f32Bytes([0])), "duplicate key \"w\"", "first at byte 9")
        try rejects(safetensorsBytes("{\"w\":{\"dtype\":\"F32\",\"dtype\":\"F16\",\"shape\":[1],\"data_offsets\":[0,4]}}", f32Bytes([0])), "duplicate key \"dtype\"")
    }

    @Test func rejectsFloatAndNegativeNumbers() throws {
        try rejects(safetensorsBytes("{\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4.0]}}", f32Bytes([0])),
                    "tensor 'w': data_offsets[1] is the number 4.0, not a non-negative integer")
        try rejects(safetensorsBytes("{\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4e0]}}", f32Bytes([0])), "4e0")
        try rejects(safetensorsBytes("{\"w\":{\"dtype\":\"F32\",\"shape\":[-1],\"data_offsets\":[0,4]}}", f32Bytes([0])),
                    "tensor 'w': shape[0] is the number -1")
        try rejects(safetensorsBytes("{\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,99999999999999999999]}}", f32Bytes([0])),
                    "overflows")
        try rejects(safetensorsBytes("{\"w\":{\"dtype\":\"F32\",\"shape\":[01],\"data_offsets\":[0,4]}}", f32Bytes([0])), "leading zero")
    }

    @Test func rejectsBadEntries() throws {
        try rejects(safetensorsBytes("{\"w\":{\"shape\":[1],\"data_offsets\":[0,4]}}", f32Bytes([0])), "tensor 'w': missing \"dtype\"")
        try rejects(safetensorsBytes("{\"w\":{\"dtype\":\"F17\",\"shape\":[1],\"data_offsets\":[0,4]}}", f32Bytes([0])), "unknown dtype \"F17\"")
        try rejects(safetensorsBytes("{\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0]}}", f32Bytes([0])), "has 1 numbers, not 2")
        try rejects(safetensorsBytes("{\"w\":[1]}"), "tensor 'w': entry is an array")
        try rejects(safetensorsBytes("{\"__metadata__\":{\"a\":1}}"), "__metadata__ value of \"a\" is the number 1, not a string")
    }

    @Test func rejectsOffsetGapsAndOverlaps() throws {
        let a = "\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}"
        try rejects(safetensorsBytes("{\(a),\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[8,12]}}", f32Bytes([0, 0, 0])),
                    "tensor 'b': data starts at 8 but 'a' ends at 4 (a gap)")
        try rejects(safetensorsBytes("{\(a),\"b\":{\"dtype\":\"F16\",\"shape\":[2],\"data_offsets\":[2,6]}}", f32Bytes([0, 0])),
                    "tensor 'b': data starts at 2 but 'a' ends at 4 (an overlap)")
        try rejects(safetensorsBytes("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}", f32Bytes([0, 0])),
                    "the first tensor must start at 0")
        try rejects(safetensorsBytes("{\"a\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[4,0]}}", f32Bytes([0])), "end before they begin")
    }

    @Test func rejectsOverflowingShapes() throws {
        try rejects(safetensorsBytes("{\"a\":{\"dtype\":\"I32\",\"shape\":[2,4611686018427387904],\"data_offsets\":[0,4]}}", f32Bytes([0])),
                    "at byte 9: tensor 'a': shape [2, 4611686018427387904] overflows")
        try rejects(safetensorsBytes("{\"a\":{\"dtype\":\"I32\",\"shape\":[2,1152921504606846976],\"data_offsets\":[0,4]}}", f32Bytes([0])),
                    "of I32 overflows")
        try rejects(safetensorsBytes("{\"a\":{\"dtype\":\"F4\",\"shape\":[3],\"data_offsets\":[0,1]}}", [0]), "do not fill whole bytes")
    }

    @Test func rejectsSizeMismatch() throws {
        try rejects(safetensorsBytes("{\"a\":{\"dtype\":\"I32\",\"shape\":[2,2],\"data_offsets\":[0,4]}}", f32Bytes([0])),
                    "tensor 'a': data_offsets [0, 4] hold 4 bytes, but I32 [2, 2] needs 16")
    }

    @Test func rejectsTrailingAndTruncatedData() throws {
        let h = "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}"
        try rejects(safetensorsBytes(h, f32Bytes([0, 0]) + [9]), "1 trailing byte(s) after the last tensor")
        try rejects(safetensorsBytes(h, f32Bytes([0, 0]).dropLast(2)), "truncated (2 bytes missing)")
    }

    @Test func rejectsDeepNesting() throws {
        let deep = String(repeating: "[", count: 200) + String(repeating: "]", count: 200)
        try rejects(safetensorsBytes("{\"__metadata__\":\(deep)}"), "nesting deeper than 128")
    }

    // MARK: writer

    @Test func writerRoundTripsInGivenOrder() throws {
        let a = try Tensor(shape: [2, 3], floats: [1, 2, 3, 4, 5, 6])
        let b = try Tensor(shape: [3], dtype: .u8, bytes: [7, 8, 9])
        let c = try Tensor(shape: [2], floats: [0.5, -0.25]).converted(to: .bf16)
        let path = tmp.path("w.safetensors")
        let names = ["z.weight \"quoted\" é", "a.bias", "m"]
        try SafetensorsWriter.write(path: path, tensors: [(names[0], a), (names[1], b), (names[2], c)],
                                    metadata: ["format": "pt", "note": "line\nbreak"])
        let f = try SafetensorsFile(path: path)
        #expect(f.tensorNames == names) // data order = given order
        #expect(f.metadata == ["format": "pt", "note": "line\nbreak"])
        #expect(try f.tensor(named: names[0])?.floats() == [1, 2, 3, 4, 5, 6])
        #expect(try f.tensor(named: names[1])?.bytes() == [7, 8, 9])
        #expect(try f.tensor(named: names[2])?.dtype == .bf16)
        #expect(try f.tensor(named: names[2])?.floats() == [0.5, -0.25])
        #expect(f.dataOffset % 8 == 0)
        // Nothing but the result is left in the folder.
        #expect(try FileManager.default.contentsOfDirectory(atPath: tmp.url.path) == ["w.safetensors"])
    }

    @Test func writerRejectsMisuseAndCleansUp() throws {
        let path = tmp.path("x.safetensors")
        let t = try Tensor(shape: [1], floats: [1])
        do {
            let w = try SafetensorsWriter(path: path, layout: [.init(name: "a", dtype: .f32, shape: [1]), .init(name: "b", dtype: .f32, shape: [1])])
            #expect(throws: FormatError.self) { try w.write("b", t) }
            try w.write("a", t)
            #expect(throws: FormatError.self) { try w.write("b", try Tensor(shape: [2], floats: [1, 2])) }
            #expect(throws: FormatError.self) { try w.finish() }
        }
        #expect(throws: FormatError.self) {
            _ = try SafetensorsWriter(path: path, layout: [.init(name: "a", dtype: .f32, shape: [1]), .init(name: "a", dtype: .f32, shape: [1])])
        }
        #expect(!FileManager.default.fileExists(atPath: path))
        #expect(try FileManager.default.contentsOfDirectory(atPath: tmp.url.path).isEmpty)
    }
}


@Suite("StrictJSON")
struct StrictJSONTests {
    func parse(_ s: String) throws -> JSONValue { try StrictJSON.parse(Array(s.utf8)) }

    func fails(_ s: String, at offset: Int, _ part: String, sourceLocation: SourceLocation = #_sourceLocation) {
        do {
            _ = try StrictJSON.parse(Array(s.utf8))
            Issue.record("accepted \(s)", sourceLocation: sourceLocation)
        } catch {
            #expect(error.offset == offset, "\(error)", sourceLocation: sourceLocation)
            #expect(error.message.contains(part), "\(error)", sourceLocation: sourceLocation)
        }
    }

    @Test func parsesValuesEscapesAndSurrogatePairs() throws {
        let v = try parse(#"{"a":"\u00e9\ud83d\ude00\n\"\\\/","b":[true,false,null,-1.5e3,0],"c":{}}"#)
        #expect(v["a"] == .string("é😀\n\"\\/"))
        #expect(v["b"] == .array([.bool(true), .bool(false), .null, .number("-1.5e3"), .number("0")]))
        #expect(v["c"] == .object([]))
        guard case .object(let m) = v else { Issue.record("not an object"); return }
        #expect(m.map(\.key) == ["a", "b", "c"]) // file order is kept
        #expect(m[1].keyOffset == 34) // the quote opening "b"
    }

    @Test func rejectsWhatRFC8259Rejects() {
        fails(#"{"a":"\ud83d"}"#, at: 6, "lone leading surrogate")
        fails(#"{"a":"\ude00"}"#, at: 6, "lone trailing surrogate")
        fails("{\"a\":\"x\ty\"}", at: 7, "control character 0x09")
        fails(#"{"a":1,}"#, at: 7, "expected a key string")
        fails(#"[1,]"#, at: 3, "expected a JSON value")
        fails(#"{"a":tru}"#, at: 5, "expected true")
        fails(#"{"a":"\q"}"#, at: 6, "invalid escape")
        fails(#"{"a":1.}"#, at: 5, "no digit after '.'")
        fails(#"{"a" 1}"#, at: 5, "expected ':'")
        fails(#""abc"#, at: 0, "unterminated string")
        fails("", at: 0, "unexpected end")
    }

    @Test func quoteRoundTrips() throws {
        for s in ["plain", "quote \" backslash \\ newline \n tab \t", "ctl \u{01}\u{1f}", "ünïcödé 😀"] {
            #expect(try parse(StrictJSON.quote(s)) == .string(s))
        }
    }

    @Test func utf8ValidatorRejectsOverlongsAndSurrogates() {
        #expect(StrictJSON.firstInvalidUTF8(Array("aé😀".utf8)) == nil)
        #expect(StrictJSON.firstInvalidUTF8([0x61, 0xC0, 0xAF]) == 1) // overlong '/'
        #expect(StrictJSON.firstInvalidUTF8([0xED, 0xA0, 0x80]) == 0) // UTF-16 surrogate
        #expect(StrictJSON.firstInvalidUTF8([0xF4, 0x90, 0x80, 0x80]) == 0) // above U+10FFFF
        #expect(StrictJSON.firstInvalidUTF8([0x61, 0x62, 0xE2, 0x82]) == 2) // truncated sequence
    }
}
