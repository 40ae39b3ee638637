// Animated GIF writer in pure Swift (GIF89a: https://www.w3.org/Graphics/GIF/spec-gif89a.txt).
//
// Palette: one fixed global palette, a uniform 6 x 7 x 6 RGB cube (252 colours; green gets
// the extra level because the eye is most sensitive to it), with optional 8 x 8 ordered
// (Bayer) dithering. Chosen over per-frame median cut because it is deterministic, fast, needs
// no second pass over the video, and a shared palette cannot flicker between frames; ordered
// dithering (unlike error diffusion) is also stable from frame to frame. The cost is visible
// banding/dither texture on smooth gradients: for quality use MP4 or PNG frames.
//
// LZW: variable-length codes from 9 to 12 bits, minimum code size 8, a clear code when the
// table is full (4095 entries), as giflib's EGifCompressLine does. Loops forever
// (NETSCAPE2.0 extension); frame delays are in 1/100 s, distributed so that the total length
// matches frames / fps (8 fps -> 12, 13, 12, 13 ...); browsers treat delays below 2 as slow,
// so the delay is at least 2 (fps above 50 play at 50).
import Foundation

struct GIFEncoder {
    static let redLevels = 6, greenLevels = 7, blueLevels = 6

    /// The palette entries (256, the last 4 unused and black).
    static let palette: [UInt8] = {
        var p: [UInt8] = []
        func level(_ i: Int, _ n: Int) -> UInt8 { UInt8((Double(i) * 255 / Double(n - 1)).rounded()) }
        for r in 0..<redLevels {
            for g in 0..<greenLevels {
                for b in 0..<blueLevels {
                    p += [level(r, redLevels), level(g, greenLevels), level(b, blueLevels)]
                }
            }
        }
        p += [UInt8](repeating: 0, count: 768 - p.count)
        return p
    }()

    /// Bayer 8x8 threshold matrix (values 0..63).
    static let bayer8: [Int] = {
        var m = [0]
        var n = 1
        while n < 8 {
            var next = [Int](repeating: 0, count: 4 * n * n)
            for y in 0..<n {
                for x in 0..<n {
                    let v = 4 * m[y * n + x]
                    next[y * 2 * n + x] = v
                    next[y * 2 * n + x + n] = v + 2
                    next[(y + n) * 2 * n + x] = v + 3
                    next[(y + n) * 2 * n + x + n] = v + 1
                }
            }
            m = next
            n *= 2
        }
        return m
    }()

    /// Palette index of every pixel: per channel, level = floor(v * (n-1) / 255 + t), with
    /// t = (bayer + 0.5) / 64 when dithering and 0.5 (nearest level) otherwise.
    static func indices(of frame: Frame, dither: Bool) -> [UInt8] {
        var out = [UInt8](repeating: 0, count: frame.width * frame.height)
        let rgb = frame.rgb
        for y in 0..<frame.height {
            for x in 0..<frame.width {
                let t = dither ? (Float(bayer8[(y & 7) * 8 + (x & 7)]) + 0.5) / 64 : 0.5
                let i = y * frame.width + x
                func q(_ v: UInt8, _ n: Int) -> Int { min(n - 1, Int(Float(v) * Float(n - 1) / 255 + t)) }
                let r = q(rgb[3 * i], redLevels), g = q(rgb[3 * i + 1], greenLevels), b = q(rgb[3 * i + 2], blueLevels)
                out[i] = UInt8((r * greenLevels + g) * blueLevels + b)
            }
        }
        return out
    }

    /// Delay of frame `i` in 1/100 s so that the running total is round(100 * (i+1) / fps).
    static func delay(frame i: Int, fps: Int) -> Int {
        let a = (100 * (i + 1) + fps / 2) / fps, b = (100 * i + fps / 2) / fps
        return max(2, a - b)
    }

    /// GIF LZW of `indices` with minimum code size 8, as sub-blocks (each <= 255 bytes) and
    /// the terminating empty block.
    static func lzw(_ indices: [UInt8], table: inout LZWTable) -> [UInt8] {
        let minCodeSize = 8
        let clear = 1 << minCodeSize, end = clear + 1
        var codeSize = minCodeSize + 1
        var next = end + 1
        var bytes: [UInt8] = []
        bytes.reserveCapacity(indices.count)
        var acc: UInt32 = 0, bits = 0
        func emit(_ code: Int) {
            acc |= UInt32(code) << UInt32(bits)
            bits += codeSize
            while bits >= 8 {
                bytes.append(UInt8(truncatingIfNeeded: acc))
                acc >>= 8
                bits -= 8
            }
            // The decoder widens its codes once it has `1 << codeSize` entries.
            if next >= 1 << codeSize && codeSize < 12 { codeSize += 1 }
        }
        table.reset()
        emit(clear)
        guard var prefix = indices.first.map(Int.init) else {
            emit(end)
            if bits > 0 { bytes.append(UInt8(truncatingIfNeeded: acc)) }
            return subBlocks(bytes)
        }
        for k in indices.dropFirst() {
            let key = prefix << 8 | Int(k)
            if let code = table.lookup(key) {
                prefix = code
                continue
            }
            emit(prefix)
            if next >= 4095 {
                emit(clear)
                table.reset()
                next = end + 1
                codeSize = minCodeSize + 1
            } else {
                table.insert(key, code: next)
                next += 1
            }
            prefix = Int(k)
        }
        emit(prefix)
        emit(end)
        if bits > 0 { bytes.append(UInt8(truncatingIfNeeded: acc)) }
        return subBlocks(bytes)
    }

    static func subBlocks(_ data: [UInt8]) -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(data.count + data.count / 255 + 2)
        var i = 0
        while i < data.count {
            let n = min(255, data.count - i)
            out.append(UInt8(n))
            out.append(contentsOf: data[i..<(i + n)])
            i += n
        }
        out.append(0)
        return out
    }

    static func le16(_ v: Int) -> [UInt8] { [UInt8(v & 0xFF), UInt8((v >> 8) & 0xFF)] }
}

/// Code lookup for the LZW string table: a direct table over (prefix code << 8 | byte) with
/// generation stamps, so that a clear costs O(1).
struct LZWTable {
    private var slots = [UInt32](repeating: 0, count: 4096 << 8)
    private var generation: UInt32 = 0

    mutating func reset() {
        generation &+= 1
        if generation >= 1 << 20 {             // stamps would overflow: start afresh
            slots = [UInt32](repeating: 0, count: 4096 << 8)
            generation = 1
        }
    }

    func lookup(_ key: Int) -> Int? {
        let v = slots[key]
        return v >> 12 == generation ? Int(v & 0xFFF) : nil
    }

    mutating func insert(_ key: Int, code: Int) { slots[key] = generation << 12 | UInt32(code) }
}

/// Streams an animated GIF to a file handle.
final class GIFWriter {
    let path: String
    let width: Int
    let height: Int
    let fps: Int
    let dither: Bool
    private let handle: FileHandle
    private var table = LZWTable()
    private var count = 0
    private var closed = false

    init(path: String, width: Int, height: Int, fps: Int, dither: Bool, metadata: VideoMetadata) throws {
        guard FileManager.default.createFile(atPath: path, contents: nil), let h = FileHandle(forWritingAtPath: path) else {
            throw VideoError.io(path: path, "cannot create the file")
        }
        self.path = path
        self.width = width
        self.height = height
        self.fps = fps
        self.dither = dither
        self.handle = h
        var head = Array("GIF89a".utf8)
        head += GIFEncoder.le16(width) + GIFEncoder.le16(height)
        head += [0xF7, 0, 0]                               // global table of 256 entries, 8-bit colour
        head += GIFEncoder.palette
        head += [0x21, 0xFF, 0x0B] + Array("NETSCAPE2.0".utf8) + [0x03, 0x01, 0x00, 0x00, 0x00]   // loop forever
        if !metadata.entries.isEmpty {
            head += [0x21, 0xFE] + GIFEncoder.subBlocks(Array(metadata.compactJSON().utf8))
        }
        try write(head)
    }

    private func write(_ bytes: [UInt8]) throws {
        do { try handle.write(contentsOf: Data(bytes)) } catch {
            throw VideoError.io(path: path, "write failed: \(error)")
        }
    }

    func append(_ frame: Frame) throws {
        guard !closed else { throw VideoError.io(path: path, "the GIF writer is closed") }
        guard frame.width == width, frame.height == height else {
            throw VideoError.invalidFrame("frame \(frame.width)x\(frame.height) in a \(width)x\(height) video")
        }
        let delay = GIFEncoder.delay(frame: count, fps: fps)
        var block: [UInt8] = [0x21, 0xF9, 0x04, 0x04] + GIFEncoder.le16(delay) + [0x00, 0x00]  // keep frame, no transparency
        block += [0x2C, 0, 0, 0, 0] + GIFEncoder.le16(width) + GIFEncoder.le16(height) + [0x00]
        block.append(8)                                                                     // LZW minimum code size
        block += GIFEncoder.lzw(GIFEncoder.indices(of: frame, dither: dither), table: &table)
        try write(block)
        count += 1
    }

    func finish() throws {
        guard !closed else { throw VideoError.io(path: path, "the GIF writer is closed") }
        try write([0x3B])
        closed = true
        do { try handle.close() } catch { throw VideoError.io(path: path, "close failed: \(error)") }
    }

    func abort() {
        if !closed { try? handle.close() }
        closed = true
    }

    deinit { abort() }
}
