import Testing
import VCTestSupport
@testable import VCVideo

@Suite("Float frames -> RGB8 exactly as save_videos")
struct FrameTests {
    @Test("golden sample.frames converts to sample.frames_u8, every value exact")
    func sampleFrames() throws {
        let (values, t, h, w) = try channelsLastFrames("sample.frames")
        let frames = try Frame.frames(fromChannelsLast: values, frames: t, height: h, width: w)
        let want = try goldenFrames("sample.frames_u8")
        #expect(frames.count == 5 && frames[0].width == 128 && frames[0].height == 64)
        #expect(frames.flatMap(\.rgb) == want.flatMap(\.rgb))
    }

    @Test("golden vae.frames converts to vae.frames_u8, every value exact")
    func vaeFrames() throws {
        let (values, t, h, w) = try channelsLastFrames("vae.frames")
        let frames = try Frame.frames(fromChannelsLast: values, frames: t, height: h, width: w)
        #expect(frames.flatMap(\.rgb) == (try goldenFrames("vae.frames_u8")).flatMap(\.rgb))
    }

    @Test("clamp, truncation and NaN by hand")
    func handValues() {
        // (x+1)/2*255: 1 -> 255, -1 -> 0, 0 -> 127.5 -> 127, 0.99 -> 253.725 -> 253, 2 -> 255, -3 -> 0
        #expect([Float(1), -1, 0, 0.99, 2, -3, .nan, .infinity, -.infinity].map(Frame.byte(from:)) == [255, 0, 127, 253, 255, 0, 0, 255, 0])
        // Just below the 128 boundary: (x+1)/2*255 = 127.99... truncates to 127.
        #expect(Frame.byte(from: 0.0039) == 127 && Frame.byte(from: 0.004) == 128)
    }

    @Test("size errors")
    func errors() {
        #expect(throws: VideoError.self) { try Frame(width: 2, height: 2, rgb: [0, 0, 0]) }
        #expect(throws: VideoError.self) { try Frame(width: 0, height: 2, rgb: []) }
        #expect(throws: VideoError.self) { try Frame.frames(fromChannelsLast: [0, 0, 0], frames: 2, height: 1, width: 1) }
    }
}
