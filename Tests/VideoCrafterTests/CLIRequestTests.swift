// Bad requests at the command line (issue "Reliability": the CLI part of the malformed-input
// corpus). Each case runs the built `vcrun` / `vcconv` executables as a user would and checks:
// a non-zero exit (not a signal), a message on stderr that names the problem (and the file,
// where there is one), and nothing left in the output folder.
import Foundation
import Testing
import VCTestSupport
@testable import VideoCrafter

@Suite struct CLIRequestTests {
    struct Run {
        var status: Int32
        var reason: Process.TerminationReason
        var stderr: String
    }

    /// Runs `name args` through /bin/sh so that `limits` (shell `ulimit`/`trap` commands) apply to it alone.
    static func run(_ name: String, _ args: [String], limits: String = "") throws -> Run {
        let exe = try BuiltExecutable.url(name)
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/bin/sh")
        // "$0" is the executable, "$@" its arguments: no quoting of user-controlled strings needed.
        p.arguments = ["-c", limits + " exec \"$0\" \"$@\"", exe.path] + args
        let err = Pipe()
        p.standardError = err
        p.standardOutput = FileHandle.nullDevice
        try p.run()
        let data = err.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        return Run(status: p.terminationStatus, reason: p.terminationReason, stderr: String(decoding: data, as: UTF8.self))
    }

    /// A clean refusal: exit status non-zero, not killed by a signal, and every `mentions` in the message.
    static func expectRefused(_ r: Run, mentions: [String], sourceLocation: SourceLocation = #_sourceLocation) {
        #expect(r.reason == .exit, "killed by signal \(r.status); stderr: \(r.stderr)", sourceLocation: sourceLocation)
        #expect(r.status != 0, "exit 0; stderr: \(r.stderr)", sourceLocation: sourceLocation)
        for m in mentions {
            #expect(r.stderr.contains(m), "stderr lacks '\(m)': \(r.stderr)", sourceLocation: sourceLocation)
        }
    }

    static let sampleBase = ["--prompt", "a cat", "--seed", "1", "--steps", "2", "--frames", "2", "--height", "64", "--width", "64"]

    /// `sampleBase` with the options in `changes` (name, value, name, value ...) replaced or added.
    static func sampleArgs(setting changes: [String]) -> [String] {
        var args = sampleBase
        for i in stride(from: 0, to: changes.count - 1, by: 2) {
            if let at = args.firstIndex(of: changes[i]) { args[at + 1] = changes[i + 1] } else { args += [changes[i], changes[i + 1]] }
        }
        return args
    }

    @Test(arguments: [
        (["--height", "72"], "multiples of 64"),
        (["--width", "0"], "multiples of 64"),
        (["--frames", "0"], "--frames"),
        (["--steps", "0"], "--steps"),
        (["--steps", "100000"], "--steps"),
        (["--crf", "99"], "--crf"),
        (["--threads", "0"], "--threads"),
    ])
    func sampleRefusesBadParameters(_ extra: [String], _ mention: String) async throws {
        let model = try await TinyModels.shared.path(.f32)
        let tmp = try TempDir()
        defer { tmp.remove() }
        let args = Self.sampleArgs(setting: extra)
        let r = try Self.run("vcrun", ["sample", "--model", model, "-o", tmp.path("x.mp4")] + args)
        Self.expectRefused(r, mentions: [mention])
        #expect(tmp.files().isEmpty)
    }

    @Test func sampleRefusesAnAbsurdFrameCountWithTheMemoryItWouldNeed() async throws {
        let model = try await TinyModels.shared.path(.f32)
        let tmp = try TempDir()
        defer { tmp.remove() }
        let args = Self.sampleArgs(setting: ["--frames", "100000", "--height", "1024", "--width", "1024"])
        let r = try Self.run("vcrun", ["sample", "--model", model, "-o", tmp.path("x.mp4")] + args)
        Self.expectRefused(r, mentions: ["MiB"])
        #expect(tmp.files().isEmpty)
    }

    @Test func sampleNamesAMissingOrWrongModelFile() throws {
        let tmp = try TempDir()
        defer { tmp.remove() }
        let missing = tmp.path("absent.vcm")
        var r = try Self.run("vcrun", ["sample", "--model", missing, "-o", tmp.path("x.mp4")] + Self.sampleBase)
        Self.expectRefused(r, mentions: ["absent.vcm"])
        let notVCM = try tmp.write("notamodel.vcm", Array("not a model at all, just text\n".utf8))
        r = try Self.run("vcrun", ["sample", "--model", notVCM, "-o", tmp.path("x.mp4")] + Self.sampleBase)
        Self.expectRefused(r, mentions: ["notamodel.vcm"])
        #expect(tmp.files() == ["notamodel.vcm"])
    }

    @Test func sampleToAnUnwritableLocationFailsCleanly() async throws {
        let model = try await TinyModels.shared.path(.f32)
        let tmp = try TempDir()
        defer { tmp.remove() }
        // A regular file where a folder should be: not writable even for root.
        _ = try tmp.write("file", [1, 2, 3])
        let r = try Self.run("vcrun", ["sample", "--model", model, "-o", tmp.path("file/x.mp4")] + Self.sampleBase)
        Self.expectRefused(r, mentions: ["file/x.mp4"])
        #expect(tmp.files() == ["file"])
    }

    /// A full disk, simulated with the file-size limit (`ulimit -f`, in 512- or 1024-byte units
    /// depending on the shell; both are far below the output): writes fail with EFBIG, as they
    /// would with ENOSPC, and the writer must remove its temporary file.
    @Test func importIntoAFullLocationLeavesNothing() throws {
        let tmp = try TempDir()
        defer { tmp.remove() }
        let r = try Self.run("vcconv", ["import", Fixtures.path("vc2-tiny-a/model.ckpt"), "-o", tmp.path("tiny.vcm"),
                                        "--config", Fixtures.path("vc2-tiny-a/config.yaml"),
                                        "--text-config", Fixtures.path("vc2-tiny-a/open_clip_config.json")],
                             limits: "trap '' XFSZ; ulimit -f 64;")
        Self.expectRefused(r, mentions: ["tiny.vcm"])
        #expect(tmp.files().isEmpty, "left: \(tmp.files())")
    }

    @Test func exportIntoAFullLocationLeavesNothing() async throws {
        let model = try await TinyModels.shared.path(.f32)
        let tmp = try TempDir()
        defer { tmp.remove() }
        let r = try Self.run("vcconv", ["export", model, "-o", tmp.path("tiny.safetensors")],
                             limits: "trap '' XFSZ; ulimit -f 64;")
        Self.expectRefused(r, mentions: ["tiny.safetensors"])
        #expect(tmp.files().isEmpty, "left: \(tmp.files())")
    }

    @Test func importRefusesAMalformedCheckpointNamingIt() throws {
        let tmp = try TempDir()
        defer { tmp.remove() }
        // The first half of the real checkpoint: a zip without its central directory.
        let whole = try Data(contentsOf: URL(fileURLWithPath: Fixtures.path("vc2-tiny-a/model.ckpt")))
        let cut = try tmp.write("cut.ckpt", Array(whole.prefix(whole.count / 2)))
        let r = try Self.run("vcconv", ["import", cut, "-o", tmp.path("out.vcm")])
        Self.expectRefused(r, mentions: ["cut.ckpt"])
        #expect(tmp.files() == ["cut.ckpt"])
    }
}
