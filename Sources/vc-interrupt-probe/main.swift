// DEV ONLY (not a product): writes a large output slowly so that the interrupt test
// (Tests/VCTensorTests/InterruptTests.swift) can signal it mid-write and check that no partial
// file is left. Prints "writing <temporary files>" once the temporary output exists.
//
//     vc-interrupt-probe safetensors|vcm|png|gif OUTPUT [--no-install]
//     vc-interrupt-probe crash-abort|crash-trap OUTPUT   starts a safetensors write, then dies of
//                                            abort() (what the kernels do when memory runs out) or
//                                            of a Swift runtime trap (preconditionFailure)
//     vc-interrupt-probe registry FOLDER     registers FOLDER/.a.tmp, FOLDER/.frames.tmp/ (40
//                                            files) and rel.tmp (relative, in FOLDER), and
//                                            FOLDER/.b.tmp, which it unregisters; then waits
import Foundation
import VCFormats
import VCTensor
import VCVideo

func say(_ s: String) { FileHandle.standardOutput.write(Data((s + "\n").utf8)) }

func temporaries(near path: String) -> [String] {
    let dir = URL(fileURLWithPath: path).deletingLastPathComponent().path
    return ((try? FileManager.default.contentsOfDirectory(atPath: dir)) ?? []).filter { $0.contains(".tmp-") }.sorted()
}

let args = CommandLine.arguments
guard args.count >= 3 else {
    say("usage: vc-interrupt-probe safetensors|png|gif OUTPUT [--no-install]")
    exit(2)
}
let kind = args[1], out = args[2]
// A child inherits its parent's signal mask, and the test runner spawns from threads that block
// every signal: start from a clean mask, like a process started by a shell.
var none = sigset_t()
sigemptyset(&none)
sigprocmask(SIG_SETMASK, &none, nil)
if !args.contains("--no-install") {
    do { try Interrupts.install() } catch { say("\(error)"); exit(1) }
}

do {
    switch kind {
    case "safetensors":
        // 400 tensors of 1 MiB, one every 25 ms: about 10 s in all.
        let n = 400
        let t = Tensor(zeros: [512, 512], dtype: .f32)
        let w = try SafetensorsWriter(path: out, layout: (0..<n).map { .init(name: "t\($0)", dtype: .f32, shape: [512, 512]) })
        for i in 0..<n {
            try w.write("t\(i)", t)
            if i == 1 { say("writing \(temporaries(near: out).joined(separator: " "))") }
            usleep(25_000)
        }
        try w.finish()
    case "vcm":
        // 400 tensors of 1 MiB through VCMWriter (AtomicOutput), one every 25 ms; with --fast no
        // pauses (to make a file for measuring, e.g. vcformats-scan --vcm-verify-cost).
        let fast = args.contains("--fast")
        let n = Int(args.first(where: { $0.hasPrefix("--tensors=") })?.dropFirst(10) ?? "") ?? 400
        let base = try Tensor(shape: [512, 512], floats: (0..<(512 * 512)).map { Float($0 % 1000) / 1000 })
        let w = try VCMWriter(path: out, overwrite: true)
        for i in 0..<n {
            try w.add("t\(i)", base)
            if i == 1 { say("writing \(temporaries(near: out).joined(separator: " "))") }
            if !fast { usleep(25_000) }
        }
        try w.finish(VCMManifest())
    case "crash-abort", "crash-trap":
        let t = Tensor(zeros: [512, 512], dtype: .f32)
        let w = try SafetensorsWriter(path: out, layout: (0..<4).map { .init(name: "t\($0)", dtype: .f32, shape: [512, 512]) })
        try w.write("t0", t)
        try w.write("t1", t)
        say("writing \(temporaries(near: out).joined(separator: " "))")
        if kind == "crash-abort" { abort() }
        preconditionFailure("vc-interrupt-probe: a runtime trap")
    case "png", "gif":
        let w = try VideoWriter(path: out, width: 64, height: 64)
        let frame = try Frame(width: 64, height: 64, rgb: [UInt8](repeating: 128, count: 64 * 64 * 3))
        for i in 0..<400 {
            try w.append(frame)
            if i == 1 { say("writing \(temporaries(near: out).joined(separator: " "))") }
            usleep(25_000)
        }
        try w.finish()
    case "registry":
        let fm = FileManager.default
        let dir = URL(fileURLWithPath: out)
        try Data([1]).write(to: dir.appendingPathComponent(".a.tmp"))
        try Data([2]).write(to: dir.appendingPathComponent(".b.tmp"))
        let frames = dir.appendingPathComponent(".frames.tmp")
        try fm.createDirectory(at: frames, withIntermediateDirectories: false)
        for i in 0..<40 { try Data(repeating: 3, count: 100).write(to: frames.appendingPathComponent("frame_\(i).png")) }
        _ = Interrupts.register(dir.appendingPathComponent(".a.tmp").path)
        let b = Interrupts.register(dir.appendingPathComponent(".b.tmp").path)
        _ = Interrupts.register(frames.path, directory: true)
        let home = fm.currentDirectoryPath
        guard fm.changeCurrentDirectoryPath(dir.path) else { say("cannot chdir"); exit(1) }
        try Data([4]).write(to: URL(fileURLWithPath: "rel.tmp"))
        _ = Interrupts.register("rel.tmp")
        _ = fm.changeCurrentDirectoryPath(home)
        Interrupts.unregister(b)
        say("writing .a.tmp .frames.tmp rel.tmp")
        sleep(10)
    default:
        say("unknown kind \(kind)")
        exit(2)
    }
} catch {
    say("error: \(error)")
    exit(1)
}
say("done")
