import CFuzzDriver
import VCFuzzHarness
#if canImport(Glibc)
import Glibc
#endif

/// The harness the libFuzzer callback runs (set once, before the driver starts; the callback is a
/// C function pointer and cannot capture it).
nonisolated(unsafe) private var harness: (([UInt8]) -> FuzzOutcome)?

/// Runs libFuzzer on `FuzzHarness.targets[name]` with the process's command line (libFuzzer
/// flags and corpus folders, docs/fuzzing.md). An `.unexpected` outcome aborts, which libFuzzer
/// reports as a crash and saves as `crash-<sha1>`.
public func fuzzMain(_ name: String) -> Never {
    guard let h = FuzzHarness.targets[name] else {
        report("fuzz-\(name): no such harness")
        exit(2)
    }
    harness = h
    var argc = CommandLine.argc
    var argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>? = CommandLine.unsafeArgv
    let rc = LLVMFuzzerRunDriver(&argc, &argv) { data, size in
        let bytes = data.map { Array(UnsafeBufferPointer(start: $0, count: size)) } ?? []
        if let h = harness, case .unexpected(let m) = h(bytes) {
            report("UNEXPECTED: \(m)")
            abort()
        }
        return 0
    }
    exit(rc)
}

/// Writes a line to standard error (file descriptor 2; `stderr` is shared mutable state to Swift 6).
private func report(_ line: String) {
    let b = Array((line + "\n").utf8)
    _ = b.withUnsafeBytes { write(2, $0.baseAddress, $0.count) }
}
