// Chooses the output format from the path and writes frames atomically.
import CVCInterrupts
import Foundation

/// Output formats.
public enum VideoFormat: String, Sendable, Equatable, CaseIterable {
    /// H.264 (libx264), yuv420p, in MP4 (`.mp4`, `.m4v`): what the official code writes.
    case mp4
    /// Animated GIF (`.gif`), fixed 6x7x6 palette, ordered dithering, looping.
    case gif
    /// A directory of `frame_0000.png`, ... (a path ending in `/`, without an extension, or an
    /// existing directory): lossless.
    case pngFrames

    /// The format a path asks for.
    public static func infer(path: String) throws -> VideoFormat {
        var isDir: ObjCBool = false
        if path.hasSuffix("/") || (FileManager.default.fileExists(atPath: path, isDirectory: &isDir) && isDir.boolValue) {
            return .pngFrames
        }
        let ext = URL(fileURLWithPath: path).pathExtension.lowercased()
        switch ext {
        case "mp4", "m4v": return .mp4
        case "gif": return .gif
        case "": return .pngFrames
        default:
            throw VideoError.unsupportedFormat(path: path, "unsupported output extension '.\(ext)': use .mp4, .gif, or a directory for PNG frames")
        }
    }
}

/// Writer settings. Defaults follow the official `save_videos` (10 fps, crf 10).
public struct VideoOptions: Sendable, Equatable {
    /// Frames per second of the container (the official `--savefps`, 10; not the fps
    /// conditioning of the model).
    public var fps: Int = 10
    /// x264 constant rate factor, 1 (best) ... 51; the official code uses 10. 0 (lossless) is
    /// refused: x264 then switches to the High 4:4:4 Predictive profile, which browsers cannot
    /// play (use PNG frames for lossless output).
    public var crf: Int = 10
    /// x264 preset (ultrafast ... veryslow).
    public var preset: String = "medium"
    /// Ordered dithering for GIF output.
    public var gifDither: Bool = true
    /// Replace an existing output (file or frame directory).
    public var overwrite: Bool = true

    public init(fps: Int = 10, crf: Int = 10, preset: String = "medium", gifDither: Bool = true, overwrite: Bool = true) {
        self.fps = fps
        self.crf = crf
        self.preset = preset
        self.gifDither = gifDither
        self.overwrite = overwrite
    }
}

/// Writes frames to an MP4, a GIF or a PNG directory, chosen by the path. Frames are appended
/// one at a time (so a decoder can stream them); nothing appears at `path` until `finish()`,
/// which renames the completed temporary file or directory into place. A writer dropped
/// without `finish()` removes its temporary output.
public final class VideoWriter {
    public let path: String
    public let format: VideoFormat
    public let width: Int
    public let height: Int
    public let options: VideoOptions
    public let metadata: VideoMetadata
    public private(set) var frameCount = 0

    private enum Sink {
        case mp4(MP4Writer)
        case gif(GIFWriter)
        case png(directory: String)
    }

    private var sink: Sink?
    private let temporary: String
    /// The temporary output's registration for removal on SIGINT/SIGTERM (VCTensor `Interrupts`).
    private var interruptToken: Int32 = -1

    public init(path: String, width: Int, height: Int, options: VideoOptions = VideoOptions(),
                metadata: VideoMetadata = VideoMetadata(), format: VideoFormat? = nil) throws {
        guard width > 0, height > 0, width <= 16_384, height <= 16_384 else {
            throw VideoError.invalidOptions("frame size \(width)x\(height) outside 1...16384")
        }
        guard (1...240).contains(options.fps) else {
            throw VideoError.invalidOptions("fps \(options.fps) outside 1...240")
        }
        guard (1...51).contains(options.crf) else {
            throw VideoError.invalidOptions("crf \(options.crf) outside 1...51 (crf 0 is lossless H.264, which browsers cannot play; use PNG frames)")
        }
        let fmt = try format ?? VideoFormat.infer(path: path)
        if fmt == .pngFrames, let bad = metadata.entries.keys.sorted().first(where: { !PNGWriter.isValidKeyword($0) }) {
            throw VideoError.invalidOptions("metadata key '\(bad)' is not a valid PNG text keyword (1-79 printable ASCII)")
        }
        var target = path
        while target.count > 1 && target.hasSuffix("/") { target.removeLast() }
        try AtomicOutput.prepare(target, overwrite: options.overwrite, directory: fmt == .pngFrames)
        let tmp = AtomicOutput.temporaryPath(for: target)
        self.path = target
        self.format = fmt
        self.width = width
        self.height = height
        self.options = options
        self.metadata = metadata
        self.temporary = tmp
        interruptToken = vcint_register(tmp, fmt == .pngFrames ? 1 : 0)
        // A writer that fails to open may already have created the temporary file.
        do { try openSink(fmt) } catch {
            AtomicOutput.remove(tmp)
            vcint_unregister(interruptToken)
            interruptToken = -1
            throw error
        }
    }

    private func openSink(_ fmt: VideoFormat) throws {
        let tmp = temporary
        switch fmt {
        case .mp4:
            sink = .mp4(try MP4Writer(path: tmp, width: width, height: height, fps: options.fps, crf: options.crf,
                                      preset: options.preset, metadata: metadata))
        case .gif:
            guard width <= 65_535, height <= 65_535 else { throw VideoError.invalidOptions("GIF frames are at most 65535 pixels wide") }
            sink = .gif(try GIFWriter(path: tmp, width: width, height: height, fps: options.fps, dither: options.gifDither,
                                      metadata: metadata))
        case .pngFrames:
            do {
                try FileManager.default.createDirectory(atPath: tmp, withIntermediateDirectories: false)
            } catch {
                throw VideoError.io(path: tmp, "cannot create the frame directory: \(error)")
            }
            sink = .png(directory: tmp)
        }
    }

    /// File name of frame `index` in a PNG frame directory.
    public static func pngFrameName(_ index: Int) -> String {
        let digits = String(index)
        return "frame_" + String(repeating: "0", count: max(0, 4 - digits.count)) + digits + ".png"
    }

    /// Encodes the next frame.
    public func append(_ frame: Frame) throws {
        guard let sink else { throw VideoError.io(path: path, "the writer is finished") }
        guard frame.width == width, frame.height == height else {
            throw VideoError.invalidFrame("frame \(frame.width)x\(frame.height) in a \(width)x\(height) video")
        }
        switch sink {
        case .mp4(let w): try w.append(frame)
        case .gif(let w): try w.append(frame)
        case .png(let dir):
            let file = (dir as NSString).appendingPathComponent(Self.pngFrameName(frameCount))
            try PNGWriter.write(frame, to: file, text: metadata.sorted + [("frame", String(frameCount))])
            try AtomicOutput.sync(file)
        }
        frameCount += 1
    }

    /// Completes the output and moves it to `path`.
    public func finish() throws {
        guard let s = sink else { throw VideoError.io(path: path, "the writer is finished") }
        guard frameCount > 0 else {
            cancel()
            throw VideoError.invalidFrame("no frames were written to \(path)")
        }
        sink = nil
        do {
            switch s {
            case .mp4(let w):
                try w.finish()
                try AtomicOutput.commitFile(temporary: temporary, to: path, overwrite: options.overwrite)
            case .gif(let w):
                try w.finish()
                try AtomicOutput.commitFile(temporary: temporary, to: path, overwrite: options.overwrite)
            case .png:
                try AtomicOutput.commitDirectory(temporary: temporary, to: path, overwrite: options.overwrite)
            }
        } catch {
            AtomicOutput.remove(temporary)
            vcint_unregister(interruptToken)
            throw error
        }
        vcint_unregister(interruptToken)
    }

    /// Abandons the output (removes the temporary file or directory).
    public func cancel() {
        guard let s = sink else { return }
        sink = nil
        switch s {
        case .mp4(let w): w.abort()
        case .gif(let w): w.abort()
        case .png: break
        }
        AtomicOutput.remove(temporary)
        vcint_unregister(interruptToken)
    }

    deinit { cancel() }

    /// Writes all `frames` to `path` (format from the path) and returns the format used.
    @discardableResult
    public static func write(_ frames: [Frame], to path: String, options: VideoOptions = VideoOptions(),
                             metadata: VideoMetadata = VideoMetadata()) throws -> VideoFormat {
        guard let first = frames.first else { throw VideoError.invalidFrame("no frames to write to \(path)") }
        let w = try VideoWriter(path: path, width: first.width, height: first.height, options: options, metadata: metadata)
        for f in frames { try w.append(f) }
        try w.finish()
        return w.format
    }
}
