import Foundation
import Testing
import VCFuzzHarness

/// Replays the fuzz targets' seed corpora (Fuzz/corpus/<target>/: valid inputs, except those named
/// `plain-*`, which exercise a lower layer and may be accepted or rejected) and the inputs
/// that once broke a reader (Fuzz/regressions/<target>/) through the same `FuzzHarness` code the
/// libFuzzer targets run (docs/fuzzing.md).
@Suite struct FuzzCorpusTests {
    static let fuzzRoot: URL = {
        var url = URL(fileURLWithPath: #filePath)
        for _ in 0..<3 { url.deleteLastPathComponent() } // Tests/FuzzCorpusTests/x.swift -> repo
        return url.appendingPathComponent("Fuzz")
    }()

    static func files(_ kind: String, _ target: String) -> [URL] {
        let dir = fuzzRoot.appendingPathComponent(kind).appendingPathComponent(target)
        let names = (try? FileManager.default.contentsOfDirectory(atPath: dir.path)) ?? []
        return names.filter { !$0.hasPrefix(".") }.sorted().map { dir.appendingPathComponent($0) }
    }

    static let targetNames = FuzzHarness.targets.keys.sorted()

    @Test(arguments: targetNames)
    func seedsAreAcceptedAndTheirTruncationsRejected(_ target: String) throws {
        let run = try #require(FuzzHarness.targets[target])
        let seeds = Self.files("corpus", target)
        #expect(seeds.count >= 4, "corpus of \(target) has \(seeds.count) seeds")
        for url in seeds {
            let bytes = [UInt8](try Data(contentsOf: url))
            let outcome = run(bytes)
            if url.lastPathComponent.hasPrefix("plain-") {
                // Seeds for the parser below the format layer (plain pickles): any clean outcome.
                #expect(!outcome.isUnexpected, "\(target)/\(url.lastPathComponent): \(outcome)")
            } else {
                #expect(outcome == .accepted, "\(target)/\(url.lastPathComponent)")
            }
            if FuzzHarness.acceptsEverything.contains(target) {
                #expect(run(Array(bytes.dropLast())) == .accepted, "\(target)/\(url.lastPathComponent) minus its last byte")
                continue
            }
            // Cutting the last byte must be caught (safetensors: data section short; zip: no end
            // record; pickle: no STOP), never accepted nor crash.
            let cut = run(Array(bytes.dropLast()))
            guard case .rejected = cut else {
                Issue.record("\(target)/\(url.lastPathComponent) minus its last byte: \(cut)")
                continue
            }
        }
    }

    @Test(arguments: targetNames)
    func regressionsAreRejectedCleanly(_ target: String) throws {
        let run = try #require(FuzzHarness.targets[target])
        for url in Self.files("regressions", target) {
            let outcome = run([UInt8](try Data(contentsOf: url)))
            #expect(!outcome.isUnexpected, "\(target)/\(url.lastPathComponent): \(outcome)")
        }
    }

    /// Regenerates Fuzz/corpus/vcm (only when VC_WRITE_FUZZ_SEEDS is set; the seeds are committed).
    @Test(.enabled(if: ProcessInfo.processInfo.environment["VC_WRITE_FUZZ_SEEDS"] != nil))
    func writeVCMSeeds() throws {
        let dir = Self.fuzzRoot.appendingPathComponent("corpus/vcm")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        try VCMSeeds.write(to: dir.path)
    }

    @Test func emptyInputIsRejectedByEveryFormatTarget() {
        for (name, run) in FuzzHarness.targets where !FuzzHarness.acceptsEverything.contains(name) {
            guard case .rejected = run([]) else { Issue.record("\(name): empty input gave \(run([]))"); continue }
        }
    }
}
