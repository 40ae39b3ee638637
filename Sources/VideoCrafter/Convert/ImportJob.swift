import Foundation
import VCTensor
import VCFormats
import VCModels

/// Options of `vcconv import`.
public struct ImportOptions: Sendable {
    public var output: String
    /// The LVDM / LDM inference YAML (nil: pick a built-in preset by the tensor shapes).
    public var configPath: String?
    /// The open_clip model config JSON the YAML's `arch` names (nil: built in).
    public var textConfigPath: String?
    /// A built-in preset, chosen explicitly (exclusive with `configPath`).
    public var preset: ModelPreset?
    public var type: WeightType = .f32
    public var compression: VCMCompression = .none
    public var overrides: [QuantizationPolicy.Override] = []
    /// Also store tensors inference never uses (VAE encoder, skipped text block, CLIP head, schedule).
    public var keepUnused = false
    /// Replace an existing output (never the input).
    public var force = false
    /// Record the SHA-256 of the source (one extra read of the file).
    public var hashSource = true
    /// LoRA files merged into the weights while importing (in f32, at the source precision,
    /// before the type policy quantizes): `vcconv import --lora FILE[:M]`.
    public var loras: [LoRASpec] = []
    /// What the LoRA merge may do (temporal modules, unmatched modules).
    public var lora = LoRAOptions()

    public init(output: String) { self.output = output }
}

/// What an import did.
public struct ImportReport: Sendable {
    public var output: String
    public var kind: ModelKind
    /// "preset vc2-512" or the YAML file name.
    public var configSource: String
    public var tensorsWritten: Int
    public var fileBytes: Int
    /// Tensors of the source left out, by reason (`TensorUse` raw values, "ignorable").
    public var dropped: [String: Int]
    /// Stored dtype -> tensor count.
    public var dtypeCounts: [String: Int]
    public var warnings: [String]
    public var sourceSHA256: String
    /// The LoRA merge, when --lora was given.
    public var lora: MergeLoRAReport? = nil
}

/// Everything wrong between a checkpoint and a configuration, listed by name in one error.
public struct ImportCheckError: Error, CustomStringConvertible, Equatable {
    public var path: String
    public var configSource: String
    public var missing: [String] = []
    public var unexpected: [String] = []
    public var misshapen: [String] = []
    public var unusable: [String] = []
    public var schedule: [String] = []
    /// Extra first line (e.g. "no built-in preset matches").
    public var note = ""
    /// Names shown per list (every name for a real check; a few when explaining the closest preset).
    public var listLimit = Int.max

    public var isEmpty: Bool { missing.isEmpty && unexpected.isEmpty && misshapen.isEmpty && unusable.isEmpty && schedule.isEmpty }
    public var problemCount: Int { missing.count + unexpected.count + misshapen.count + unusable.count + schedule.count }

    public var description: String {
        var parts = ["\(path): the tensors do not match the configuration (\(configSource))" + (note.isEmpty ? "" : "; \(note)")]
        func list(_ title: String, _ items: [String]) {
            guard !items.isEmpty else { return }
            let shown = items.prefix(listLimit).map { "  \($0)" }.joined(separator: "\n")
            parts.append("\(items.count) \(title):\n\(shown)" + (items.count > listLimit ? "\n  ... and \(items.count - listLimit) more" : ""))
        }
        list("missing tensors", missing)
        list("unexpected tensors", unexpected)
        list("tensors with the wrong shape", misshapen)
        list("tensors with an unusable dtype", unusable)
        list("schedule buffers that disagree with the configuration", schedule)
        return parts.joined(separator: "\n")
    }
}

/// `vcconv import`: a checkpoint in official names -> a .vcm file (streaming, bounded memory,
/// atomic). Steps: map source names to canonical names, settle the configuration (YAML, preset,
/// or shape detection), check every tensor against it (one error lists every problem), check the
/// stored schedule against the recomputed one, then write the used tensors in canonical order,
/// converted by the quantization policy.
public final class ImportJob {
    public let sourcePath: String
    public let options: ImportOptions

    public init(source: String, options: ImportOptions) {
        self.sourcePath = source
        self.options = options
    }

    struct Settled {
        var loaded: LoadedConfig
        var configSource: String
        var presetName: String
        var yamlText: String
        var textJSON: String
    }

    public func run(progress: (JobProgress) -> Void = { _ in }) throws -> ImportReport {
        let opened = try ModelFiles.open(sourcePath)
        guard opened.format != .vcm else {
            throw FormatError.unsupported(path: sourcePath, "is already a .vcm file (re-quantizing a .vcm is not supported; import the original checkpoint)")
        }

        // 1-2. Canonical names and configuration.
        var source: any MappedTensorSource = opened.source
        var canonicalToSource: [String: String] = [:]
        var ignored: [String] = []
        var duplicates: [String] = []
        var headers: [String: (shape: [Int], dtype: DType)] = [:]
        var unusable: [String] = []
        func readHeader(_ canonical: String, _ name: String) {
            do {
                if let t = try source.tensor(named: name) { headers[canonical] = (t.shape, t.dtype) }
            } catch {
                unusable.append("\(name): \(error)")
            }
        }
        let settled: Settled
        if opened.format == .diffusers, let folder = opened.source as? DiffusersFolder {
            // diffusers names -> canonical names through the configuration's structure.
            settled = try settleDiffusersConfig(folder)
            let view = DiffusersCanonicalSource(folder: folder, names: try ModelTensorNames(config: settled.loaded.config))
            source = view
            for c in view.tensorNames {
                canonicalToSource[c] = c
                readHeader(c, c)
            }
            ignored = view.ignored
            duplicates = view.unconsumed
            unusable += view.incomplete
        } else {
            for name in opened.source.tensorNames {
                let c = KnownSpellings.canonical(name)
                if KnownSpellings.isIgnorable(c) { ignored.append(name); continue }
                if let other = canonicalToSource[c] {
                    duplicates.append("\(name) (another spelling of \(c), already given as \(other))")
                    continue
                }
                canonicalToSource[c] = name
                readHeader(c, name)
            }
            settled = try settleConfig(shapes: headers.mapValues(\.shape))
        }
        let config = settled.loaded.config

        // 3. Check.
        var problems = ImportJob.check(config, headers: headers, sourceNameOf: canonicalToSource, path: sourcePath,
                                       configSource: settled.configSource)
        problems.unexpected = (problems.unexpected + duplicates).sorted()
        problems.unusable += unusable
        try checkSchedule(config, headers: headers, sourceNameOf: canonicalToSource, source: source, into: &problems)
        guard problems.isEmpty else { throw problems }

        // 3b. LoRA deltas (resolved and validated before anything is written).
        var loraPlan: MergeLoRAPlan?
        if !options.loras.isEmpty {
            let view = RenamedTensorSource(base: source, names: canonicalToSource)
            let p = try MergeLoRAJob(base: view, config: config, loras: options.loras, options: options.lora).plan()
            if let e = p.errors.first { throw e }
            loraPlan = p
        }

        // 4. What to write, as what.
        let specs = ModelTensors.expected(for: config)
        let toWrite = specs.filter { headers[$0.name] != nil && ($0.isUsedByInference || options.keepUnused) }
        let policy = QuantizationPolicy(type: options.type, overrides: options.overrides)
        try policy.validate(toWrite)
        var dropped: [String: Int] = [:]
        for s in specs where headers[s.name] != nil && !(s.isUsedByInference || options.keepUnused) {
            dropped[s.use.rawValue, default: 0] += 1
        }
        if !ignored.isEmpty { dropped["ignorable", default: 0] += ignored.count }

        // 5. Write (the output is refused here, before the long passes, if it exists).
        let writer = try VCMWriter(path: options.output, overwrite: options.force, protecting: [sourcePath])
        do {
            var sha = ""
            var digest: [UInt8] = []
            if options.hashSource, let file = opened.file {
                digest = try SHA256.file(file) { progress(JobProgress(phase: "hashing", done: $0, total: file.size)) }
                sha = digest.map { String(format: "%02x", $0) }.joined()
            }
            let total = toWrite.reduce(0) { $0 + (headers[$1.name].flatMap { $0.dtype.byteCount(shape: $0.shape) } ?? 0) }
            var done = 0
            var counts: [String: Int] = [:]
            for spec in toWrite {
                guard let src = canonicalToSource[spec.name] else { continue }
                let loaded: Tensor?
                if let lp = loraPlan, lp.source.plan[spec.name] != nil {
                    loaded = try lp.source.tensor(named: spec.name)   // merged in f32, stored type kept
                } else {
                    loaded = try source.tensor(named: src)
                }
                guard let t = loaded else { continue }
                let target = policy.dtype(for: spec)
                let stored: Tensor
                do { stored = t.dtype == target ? t : try t.converted(to: target) } catch {
                    throw FormatError.unsupported(path: sourcePath, "tensor '\(src)': cannot convert \(t.dtype.rawValue) to \(target.rawValue): \(error)")
                }
                try writer.add(spec.name, stored, compression: options.compression)
                counts[target.rawValue, default: 0] += 1
                done += t.byteCount
                source.releasePages(named: src)
                progress(JobProgress(phase: "converting", done: done, total: total, item: spec.name))
            }

            var m = VCMManifest()
            m.modelKind = config.kind.rawValue
            let enc = JSONEncoder()
            enc.outputFormatting = [.sortedKeys]
            m.configJSON = String(decoding: try enc.encode(config), as: UTF8.self)
            m.configYAML = settled.yamlText
            m.textConfigJSON = settled.textJSON
            m.preset = settled.presetName
            m.vocabularyZstd = try CLIPTokenizer.bundledVocabularyZstd()
            let vocabText = try Zstd.decompress(m.vocabularyZstd, limit: 16 << 20)
            m.vocabularySize = vocabText.count
            m.vocabularyCRC32C = CRC32C.checksum(vocabText)
            var p = VCMProvenance()
            p.sourceName = URL(fileURLWithPath: sourcePath).lastPathComponent
            p.sourceSize = opened.size
            p.sourceSHA256 = digest
            p.sourceFormat = opened.format.rawValue
            p.converter = "vcconv"
            p.converterVersion = VideoCrafterVersion.string
            p.createdUnix = Int64(Date().timeIntervalSince1970)
            p.options = recordedOptions(settled)
            if let lp = loraPlan { p.options += MergeLoRAFiles.provenanceOptions(lp.report, includeTemporal: options.lora.includeTemporal) }
            m.provenance = p
            try writer.finish(m)
            let size = (try? FileManager.default.attributesOfItem(atPath: options.output)[.size] as? Int) ?? 0
            return ImportReport(output: options.output, kind: config.kind, configSource: settled.configSource,
                                tensorsWritten: writer.tensors.count, fileBytes: size, dropped: dropped,
                                dtypeCounts: counts, warnings: settled.loaded.warnings + (loraPlan?.report.warnings ?? []),
                                sourceSHA256: sha, lora: loraPlan?.report)
        } catch {
            writer.cancel()
            throw error
        }
    }

    func recordedOptions(_ s: Settled) -> [VCMOption] {
        var o = [VCMOption("type", options.type.rawValue), VCMOption("compress", options.compression.rawValue),
                 VCMOption("keep-unused", options.keepUnused ? "true" : "false")]
        if let c = options.configPath { o.append(VCMOption("config", URL(fileURLWithPath: c).lastPathComponent)) }
        if let t = options.textConfigPath { o.append(VCMOption("text-config", URL(fileURLWithPath: t).lastPathComponent)) }
        if !s.presetName.isEmpty { o.append(VCMOption("preset", s.presetName)) }
        for ov in options.overrides { o.append(VCMOption("override", "\(ov.pattern)=\(ov.dtype.rawValue)")) }
        return o
    }

    /// The configuration of a diffusers folder: --config if given, else its config.json files.
    func settleDiffusersConfig(_ folder: DiffusersFolder) throws -> Settled {
        if options.configPath != nil { return try settleConfig(shapes: [:]) }
        guard options.preset == nil, options.textConfigPath == nil else {
            throw ConfigError("a diffusers folder carries its own configuration; use --config YAML (or nothing), not --preset / --text-config")
        }
        func text(_ relative: String) throws -> String {
            let p = folder.path + "/" + relative
            do { return try String(contentsOfFile: p, encoding: .utf8) } catch {
                throw FormatError.io(path: p, "cannot read: \(error.localizedDescription)")
            }
        }
        let loaded: LoadedConfig
        do {
            loaded = try DiffusersConfig.parse(unet: try text("unet/config.json"), vae: try text("vae/config.json"),
                                               textEncoder: try text("text_encoder/config.json"),
                                               scheduler: try text("scheduler/scheduler_config.json"))
        } catch let e as ConfigError {
            throw FormatError.model(path: folder.path, e.message)
        }
        return Settled(loaded: loaded, configSource: "the folder's diffusers configs", presetName: "", yamlText: "", textJSON: "")
    }

    func settleConfig(shapes: [String: [Int]]) throws -> Settled {
        if let cp = options.configPath {
            guard options.preset == nil else { throw ConfigError("--config and --preset exclude each other") }
            let yaml: String, json: String?
            do { yaml = try String(contentsOfFile: cp, encoding: .utf8) } catch {
                throw FormatError.io(path: cp, "cannot read the config: \(error.localizedDescription)")
            }
            if let tp = options.textConfigPath {
                do { json = try String(contentsOfFile: tp, encoding: .utf8) } catch {
                    throw FormatError.io(path: tp, "cannot read the text config: \(error.localizedDescription)")
                }
            } else {
                json = nil
            }
            let loaded: LoadedConfig
            do { loaded = try LVDMConfig.parse(yaml: yaml, textConfigJSON: json) } catch let e as ConfigError {
                throw FormatError.model(path: cp, e.message)
            }
            return Settled(loaded: loaded, configSource: URL(fileURLWithPath: cp).lastPathComponent, presetName: "",
                           yamlText: yaml, textJSON: json ?? "")
        }
        guard options.textConfigPath == nil else { throw ConfigError("--text-config needs --config") }
        if let p = options.preset {
            return Settled(loaded: LoadedConfig(config: p.config, warnings: [], textArch: "ViT-H-14"),
                           configSource: "preset \(p.rawValue)", presetName: p.rawValue, yamlText: "", textJSON: "")
        }
        let matches = ModelPreset.matching(shapes)
        if matches.count == 1, let p = matches.first {
            return Settled(loaded: LoadedConfig(config: p.config, warnings: [], textArch: "ViT-H-14"),
                           configSource: "preset \(p.rawValue), detected from the shapes", presetName: p.rawValue,
                           yamlText: "", textJSON: "")
        }
        if matches.count > 1 {
            throw FormatError.model(path: sourcePath, "the tensors fit the presets \(matches.map(\.rawValue).joined(separator: " and ")), which differ only in settings the weights do not show; choose one with --preset or pass --config")
        }
        // No preset fits: explain against the closest one.
        var best: ImportCheckError?
        for p in ModelPreset.allCases {
            let headers = shapes.mapValues { (shape: $0, dtype: DType.f32) }
            var e = ImportJob.check(p.config, headers: headers, sourceNameOf: [:], path: sourcePath, configSource: "preset \(p.rawValue)")
            e.note = "no built-in preset matches these tensors; pass the model's YAML with --config (the closest preset is shown)"
            e.listLimit = 5
            if best == nil || e.problemCount < best?.problemCount ?? 0 { best = e }
        }
        throw best ?? ImportCheckError(path: sourcePath, configSource: "presets")
    }

    /// Compares the tensors of a source with the configuration.
    static func check(_ config: ModelConfig, headers: [String: (shape: [Int], dtype: DType)], sourceNameOf: [String: String],
                      path: String, configSource: String) -> ImportCheckError {
        var e = ImportCheckError(path: path, configSource: configSource)
        let specs = ModelTensors.expected(for: config)
        let expected = Set(specs.map(\.name))
        func shown(_ n: String) -> String { sourceNameOf[n].map { $0 == n ? n : "\($0) (as \(n))" } ?? n }
        for s in specs {
            guard let h = headers[s.name] else {
                if s.isUsedByInference { e.missing.append("\(s.name) \(s.shape)") }
                continue
            }
            if h.shape != s.shape { e.misshapen.append("\(shown(s.name)): expected \(s.shape), found \(h.shape)") }
            if ![.f32, .f16, .bf16].contains(h.dtype) { e.unusable.append("\(shown(s.name)): \(h.dtype.rawValue) (floating point expected)") }
        }
        e.unexpected = headers.keys.filter { !expected.contains($0) }.map(shown).sorted()
        return e
    }

    /// Stored schedule buffers must be what the configuration implies.
    func checkSchedule(_ config: ModelConfig, headers: [String: (shape: [Int], dtype: DType)], sourceNameOf: [String: String],
                       source: any TensorSource, into e: inout ImportCheckError) throws {
        let expected = ScheduleBuffers.compute(config.diffusion)
        for (name, values) in expected.sorted(by: { $0.key < $1.key }) {
            guard let h = headers[name], h.shape == [values.count], let src = sourceNameOf[name],
                  let t = try source.tensor(named: src) else { continue }
            guard let dev = ScheduleBuffers.deviation(stored: t.floats(), expected: values) else { continue }
            if dev.relative > ScheduleBuffers.tolerance {
                let hint = name == "scale_arr" ? "use_scale, scale_a, scale_b, mid_step, fix_scale_bug" : "linear_start, linear_end, timesteps"
                e.schedule.append("\(name): value \(dev.index) differs from the recomputed one by \(String(format: "%.3g", dev.relative)) (relative); check \(hint)")
            }
        }
    }
}
