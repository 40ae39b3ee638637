// RGB8 video frames and the float -> uint8 conversion of the official code.
//
// Ports AILab-CVC/VideoCrafter@11bcd76 scripts/evaluation/funcs.py `save_videos`:
// `torch.clamp(video, -1, 1)`, `(grid + 1.0) / 2.0`, `(grid * 255).to(torch.uint8)` — float32
// arithmetic and truncation toward zero (no rounding).

/// Errors of the video writers and readers; each names the path it concerns.
public enum VideoError: Error, Equatable, CustomStringConvertible {
    /// Frame data that does not fit its size, or frames of different sizes in one video.
    case invalidFrame(String)
    /// A writer setting out of range (fps, crf, size, metadata key, ...).
    case invalidOptions(String)
    /// The output path's extension names no supported format.
    case unsupportedFormat(path: String, String)
    /// The output exists and overwriting was not allowed.
    case exists(path: String)
    /// A failure reported by FFmpeg, libpng or the file system.
    case io(path: String, String)

    public var description: String {
        switch self {
        case .invalidFrame(let m): return "invalid frame: \(m)"
        case .invalidOptions(let m): return "invalid video options: \(m)"
        case .unsupportedFormat(let p, let m): return "\(p): \(m)"
        case .exists(let p): return "\(p) already exists (overwriting not allowed)"
        case .io(let p, let m): return "\(p): \(m)"
        }
    }
}

/// One video frame: `height` rows of `width` RGB pixels, 3 bytes each, top row first.
public struct Frame: Sendable, Equatable {
    public let width: Int
    public let height: Int
    public let rgb: [UInt8]

    public init(width: Int, height: Int, rgb: [UInt8]) throws {
        guard width > 0, height > 0, width <= 65_535, height <= 65_535 else {
            throw VideoError.invalidFrame("size \(width)x\(height) outside 1...65535")
        }
        guard rgb.count == width * height * 3 else {
            throw VideoError.invalidFrame("\(rgb.count) bytes for \(width)x\(height) RGB (needs \(width * height * 3))")
        }
        self.width = width
        self.height = height
        self.rgb = rgb
    }

    /// One channels-last frame `[H, W, 3]` of floats in [-1, 1] converted as the official code:
    /// clamp to [-1, 1], (x + 1) / 2, * 255, truncate toward zero. NaN becomes 0.
    public init(floats: ArraySlice<Float>, width: Int, height: Int) throws {
        guard floats.count == width * height * 3 else {
            throw VideoError.invalidFrame("\(floats.count) floats for \(width)x\(height) RGB")
        }
        try self.init(width: width, height: height, rgb: floats.map(Frame.byte(from:)))
    }

    /// The official float -> uint8 mapping of one value.
    @inline(__always)
    public static func byte(from x: Float) -> UInt8 {
        guard !x.isNaN else { return 0 }
        let c = x < -1 ? -1 : (x > 1 ? 1 : x)
        let v = (c + 1) / 2 * 255                       // float32, in [0, 255]
        return UInt8(v)                                  // truncation toward zero
    }

    /// Splits channels-last video floats `[frames, height, width, 3]` (the VAE output, values
    /// in about [-1, 1]) into RGB8 frames with the official conversion.
    public static func frames(fromChannelsLast values: [Float], frames: Int, height: Int, width: Int) throws -> [Frame] {
        guard frames > 0 else { throw VideoError.invalidFrame("no frames") }
        let per = width * height * 3
        guard values.count == frames * per else {
            throw VideoError.invalidFrame("\(values.count) floats for \(frames) frames of \(width)x\(height)x3")
        }
        return try (0..<frames).map { t in
            try Frame(floats: values[(t * per)..<((t + 1) * per)], width: width, height: height)
        }
    }
}
