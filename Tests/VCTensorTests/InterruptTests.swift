import Foundation
import Testing
import VCTensor
import VCTestSupport
#if canImport(Glibc)
import Glibc
#endif

/// The interrupt facility (Sources/VCTensor/Interrupts.swift, Sources/CVCInterrupts), tested in a
/// child process (the dev executable vc-interrupt-probe) that is signalled while it writes a
/// large output and must leave nothing behind. (The registry is process-wide, so it is never
/// exercised inside the test process, where other suites write files concurrently.)
@Suite(.serialized) struct InterruptTests {
    static func scratch() throws -> URL {
        let u = FileManager.default.temporaryDirectory.appendingPathComponent("vc-int-\(getpid())-\(UInt32.random(in: 0...UInt32.max))")
        try FileManager.default.createDirectory(at: u, withIntermediateDirectories: true)
        return u
    }

    static func contents(_ dir: URL) -> [String] {
        ((try? FileManager.default.contentsOfDirectory(atPath: dir.path)) ?? []).sorted()
    }

    // MARK: child processes

    struct Run {
        var status: Int32
        var reason: Process.TerminationReason
        var announced: String
        var left: [String]
    }

    /// Starts the probe, waits until it announces its temporary output, sends `signal`, waits.
    static func interrupt(_ kind: String, output: String, signal: Int32, install: Bool = true) throws -> Run {
        let dir = try scratch()
        defer { try? FileManager.default.removeItem(at: dir) }
        let p = Process()
        p.executableURL = try BuiltExecutable.url("vc-interrupt-probe")
        p.arguments = [kind, dir.appendingPathComponent(output).path] + (install ? [] : ["--no-install"])
        let pipe = Pipe()
        p.standardOutput = pipe
        try p.run()
        // Read the announcement line ("writing <temporaries>").
        var line = [UInt8]()
        let h = pipe.fileHandleForReading
        while !line.contains(0x0A) {
            let d = h.availableData
            if d.isEmpty { break }
            line += d
        }
        let announced = String(decoding: line, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
        kill(p.processIdentifier, signal)
        p.waitUntilExit()
        return Run(status: p.terminationStatus, reason: p.terminationReason, announced: announced, left: contents(dir))
    }

    @Test(arguments: [("safetensors", "model.safetensors", SIGTERM), ("safetensors", "model.safetensors", SIGINT),
                      ("vcm", "model.vcm", SIGTERM),
                      ("png", "frames", SIGTERM), ("gif", "clip.gif", SIGINT)])
    func signalledWriterLeavesNothing(_ kind: String, _ output: String, _ signal: Int32) throws {
        let r = try Self.interrupt(kind, output: output, signal: signal)
        // The probe had a temporary output when it was signalled ...
        #expect(r.announced.hasPrefix("writing .\(output).tmp-"), "probe said: \(r.announced)")
        // ... died of the signal (not a clean exit) ...
        #expect(r.reason == .uncaughtSignal)
        #expect(r.status == signal)
        // ... and left neither the output nor its temporary.
        #expect(r.left.isEmpty, "left behind: \(r.left)")
    }

    @Test func handlerRemovesRegisteredFilesFlatDirectoriesAndRelativePathsOnly() throws {
        let r = try Self.interrupt("registry", output: "", signal: SIGTERM)
        #expect(r.announced == "writing .a.tmp .frames.tmp rel.tmp", "probe said: \(r.announced)")
        #expect(r.reason == .uncaughtSignal && r.status == SIGTERM)
        #expect(r.left == [".b.tmp"], "left: \(r.left)") // .b.tmp was unregistered
    }

    /// A crash (abort, a runtime trap) mid-write removes the temporary too, and the process still
    /// dies of its signal (the action found at install time runs after the cleanup).
    @Test(arguments: ["crash-abort", "crash-trap"])
    func crashingWriterLeavesNothing(_ kind: String) throws {
        let dir = try Self.scratch()
        defer { try? FileManager.default.removeItem(at: dir) }
        let p = Process()
        p.executableURL = try BuiltExecutable.url("vc-interrupt-probe")
        p.arguments = [kind, dir.appendingPathComponent("model.safetensors").path]
        var env = ProcessInfo.processInfo.environment
        env["SWIFT_BACKTRACE"] = "enable=no"   // no symbolication pause in the child
        p.environment = env
        let out = Pipe()
        p.standardOutput = out
        p.standardError = FileHandle.nullDevice
        try p.run()
        p.waitUntilExit()
        let said = String(decoding: out.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        #expect(said.hasPrefix("writing .model.safetensors.tmp-"), "probe said: \(said)")
        #expect(p.terminationReason == .uncaughtSignal)
        let expected: [Int32] = kind == "crash-abort" ? [SIGABRT] : [SIGILL, SIGTRAP]
        #expect(expected.contains(p.terminationStatus), "status \(p.terminationStatus)")
        #expect(Self.contents(dir).isEmpty, "left behind: \(Self.contents(dir))")
    }

    @Test func withoutTheHandlersTheTemporaryIsLeft() throws {
        // The control: the same run without `Interrupts.install()` leaves the partial temporary,
        // which is what the handlers exist to remove.
        let r = try Self.interrupt("safetensors", output: "model.safetensors", signal: SIGTERM, install: false)
        #expect(r.reason == .uncaughtSignal && r.status == SIGTERM)
        #expect(r.left.count == 1 && r.left.first?.hasPrefix(".model.safetensors.tmp-") == true, "left: \(r.left)")
    }
}
