// Thin marshalling over CVCMedia's H.264/MP4 writer (Sources/CVCMedia/mp4.c).
import CVCMedia

/// A NUL-terminated C buffer as a String.
func string(fromC buffer: [CChar]) -> String {
    String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
}

/// Encodes RGB8 frames to H.264 (libx264, yuv420p) in an MP4 file at `path` (written in place;
/// `VideoWriter` points it at a temporary name and renames it when done).
final class MP4Writer {
    private var handle: OpaquePointer?
    let path: String
    let width: Int
    let height: Int

    init(path: String, width: Int, height: Int, fps: Int, crf: Int, preset: String, metadata: VideoMetadata) throws {
        var tags: [(key: String, value: String)] = metadata.entries.isEmpty ? [] : [("comment", metadata.compactJSON())]
        if let prompt = metadata.prompt { tags.append(("description", prompt)) }
        let buffer = metadata.cBuffer(tags)
        var err = [CChar](repeating: 0, count: 512)
        guard let h = vcmedia_mp4_open(path, Int32(width), Int32(height), Int32(fps), 1, Int32(crf), preset,
                                       buffer, Int32(tags.count), &err, err.count) else {
            throw VideoError.io(path: path, string(fromC: err))
        }
        self.handle = h
        self.path = path
        self.width = width
        self.height = height
    }

    func append(_ frame: Frame) throws {
        guard let h = handle else { throw VideoError.io(path: path, "the MP4 writer is closed") }
        guard frame.width == width, frame.height == height else {
            throw VideoError.invalidFrame("frame \(frame.width)x\(frame.height) in a \(width)x\(height) video")
        }
        var err = [CChar](repeating: 0, count: 512)
        guard vcmedia_mp4_write_rgb(h, frame.rgb, &err, err.count) == 0 else {
            throw VideoError.io(path: path, string(fromC: err))
        }
    }

    func finish() throws {
        guard let h = handle else { throw VideoError.io(path: path, "the MP4 writer is closed") }
        handle = nil
        var err = [CChar](repeating: 0, count: 512)
        guard vcmedia_mp4_close(h, &err, err.count) == 0 else {
            throw VideoError.io(path: path, string(fromC: err))
        }
    }

    func abort() {
        if let h = handle { vcmedia_mp4_abort(h) }
        handle = nil
    }

    deinit { abort() }
}
