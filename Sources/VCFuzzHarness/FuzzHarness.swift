import Foundation
import VCFormats
import VCModels
import VCTensor

/// What one input did to a reader.
public enum FuzzOutcome: Equatable, Sendable {
    /// Parsed; every tensor was read.
    case accepted
    /// Rejected with the reader's typed error (the expected result for most mutated inputs).
    case rejected(String)
    /// Anything else: an error of the wrong type, or an inconsistency between what the reader
    /// accepted and what it then produced. The fuzz targets abort on this; the corpus tests fail.
    case unexpected(String)

    public var isUnexpected: Bool { if case .unexpected = self { return true }; return false }
}

/// The code each fuzz target (Fuzz/Targets/<name>) runs on one input, kept here, in the normal
/// build, so that the corpus tests (Tests/FuzzCorpusTests) replay the seed corpus and every
/// regression input through exactly the same path. The targets only turn libFuzzer's buffer into
/// `[UInt8]`. See docs/fuzzing.md.
public enum FuzzHarness {
    /// Target name -> entry point. The names are the `fuzz-<name>` products of Fuzz/Package.swift
    /// and the folders of Fuzz/corpus and Fuzz/regressions.
    public static let targets: [String: @Sendable ([UInt8]) -> FuzzOutcome] = [
        "safetensors": safetensors,
        "zip": zip,
        "pickle": pickle,
        "tokenizer": tokenizer,
        "vcm": vcm,
        "lora": lora,
    ]

    /// Targets for which every input is valid (there is nothing to reject: any text is a prompt).
    public static let acceptsEverything: Set<String> = ["tokenizer"]

    /// Classifies a thrown error: the readers' typed errors are expected, anything else is not.
    static func classify(_ error: any Error) -> FuzzOutcome {
        if let e = error as? FormatError { return .rejected(e.description) }
        return .unexpected("\(type(of: error)): \(error)")
    }

    // MARK: safetensors

    /// Opens the bytes as a .safetensors file and reads every tensor (as a runtime tensor where
    /// the dtype allows, as raw bytes always, as doubles for F32/F64).
    public static func safetensors(_ data: [UInt8]) -> FuzzOutcome {
        do {
            let f = try SafetensorsFile(file: MappedFile(bytes: data, path: "fuzz.safetensors"))
            for e in f.entries {
                guard let raw = try f.rawStorage(named: e.name) else { return .unexpected("entry '\(e.name)' has no storage") }
                guard raw.byteCount == e.byteCount else { return .unexpected("entry '\(e.name)': \(raw.byteCount) bytes, expected \(e.byteCount)") }
                if e.dtype.runtime != nil {
                    guard let t = try f.tensor(named: e.name) else { return .unexpected("entry '\(e.name)' has no tensor") }
                    guard t.shape == e.shape, t.byteCount == e.byteCount else {
                        return .unexpected("tensor '\(e.name)': \(t.shape) / \(t.byteCount) bytes, header says \(e.shape) / \(e.byteCount)")
                    }
                } else {
                    do { _ = try f.tensor(named: e.name); return .unexpected("tensor '\(e.name)' of \(e.dtypeName) was read") }
                    catch let err as FormatError { if case .unsupported = err {} else { return .unexpected("\(err)") } }
                }
                if e.dtype == .f32 || e.dtype == .f64, let d = try f.doubles(named: e.name) {
                    guard d.count * e.dtype.bits == e.byteCount * 8 else { return .unexpected("doubles of '\(e.name)': \(d.count) values") }
                }
            }
            guard f.tensorNames.count == f.entries.count else { return .unexpected("names and entries differ") }
            return .accepted
        } catch { return classify(error) }
    }

    // MARK: zip + torch checkpoint

    /// Opens the bytes as a PyTorch zip checkpoint (zip reader, CRC-checked data.pkl, unpickler,
    /// tensor interpretation) and reads every tensor; if the checkpoint layer rejects it, still
    /// opens the bytes as a plain zip archive and CRC-checks every stored entry.
    public static func zip(_ data: [UInt8]) -> FuzzOutcome {
        let file = MappedFile(bytes: data, path: "fuzz.ckpt")
        let checkpoint = readCheckpoint(file)
        if checkpoint.isUnexpected { return checkpoint }
        do {
            let a = try ZipArchive(file: file)
            for e in a.entries {
                guard e.isStored else { continue }
                let r = try a.storedRange(e)
                guard r.lowerBound >= 0, r.upperBound <= data.count else { return .unexpected("entry '\(e.name)': range \(r) outside \(data.count) bytes") }
                _ = try a.verifyCRC(e)
                if e.size <= 1 << 16 { _ = try? a.bytes(e) }
            }
        } catch {
            let z = classify(error)
            if z.isUnexpected { return z }
        }
        return checkpoint
    }

    /// Runs the bytes as the data.pkl of an otherwise valid checkpoint: a stored zip with
    /// `archive/data.pkl` = the input and storages `archive/data/0` ... `archive/data/3` of
    /// 16, 64, 256 and 0 bytes, so that the unpickler and the tensor interpretation are reached
    /// for every input (a mutated data.pkl inside a real zip would almost always fail its CRC).
    public static func pickle(_ data: [UInt8]) -> FuzzOutcome {
        var z = ZipBuilder()
        z.add("archive/data.pkl", data)
        z.add("archive/byteorder", Array("little".utf8))
        for (i, n) in [16, 64, 256, 0].enumerated() {
            z.add("archive/data/\(i)", (0..<n).map { UInt8(truncatingIfNeeded: $0 &* 37 &+ i) })
        }
        return readCheckpoint(MappedFile(bytes: z.finish(), path: "fuzz-pickle.ckpt"))
    }

    static func readCheckpoint(_ file: MappedFile) -> FuzzOutcome {
        do {
            let c = try TorchCheckpoint(file: file)
            for e in c.entries {
                guard e.fileOffset >= 0, e.byteCount >= 0, e.fileOffset <= file.size, e.byteCount <= file.size - e.fileOffset else {
                    return .unexpected("tensor '\(e.name)': bytes [\(e.fileOffset), +\(e.byteCount)) outside the \(file.size)-byte file")
                }
                guard let raw = try c.rawStorage(named: e.name), raw.byteCount == e.byteCount else {
                    return .unexpected("tensor '\(e.name)': raw storage missing or of the wrong size")
                }
                if e.dtype.runtime != nil {
                    guard let t = try c.tensor(named: e.name), t.shape == e.shape, t.byteCount == e.byteCount else {
                        return .unexpected("tensor '\(e.name)': read back with another shape or size")
                    }
                } else {
                    do { _ = try c.tensor(named: e.name); return .unexpected("tensor '\(e.name)' of \(e.dtype.rawValue) was read") }
                    catch let err as FormatError { if case .unsupported = err {} else { return .unexpected("\(err)") } }
                }
            }
            return .accepted
        } catch { return classify(error) }
    }
}

// MARK: tokenizer

extension FuzzHarness {
    /// The bundled CLIP tokenizer (built once: ~49k vocabulary entries).
    static let clip: CLIPTokenizer? = try? CLIPTokenizer.bundled()

    /// Tokenizes the bytes as a prompt (UTF-8, invalid sequences as U+FFFD, as a command line
    /// would arrive) and checks the framing open_clip guarantees: `contextLength` ids, SOT first,
    /// EOT then zero padding, every id in the vocabulary, no special token unless the text spells
    /// one, and decoding the ids works. (One tokenization per input: the text cleaning dominates
    /// the cost, a few hundred inputs per second.)
    public static func tokenizer(_ data: [UInt8]) -> FuzzOutcome {
        guard let tok = clip else { return .unexpected("the bundled tokenizer cannot be built") }
        let text = String(decoding: data, as: UTF8.self)
        let ids = tok.tokenize(text)
        guard ids.count == tok.contextLength else { return .unexpected("\(ids.count) ids, not \(tok.contextLength)") }
        guard ids.first == tok.startOfText, ids.contains(tok.endOfText) else { return .unexpected("no SOT/EOT framing: \(ids)") }
        guard ids.allSatisfy({ $0 >= 0 && Int($0) < tok.vocabularySize }) else { return .unexpected("id outside the vocabulary: \(ids)") }
        // The ids between SOT and the first EOT are `encode(text)` (cut to fit); the rest is padding.
        guard let eot = ids.firstIndex(of: tok.endOfText), text.contains("<") || ids[(eot + 1)...].allSatisfy({ $0 == 0 }) else {
            return .unexpected("no zero padding after EOT: \(ids)")
        }
        let body = Array(ids[1..<eot])
        // Special tokens come only from their spelled-out names in the text.
        guard text.contains("<") || !body.contains(where: { $0 == tok.startOfText || $0 == tok.endOfText }) else {
            return .unexpected("a special token from text without one: \(ids)")
        }
        _ = tok.decode(body)
        return .accepted
    }
}

// MARK: .vcm

extension FuzzHarness {
    /// Opens the bytes as a .vcm file after recomputing the header's and the manifest's CRC-32C
    /// (so that mutations reach the manifest decoder and the validation instead of failing a
    /// checksum), then: with `verify`, reads every tensor (a tensor checksum mismatch is a clean
    /// rejection), `verifyAll()` and the vocabulary; without `verify`, reads every tensor and
    /// checks its shape, dtype and size against the record.
    public static func vcm(_ input: [UInt8]) -> FuzzOutcome {
        let data = fixingVCMChecksums(input)
        let verified = readVCM(data, verify: true)
        if verified.isUnexpected { return verified }
        let unverified = readVCM(data, verify: false)
        if unverified.isUnexpected { return unverified }
        for o in [verified, unverified] { if case .rejected = o { return o } }
        return .accepted
    }

    /// `input` with the manifest CRC-32C (bytes 48..<52) and the header CRC-32C (60..<64)
    /// recomputed, where the header's manifest range lies inside the input (formats/vcm.md).
    public static func fixingVCMChecksums(_ input: [UInt8]) -> [UInt8] {
        guard input.count >= VCMFormat.headerSize else { return input }
        var b = input
        func le(_ o: Int) -> UInt64 { (0..<8).reduce(0) { $0 | UInt64(b[o + $1]) << (8 * UInt64($1)) } }
        func put(_ v: UInt32, at o: Int) { for i in 0..<4 { b[o + i] = UInt8(truncatingIfNeeded: v >> (8 * UInt32(i))) } }
        let mo = le(32), ms = le(40)
        if mo <= UInt64(b.count), ms <= UInt64(b.count) - mo {
            put(CRC32C.checksum(Array(b[Int(mo)..<Int(mo + ms)])), at: 48)
        }
        put(CRC32C.checksum(Array(b[0..<60])), at: 60)
        return b
    }

    static func readVCM(_ data: [UInt8], verify: Bool) -> FuzzOutcome {
        do {
            let f = try VCMFile(file: MappedFile(bytes: data, path: "fuzz.vcm"), verify: verify)
            var rejected: FormatError? = nil
            for r in f.manifest.tensors {
                do {
                    guard let t = try f.tensor(named: r.name) else { return .unexpected("record '\(r.name)' has no tensor") }
                    guard t.shape == r.shape, t.dtype == r.dtype, t.byteCount == r.size else {
                        return .unexpected("tensor '\(r.name)': \(t.dtype) \(t.shape) \(t.byteCount) bytes, record says \(r.dtype) \(r.shape) \(r.size)")
                    }
                } catch let e as FormatError {
                    rejected = rejected ?? e
                }
            }
            if verify {
                do { try f.verifyAll() } catch let e as FormatError { rejected = rejected ?? e }
                do { _ = try f.vocabulary() } catch let e as FormatError { if case .model = e {} else { rejected = rejected ?? e } }
            }
            return rejected.map { .rejected($0.description) } ?? .accepted
        } catch { return classify(error) }
    }
}

// MARK: LoRA

extension FuzzHarness {
    /// The model LoRAs are resolved against: the tiny VC2 fixture (fixtures/vc2-tiny-a, found from
    /// this source file's location, as the fuzz targets are built from the same checkout).
    struct LoRABase: @unchecked Sendable {
        let names: ModelTensorNames
        let resolver: LoRANameResolver
        let weights: SafetensorsFile
    }

    static let loraBase: LoRABase? = {
        var root = URL(fileURLWithPath: #filePath)
        for _ in 0..<3 { root.deleteLastPathComponent() } // Sources/VCFuzzHarness/x.swift -> repo
        let dir = root.appendingPathComponent("fixtures/vc2-tiny-a")
        guard let yaml = try? String(contentsOf: dir.appendingPathComponent("config.yaml"), encoding: .utf8),
              let text = try? String(contentsOf: dir.appendingPathComponent("open_clip_config.json"), encoding: .utf8),
              let config = try? LVDMConfig.parse(yaml: yaml, textConfigJSON: text).config,
              let names = try? ModelTensorNames(config: config),
              let weights = try? SafetensorsFile(path: dir.appendingPathComponent("model.safetensors").path) else { return nil }
        return LoRABase(names: names, resolver: LoRANameResolver(names: names), weights: weights)
    }()

    /// Opens the bytes as a LoRA .safetensors file, resolves it against the tiny VC2 model
    /// (kohya / PEFT / LyCORIS key parsing, metadata, factor checks), plans a merge at 0.8 with
    /// temporal and unmatched modules allowed, and computes every merged tensor, which must keep
    /// its base shape and stay finite.
    public static func lora(_ data: [UInt8]) -> FuzzOutcome {
        guard let b = loraBase else { return .unexpected("the tiny model fixture cannot be loaded") }
        do {
            let source = try SafetensorsFile(file: MappedFile(bytes: data, path: "fuzz-lora.safetensors"))
            let file = try LoRAFile.load(source, metadata: source.metadata, name: "fuzz-lora.safetensors",
                                         names: b.names, resolver: b.resolver, base: b.weights)
            var options = LoRAOptions()
            options.includeTemporal = true
            options.allowUnmatched = true
            let deltas = try file.check(options: options)
            let merged = LoRAMergedSource(base: b.weights, plan: LoRAMergedSource.plan([(deltas, 0.8)]))
            for name in merged.plan.keys.sorted() {
                guard let before = try b.weights.tensor(named: name), let after = try merged.tensor(named: name) else {
                    return .unexpected("merged tensor '\(name)' is missing")
                }
                guard after.shape == before.shape else { return .unexpected("merged '\(name)' has shape \(after.shape), base \(before.shape)") }
                if after.dtype == .f32, let i = after.firstNonFinite() {
                    return .unexpected("merged '\(name)' has a non-finite value at element \(i) (finite base and factors)")
                }
            }
            return .accepted
        } catch let e as LoRAError {
            return .rejected(e.description)
        } catch { return classify(error) }
    }
}
