import Foundation
import Testing
import VCFormats
import VCTensor
import VCTestSupport
@testable import VCVideo

/// A fresh empty directory under the system temp folder, removed by `cleanup`.
struct Scratch {
    let dir: String
    init() throws {
        dir = (NSTemporaryDirectory() as NSString).appendingPathComponent("vcvideo-\(UUID().uuidString)")
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    }
    func path(_ name: String) -> String { (dir as NSString).appendingPathComponent(name) }
    func contents() -> [String] { ((try? FileManager.default.contentsOfDirectory(atPath: dir)) ?? []).sorted() }
    func cleanup() { try? FileManager.default.removeItem(atPath: dir) }
}

/// The golden float frames `[1, 3, T, H, W]` rearranged to channels-last `[T, H, W, 3]`.
func channelsLastFrames(_ name: String) throws -> (values: [Float], frames: Int, height: Int, width: Int) {
    let g = try Fixtures.golden()
    let t = try #require(try g.tensor(named: name))
    let (c, f, h, w) = (t.shape[1], t.shape[2], t.shape[3], t.shape[4])
    let src = t.floats()
    var out = [Float](repeating: 0, count: src.count)
    for ch in 0..<c {
        for ti in 0..<f {
            for y in 0..<h {
                for x in 0..<w {
                    out[((ti * h + y) * w + x) * c + ch] = src[((ch * f + ti) * h + y) * w + x]
                }
            }
        }
    }
    return (out, f, h, w)
}

/// The golden uint8 frames `[T, H, W, 3]` as Frames.
func goldenFrames(_ name: String = "sample.frames_u8") throws -> [Frame] {
    let g = try Fixtures.golden()
    let t = try #require(try g.tensor(named: name))
    let (f, h, w) = (t.shape[0], t.shape[1], t.shape[2])
    let bytes = t.bytes()
    let per = h * w * 3
    return try (0..<f).map { try Frame(width: w, height: h, rgb: Array(bytes[(($0) * per)..<(($0 + 1) * per)])) }
}

/// A synthetic test pattern (gradients plus moving squares), deterministic per index.
func patternFrame(width: Int, height: Int, index: Int) throws -> Frame {
    var rgb = [UInt8](repeating: 0, count: width * height * 3)
    for y in 0..<height {
        for x in 0..<width {
            let i = (y * width + x) * 3
            rgb[i] = UInt8((x * 255) / max(width - 1, 1))
            rgb[i + 1] = UInt8((y * 255) / max(height - 1, 1))
            let inSquare = (x / 8 + y / 8 + index) % 3 == 0
            rgb[i + 2] = inSquare ? 220 : 30
        }
    }
    return try Frame(width: width, height: height, rgb: rgb)
}

/// PSNR of the BT.601 luma of two RGB8 images (4:2:0 chroma subsampling leaves luma intact, so
/// this measures the encoder rather than the colour format).
func lumaPSNR(_ a: [UInt8], _ b: [UInt8]) -> Double {
    func luma(_ x: [UInt8]) -> [Double] {
        var out: [Double] = []
        var i = 0
        while i + 2 < x.count {
            let r = 0.299 * Double(x[i]), g = 0.587 * Double(x[i + 1]), b = 0.114 * Double(x[i + 2])
            out.append(r + g + b)
            i += 3
        }
        return out
    }
    let (la, lb) = (luma(a), luma(b))
    let mse = zip(la, lb).map { ($0 - $1) * ($0 - $1) }.reduce(0, +) / Double(max(la.count, 1))
    return mse == 0 ? .infinity : 10 * log10(255 * 255 / mse)
}
