import Foundation
import Testing
@testable import VCVideo

/// A minimal GIF89a reader for the tests: blocks, delays, loop count, comments, and LZW.
struct ParsedGIF {
    var width = 0, height = 0
    var palette: [UInt8] = []
    var loopCount: Int?
    var comments: [String] = []
    var delays: [Int] = []
    var frames: [[UInt8]] = []       // palette indices per frame

    enum ParseError: Error { case truncated(Int), bad(String) }

    init(_ d: [UInt8]) throws {
        var p = 0
        func byte() throws -> UInt8 { guard p < d.count else { throw ParseError.truncated(p) }; p += 1; return d[p - 1] }
        func u16() throws -> Int { let a = Int(try byte()); return a | Int(try byte()) << 8 }
        func blocks() throws -> [UInt8] {
            var out: [UInt8] = []
            while true {
                let n = Int(try byte())
                if n == 0 { return out }
                guard p + n <= d.count else { throw ParseError.truncated(p) }
                out += d[p..<(p + n)]
                p += n
            }
        }
        guard d.count >= 13, Array(d[0..<6]) == Array("GIF89a".utf8) else { throw ParseError.bad("signature") }
        p = 6
        width = try u16(); height = try u16()
        let packed = try byte(); _ = try byte(); _ = try byte()
        if packed & 0x80 != 0 {
            let n = 3 * (1 << (Int(packed & 7) + 1))
            palette = Array(d[p..<(p + n)]); p += n
        }
        var pendingDelay = 0
        loop: while true {
            switch try byte() {
            case 0x21:
                let label = try byte()
                let body = try blocks()
                switch label {
                case 0xF9: pendingDelay = Int(body[1]) | Int(body[2]) << 8
                case 0xFE: comments.append(String(decoding: body, as: UTF8.self))
                case 0xFF where Array(body.prefix(11)) == Array("NETSCAPE2.0".utf8):
                    loopCount = Int(body[12]) | Int(body[13]) << 8
                default: break
                }
            case 0x2C:
                _ = try u16(); _ = try u16()
                let w = try u16(), h = try u16()
                guard w == width, h == height, try byte() & 0x80 == 0 else { throw ParseError.bad("frame descriptor") }
                let minCode = Int(try byte())
                frames.append(try Self.lzwDecode(try blocks(), minCodeSize: minCode, count: w * h))
                delays.append(pendingDelay)
            case 0x3B: break loop
            case let b: throw ParseError.bad("block \(b) at \(p - 1)")
            }
        }
    }

    /// Straightforward GIF LZW decoder (independent of the encoder's table structure).
    static func lzwDecode(_ data: [UInt8], minCodeSize: Int, count: Int) throws -> [UInt8] {
        let clear = 1 << minCodeSize, end = clear + 1
        var dict: [[UInt8]] = []
        func reset() { dict = (0..<clear).map { [UInt8($0)] } + [[], []] }
        reset()
        var codeSize = minCodeSize + 1
        var out: [UInt8] = []
        var prev: [UInt8]? = nil
        var bitPos = 0
        while bitPos + codeSize <= data.count * 8 {
            var code = 0
            for i in 0..<codeSize {
                let b = bitPos + i
                if data[b >> 3] & (1 << (b & 7)) != 0 { code |= 1 << i }
            }
            bitPos += codeSize
            if code == clear { reset(); codeSize = minCodeSize + 1; prev = nil; continue }
            if code == end { break }
            let entry: [UInt8]
            if code < dict.count {
                entry = dict[code]
            } else if let pv = prev, code == dict.count {
                entry = pv + [pv[0]]
            } else {
                throw ParseError.bad("code \(code) with \(dict.count) entries")
            }
            out += entry
            if let pv = prev, dict.count < 4096 { dict.append(pv + [entry[0]]) }
            prev = entry
            if dict.count == 1 << codeSize && codeSize < 12 { codeSize += 1 }
        }
        guard out.count == count else { throw ParseError.bad("decoded \(out.count) pixels, expected \(count)") }
        return out
    }
}

@Suite("GIF writer")
struct GIFTests {
    @Test("structure: frames, delays for 8 fps, endless loop, comment, palette")
    func structure() throws {
        let s = try Scratch()
        defer { s.cleanup() }
        let frames = try (0..<6).map { try patternFrame(width: 40, height: 24, index: $0) }
        let meta = VideoMetadata(["prompt": "a swan", "seed": "1"])
        try VideoWriter.write(frames, to: s.path("a.gif"), options: VideoOptions(fps: 8), metadata: meta)
        let gif = try ParsedGIF(Array(try Data(contentsOf: URL(fileURLWithPath: s.path("a.gif")))))
        #expect(gif.width == 40 && gif.height == 24)
        #expect(gif.frames.count == 6)
        #expect(gif.delays == [13, 12, 13, 12, 13, 12])       // 100/8 cs, total 75 = 6/8 s
        #expect(gif.loopCount == 0)
        #expect(gif.comments == [meta.compactJSON()])
        #expect(gif.palette == GIFEncoder.palette && gif.palette.count == 768)
        // Dithered indices decode to exactly what the encoder quantised.
        for (i, f) in frames.enumerated() {
            #expect(gif.frames[i] == GIFEncoder.indices(of: f, dither: true))
        }
        #expect(GIFEncoder.delay(frame: 0, fps: 10) == 10 && GIFEncoder.delay(frame: 3, fps: 100) == 2)
    }

    @Test("without dithering each pixel maps to the nearest cube level")
    func nearestLevels() throws {
        let s = try Scratch()
        defer { s.cleanup() }
        let frame = try patternFrame(width: 17, height: 9, index: 1)
        try VideoWriter.write([frame], to: s.path("b.gif"), options: VideoOptions(fps: 10, gifDither: false))
        let gif = try ParsedGIF(Array(try Data(contentsOf: URL(fileURLWithPath: s.path("b.gif")))))
        let idx = try #require(gif.frames.first)
        var worst = 0
        for i in 0..<(17 * 9) {
            for c in 0..<3 {
                let decoded = Int(gif.palette[3 * Int(idx[i]) + c]), original = Int(frame.rgb[3 * i + c])
                worst = max(worst, abs(decoded - original))
            }
        }
        #expect(worst <= 25)     // half a step (51) of the 6-level red and blue axes
        #expect(gif.delays == [10])
    }

    @Test("LZW round trip across table resets (noise, runs, single pixel)")
    func lzwRoundTrip() throws {
        var rng = SystemRandomNumberGenerator()
        let noise = (0..<200_000).map { _ in UInt8.random(in: 0...251, using: &rng) }
        let runs = (0..<100_000).map { UInt8(($0 / 700) % 252) }
        let cases: [[UInt8]] = [noise, runs, [7], [0, 0, 0, 0], Array(repeating: 255, count: 70_000)]
        var table = LZWTable()
        for c in cases {
            let blocks = GIFEncoder.lzw(c, table: &table)
            var data: [UInt8] = []
            var p = 0
            while blocks[p] != 0 { let n = Int(blocks[p]); data += blocks[(p + 1)...(p + n)]; p += n + 1 }
            #expect(p == blocks.count - 1)
            #expect(try ParsedGIF.lzwDecode(data, minCodeSize: 8, count: c.count) == c)
        }
    }
}
