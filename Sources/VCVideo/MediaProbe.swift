// Decoding written videos back (tests, diagnostics), over CVCMedia's prober.
import CVCMedia

/// What a video file holds, found by decoding every frame.
public struct VideoProbe: Sendable, Equatable {
    public var frames: Int
    public var width: Int
    public var height: Int
    /// Average frame rate as a fraction.
    public var fpsNumerator: Int
    public var fpsDenominator: Int
    /// Decoder pixel format name, e.g. "yuv420p".
    public var pixelFormat: String
    /// Decoder name, e.g. "h264".
    public var codec: String
    /// Container duration in seconds (0 if unknown).
    public var duration: Double

    /// Decodes `path`; if `rgbFrame` is given, also returns that frame as RGB8.
    public static func probe(path: String, rgbFrame: Int? = nil) throws -> (VideoProbe, Frame?) {
        var info = vcmedia_probe_info()
        var pix = [CChar](repeating: 0, count: 64)
        var codec = [CChar](repeating: 0, count: 64)
        var err = [CChar](repeating: 0, count: 512)
        guard vcmedia_probe(path, &info, &pix, pix.count, &codec, codec.count, -1, nil, 0, &err, err.count) == 0 else {
            throw VideoError.io(path: path, string(fromC: err))
        }
        let probe = VideoProbe(frames: Int(info.frames), width: Int(info.width), height: Int(info.height),
                               fpsNumerator: Int(info.fps_num), fpsDenominator: Int(info.fps_den),
                               pixelFormat: string(fromC: pix), codec: string(fromC: codec), duration: info.duration)
        guard let index = rgbFrame else { return (probe, nil) }
        var rgb = [UInt8](repeating: 0, count: probe.width * probe.height * 3)
        guard vcmedia_probe(path, &info, &pix, pix.count, &codec, codec.count, Int32(index), &rgb, rgb.count, &err, err.count) == 0 else {
            throw VideoError.io(path: path, string(fromC: err))
        }
        return (probe, try Frame(width: probe.width, height: probe.height, rgb: rgb))
    }

    /// A container metadata tag (e.g. "comment"), nil if absent.
    public static func tag(path: String, key: String) throws -> String? {
        var value = [CChar](repeating: 0, count: 1 << 16)
        var err = [CChar](repeating: 0, count: 512)
        let rc = vcmedia_probe_tag(path, key, &value, value.count, &err, err.count)
        guard rc >= 0 else { throw VideoError.io(path: path, string(fromC: err)) }
        return rc == 1 ? string(fromC: value) : nil
    }

    /// FFmpeg/libpng versions and the H.264 encoder in use.
    public static var libraryVersions: String {
        var out = [CChar](repeating: 0, count: 256)
        vcmedia_versions(&out, out.count)
        return string(fromC: out)
    }
}
