// Thin marshalling over CVCMedia's PNG writer and reader (Sources/CVCMedia/png.c).
import CVCMedia

enum PNGWriter {
    /// Writes one RGB PNG with a text chunk per metadata pair.
    static func write(_ frame: Frame, to path: String, text: [(key: String, value: String)]) throws {
        let buffer = VideoMetadata().cBuffer(text)
        var err = [CChar](repeating: 0, count: 512)
        guard vcmedia_png_write(path, Int32(frame.width), Int32(frame.height), frame.rgb,
                                buffer, Int32(text.count), &err, err.count) == 0 else {
            throw VideoError.io(path: path, string(fromC: err))
        }
    }

    /// Whether `key` is a valid PNG text keyword (1-79 printable ASCII, no edge spaces).
    static func isValidKeyword(_ key: String) -> Bool {
        let b = Array(key.utf8)
        return (1...79).contains(b.count) && b.first != 0x20 && b.last != 0x20 && b.allSatisfy { (0x20...0x7E).contains($0) }
    }
}

/// Reading outputs back (tests, `vcrun` checks).
public enum PNGReader {
    /// Reads a PNG as RGB8 and, if `textKey` is given, that text chunk's value.
    public static func read(path: String, textKey: String? = nil) throws -> (frame: Frame, text: String?) {
        var w: Int32 = 0, h: Int32 = 0
        var err = [CChar](repeating: 0, count: 512)
        var none = [CChar](repeating: 0, count: 1)
        let rc = vcmedia_png_read(path, &w, &h, nil, 0, nil, &none, 0, &err, err.count)
        guard rc >= 0 else { throw VideoError.io(path: path, string(fromC: err)) }
        guard w > 0, h > 0, Int(w) * Int(h) <= 1 << 28 else {
            throw VideoError.io(path: path, "unsupported PNG size \(w)x\(h)")
        }
        var rgb = [UInt8](repeating: 0, count: Int(w) * Int(h) * 3)
        var text = [CChar](repeating: 0, count: 1 << 16)
        let rc2 = vcmedia_png_read(path, &w, &h, &rgb, rgb.count, textKey, &text, text.count, &err, err.count)
        guard rc2 == 0 else { throw VideoError.io(path: path, string(fromC: err)) }
        return (try Frame(width: Int(w), height: Int(h), rgb: rgb), textKey.map { _ in string(fromC: text) })
    }
}
