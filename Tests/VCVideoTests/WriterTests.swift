import Foundation
import Testing
import VCTestSupport
@testable import VCVideo

@Suite("MP4 writer (H.264, yuv420p) decoded back")
struct MP4Tests {
    @Test("5 golden frames at 10 fps: every frame, yuv420p, 10 fps, size, content, metadata")
    func goldenVideo() throws {
        let s = try Scratch()
        defer { s.cleanup() }
        let frames = try goldenFrames()
        let meta = VideoMetadata(["prompt": "a black swan swims on the pond", "seed": "123", "steps": "4"])
        let path = s.path("out.mp4")
        #expect(try VideoWriter.write(frames, to: path, options: VideoOptions(fps: 10), metadata: meta) == .mp4)
        #expect(s.contents() == ["out.mp4"])                 // no temporary left behind
        let (probe, decoded) = try VideoProbe.probe(path: path, rgbFrame: 4)
        #expect(probe.frames == 5)
        #expect(probe.codec == "h264" && probe.pixelFormat == "yuv420p")
        #expect(probe.width == 128 && probe.height == 64)
        #expect(probe.fpsNumerator == 10 && probe.fpsDenominator == 1)
        #expect(abs(probe.duration - 0.5) < 0.01)
        let last = try #require(decoded)
        let p = lumaPSNR(last.rgb, frames[4].rgb)
        #expect(p > 35, "luma PSNR of the last frame \(p) dB")
        // Every decoded frame is closest to the source frame of the same index (order kept).
        for k in 0..<5 {
            let got = try #require(try VideoProbe.probe(path: path, rgbFrame: k).1)
            let best = (0..<5).max { lumaPSNR(got.rgb, frames[$0].rgb) < lumaPSNR(got.rgb, frames[$1].rgb) }
            #expect(best == k, "decoded frame \(k) matches source \(String(describing: best))")
        }
        #expect(try VideoProbe.tag(path: path, key: "description") == "a black swan swims on the pond")
        let comment = try #require(try VideoProbe.tag(path: path, key: "comment"))
        let json = try #require(try JSONSerialization.jsonObject(with: Data(comment.utf8)) as? [String: String])
        #expect(json == meta.entries)
    }

    @Test("16 frames at 8 fps last 2 s; every frame decodes")
    func durationAndCount() throws {
        let s = try Scratch()
        defer { s.cleanup() }
        let frames = try (0..<16).map { try patternFrame(width: 64, height: 48, index: $0) }
        let path = s.path("clip.m4v")
        try VideoWriter.write(frames, to: path, options: VideoOptions(fps: 8, crf: 18, preset: "ultrafast"))
        let (probe, f7) = try VideoProbe.probe(path: path, rgbFrame: 7)
        #expect(probe.frames == 16 && probe.fpsNumerator == 8 && probe.fpsDenominator == 1)
        #expect(abs(probe.duration - 2.0) < 0.01)
        #expect(try VideoProbe.tag(path: path, key: "comment") == nil)      // no metadata, no tag
        #expect(lumaPSNR(try #require(f7).rgb, frames[7].rgb) > 30)
    }

    @Test("odd sizes are padded to even by repeating the last row and column")
    func oddSize() throws {
        let s = try Scratch()
        defer { s.cleanup() }
        let frames = try (0..<3).map { try patternFrame(width: 33, height: 17, index: $0) }
        let path = s.path("odd.mp4")
        try VideoWriter.write(frames, to: path, options: VideoOptions(fps: 5, crf: 1))
        let (probe, f1) = try VideoProbe.probe(path: path, rgbFrame: 1)
        #expect(probe.width == 34 && probe.height == 18 && probe.frames == 3)
        let got = try #require(f1)
        // Crop the decoded frame to 33x17 and compare.
        var cropped: [UInt8] = []
        for y in 0..<17 { cropped += got.rgb[(y * 34 * 3)..<(y * 34 * 3 + 33 * 3)] }
        #expect(lumaPSNR(cropped, frames[1].rgb) > 35)
        // The padding repeats the last column: decoded column 33 is close to column 32.
        var edge = 0.0
        for y in 0..<17 { edge += abs(Double(got.rgb[(y * 34 + 33) * 3 + 1]) - Double(got.rgb[(y * 34 + 32) * 3 + 1])) }
        #expect(edge / 17 < 8)
    }
}

@Suite("PNG frame directory")
struct PNGTests {
    @Test("round trip is exact; text chunks carry metadata, UTF-8 included")
    func roundTrip() throws {
        let s = try Scratch()
        defer { s.cleanup() }
        let frames = try goldenFrames()
        let meta = VideoMetadata(["prompt": "un cygne noir 🦢 sur l'étang", "seed": "123"])
        let dir = s.path("frames/")
        #expect(try VideoWriter.write(frames, to: dir, metadata: meta) == .pngFrames)
        #expect(s.contents() == ["frames"])
        let names = try FileManager.default.contentsOfDirectory(atPath: s.path("frames")).sorted()
        #expect(names == (0..<5).map(VideoWriter.pngFrameName))
        for (i, name) in names.enumerated() {
            let (frame, prompt) = try PNGReader.read(path: s.path("frames/\(name)"), textKey: "prompt")
            #expect(frame == frames[i])
            #expect(prompt == meta.prompt)
            #expect(try PNGReader.read(path: s.path("frames/\(name)"), textKey: "frame").text == String(i))
        }
        // Overwriting replaces the directory atomically; without permission it is refused.
        try VideoWriter.write(Array(frames.prefix(2)), to: s.path("frames"))
        #expect(try FileManager.default.contentsOfDirectory(atPath: s.path("frames")).count == 2)
        #expect(throws: VideoError.exists(path: s.path("frames"))) {
            try VideoWriter.write(frames, to: s.path("frames"), options: VideoOptions(overwrite: false))
        }
        #expect(s.contents() == ["frames"])
    }

    @Test("invalid PNG keywords are rejected before anything is written")
    func badKeyword() throws {
        let s = try Scratch()
        defer { s.cleanup() }
        #expect(throws: VideoError.self) {
            _ = try VideoWriter(path: s.path("f"), width: 4, height: 4, metadata: VideoMetadata(["bad\nkey": "x"]))
        }
        #expect(s.contents().isEmpty)
    }
}

@Suite("Outputs are atomic and validated")
struct AtomicTests {
    @Test("a cancelled or dropped writer leaves nothing; finish without frames fails")
    func cancel() throws {
        let s = try Scratch()
        defer { s.cleanup() }
        let f = try patternFrame(width: 16, height: 16, index: 0)
        for name in ["a.mp4", "b.gif", "c"] {
            let w = try VideoWriter(path: s.path(name), width: 16, height: 16)
            try w.append(f)
            #expect(s.contents().count == 1 && s.contents()[0].hasPrefix("."))   // only the hidden temporary
            w.cancel()
            #expect(s.contents().isEmpty, "\(name)")
        }
        do {
            let w = try VideoWriter(path: s.path("d.gif"), width: 16, height: 16)
            try w.append(f)
        }
        #expect(s.contents().isEmpty)
        let empty = try VideoWriter(path: s.path("e.mp4"), width: 16, height: 16)
        #expect(throws: VideoError.self) { try empty.finish() }
        #expect(s.contents().isEmpty)
    }

    @Test("existing files: replaced by default, kept when overwrite is off")
    func overwrite() throws {
        let s = try Scratch()
        defer { s.cleanup() }
        let path = s.path("x.gif")
        try Data("old".utf8).write(to: URL(fileURLWithPath: path))
        #expect(throws: VideoError.exists(path: path)) {
            try VideoWriter.write([try patternFrame(width: 8, height: 8, index: 0)], to: path, options: VideoOptions(overwrite: false))
        }
        #expect(try Data(contentsOf: URL(fileURLWithPath: path)) == Data("old".utf8))
        try VideoWriter.write([try patternFrame(width: 8, height: 8, index: 0)], to: path)
        #expect(try Data(contentsOf: URL(fileURLWithPath: path)).prefix(6) == Data("GIF89a".utf8))
    }

    @Test("format inference, option and frame-size errors")
    func validation() throws {
        let s = try Scratch()
        defer { s.cleanup() }
        #expect(try VideoFormat.infer(path: "a/b.MP4") == .mp4)
        #expect(try VideoFormat.infer(path: "a/b.gif") == .gif)
        #expect(try VideoFormat.infer(path: "a/frames") == .pngFrames)
        #expect(try VideoFormat.infer(path: s.dir) == .pngFrames)
        #expect(throws: VideoError.self) { try VideoFormat.infer(path: "a/b.avi") }
        #expect(throws: VideoError.self) { _ = try VideoWriter(path: s.path("a.mp4"), width: 8, height: 8, options: VideoOptions(fps: 0)) }
        #expect(throws: VideoError.self) { _ = try VideoWriter(path: s.path("a.mp4"), width: 8, height: 8, options: VideoOptions(crf: 60)) }
        #expect(throws: VideoError.self) { _ = try VideoWriter(path: s.path("a.mp4"), width: 8, height: 8, options: VideoOptions(crf: 0)) }
        #expect(throws: VideoError.self) { _ = try VideoWriter(path: s.path("missing/a.mp4"), width: 8, height: 8) }
        let w = try VideoWriter(path: s.path("a.mp4"), width: 8, height: 8)
        #expect(throws: VideoError.self) { try w.append(try patternFrame(width: 10, height: 8, index: 0)) }
        w.cancel()
        #expect(s.contents().isEmpty)
    }

    @Test("sidecar JSON next to the output")
    func sidecar() throws {
        let s = try Scratch()
        defer { s.cleanup() }
        let meta = VideoMetadata(["prompt": "p", "seed": "7", "steps": "50"])
        #expect(VideoMetadata.sidecarPath(for: "out/demo.mp4") == "out/demo.mp4.json")
        #expect(VideoMetadata.sidecarPath(for: "out/frames/") == "out/frames.json")
        let path = try meta.writeSidecar(for: s.path("v.mp4"))
        #expect(path == s.path("v.mp4.json") && s.contents() == ["v.mp4.json"])
        let obj = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: path))) as? [String: String]
        #expect(obj == meta.entries)
        #expect(meta.compactJSON() == #"{"prompt":"p","seed":"7","steps":"50"}"#)
    }
}
