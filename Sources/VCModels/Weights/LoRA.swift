// LoRA deltas: resolving a LoRA file's modules to canonical tensors, validating them against the
// base weights, and the merge arithmetic.
//
// Merge rule (kohya-ss/sd-scripts@48d368f networks/lora.py LoRAModule.merge_to, networks/merge_lora.py;
// PEFT src/peft/tuners/lora/layer.py get_delta_weight; LyCORIS@f49d30d lycoris/functional/{locon,loha,lokr}.py):
//   W' = W + s * delta,  s = multiplier * alpha / r  (rsLoRA: alpha / sqrt(r)), evaluated in Double
//   and applied as one Float multiply; delta in f32:
//     LoRA / LoCon  up[out, r] @ down[r, in*kh*kw]             (a conv is contracted per kernel tap)
//     Tucker        up[out, r'] @ (mid[r', r, kh, kw] x down[r, in])
//     LoHa          (w1a @ w1b) * (w2a @ w2b)                   (elementwise)
//     LoKr          kron(w1, w2)                                (scale 1 when neither factor is low-rank)
// The base weight is converted to f32, merged and converted back to its stored type; rows no delta
// touches (the fused in_proj's q/k/v slices) keep their original bytes.
import Foundation
import VCTensor

/// The tensor (or row slice of it) a LoRA module changes.
public struct LoRATarget: Sendable, Equatable, Codable {
    public var tensor: String
    /// Rows of the tensor (q/k/v of the text encoder's fused `in_proj_weight`); nil = all rows.
    public var rows: Range<Int>?
    public var origin: TensorOrigin

    public init(tensor: String, rows: Range<Int>? = nil, origin: TensorOrigin) {
        self.tensor = tensor; self.rows = rows; self.origin = origin
    }
}

/// LoRA module names -> canonical tensors, built by enumerating the model's own modules (never by
/// guessing which underscores were dots): every diffusers UNet / CLIPTextModel module path, its
/// kohya spelling (`lora_unet_` / `lora_te_` + path with '.' -> '_'), and the canonical LDM module
/// paths (dotted, and kohya-style `lora_unet_<LDM path>` as kohya writes for LDM-named models).
public struct LoRANameResolver: Sendable {
    private enum Entry: Sendable { case target(LoRATarget), ambiguous }
    private var kohya: [String: Entry] = [:]
    private var unetPaths: [String: Entry] = [:]
    private var textPaths: [String: Entry] = [:]
    private var ldmPaths: [String: Entry] = [:]

    public init(names: ModelTensorNames) {
        func put(_ dict: inout [String: Entry], _ key: String, _ t: LoRATarget) {
            if let old = dict[key], case .target(let o) = old, o == t { return }
            dict[key] = dict[key] == nil ? .target(t) : .ambiguous
        }
        let unetPrefix = ModelTensors.unetPrefix
        for t in names.tensors where t.name.hasSuffix(".weight") && !t.name.hasPrefix(ModelTensors.vaePrefix) {
            let module = String(t.name.dropLast(".weight".count))
            let target = LoRATarget(tensor: t.name, origin: t.origin)
            put(&ldmPaths, module, target)
            if module.hasPrefix(unetPrefix) {
                let inner = String(module.dropFirst(unetPrefix.count))
                put(&ldmPaths, "diffusion_model." + inner, target)
                put(&kohya, "lora_unet_" + inner.replacingOccurrences(of: ".", with: "_"), target)
            }
        }
        for t in names.tensors {
            for s in t.sources where s.key.hasSuffix(".weight") && s.component != .vae {
                let module = String(s.key.dropLast(".weight".count))
                var target = LoRATarget(tensor: t.name, origin: t.origin)
                if case .rows(let r) = s.transform { target.rows = r }
                let underscored = module.replacingOccurrences(of: ".", with: "_")
                switch s.component {
                case .unet:
                    put(&unetPaths, module, target)
                    put(&kohya, "lora_unet_" + underscored, target)
                case .textEncoder:
                    put(&textPaths, module, target)
                    put(&kohya, "lora_te_" + underscored, target)
                case .vae: break
                }
            }
        }
    }

    private static func unwrap(_ e: Entry?) -> LoRATarget?? {
        switch e {
        case .none: return .none
        case .some(.ambiguous): return .some(nil)
        case .some(.target(let t)): return .some(t)
        }
    }

    /// The target of a kohya module name (`lora_unet_...` / `lora_te_...`); nil if unknown.
    public func resolve(kohya name: String) -> LoRATarget? {
        if case .some(.some(let t)) = Self.unwrap(kohya[name]) { return t }
        return nil
    }

    /// The target of a dotted module path in `namespace`; nil if unknown.
    public func resolve(path: String, namespace: LoRANamespace) -> LoRATarget? {
        let tables: [[String: Entry]]
        switch namespace {
        case .unet: tables = [unetPaths, ldmPaths]
        case .textEncoder: tables = [textPaths, ldmPaths]
        case .any: tables = [unetPaths, textPaths, ldmPaths]
        }
        for t in tables {
            if case .some(.some(let target)) = Self.unwrap(t[path]) { return target }
        }
        return nil
    }
}

/// One LoRA module's delta, validated against the base tensor it targets.
public struct LoRADelta: Sendable {
    /// A LoKr factor: stored whole, or as a low-rank product a @ b.
    public enum LoKrFactor: Sendable {
        case full(Tensor)
        case product(Tensor, Tensor)
    }

    /// The factors, all f32.
    public enum Factors: Sendable {
        /// up [out, r(,1,1)], down [r, in(, kh, kw)]; Tucker adds mid [r', r, kh, kw] (down is 1x1, up [out, r']).
        case lowRank(up: Tensor, down: Tensor, mid: Tensor?)
        /// LoHa: (w1a [out, r] @ w1b [r, K]) * (w2a [out, r2] @ w2b [r2, K]).
        case loha(w1a: Tensor, w1b: Tensor, w2a: Tensor, w2b: Tensor)
        /// LoKr: kron(w1 [a, b], w2 [c, d(, kh, kw)]).
        case lokr(w1: LoKrFactor, w2: LoKrFactor)
    }

    /// The module as the file names it.
    public var module: String
    /// The file keys of this module.
    public var keys: [String]
    public var target: LoRATarget
    public var factors: Factors
    /// r (nil for a LoKr whose factors are both whole: its scale is the multiplier alone).
    public var rank: Int?
    public var alpha: Double
    public var rsLoRA: Bool

    /// "LoRA", "LoCon" (k x k conv), "LoCon (Tucker)", "LoHa" or "LoKr".
    public var kind: String {
        switch factors {
        case .lowRank(_, let down, let mid):
            if mid != nil { return "LoCon (Tucker)" }
            return down.shape.dropFirst(2).contains { $0 != 1 } ? "LoCon" : "LoRA"
        case .loha: return "LoHa"
        case .lokr: return "LoKr"
        }
    }

    /// s = multiplier * alpha / r (rsLoRA: / sqrt(r)), in Double as the reference computes it.
    public func scale(multiplier m: Double) -> Double {
        guard let r = rank else { return m }
        return rsLoRA ? m * alpha / Double(r).squareRoot() : m * alpha / Double(r)
    }
}

/// What a merge may do.
public struct LoRAOptions: Sendable, Equatable {
    /// Allow deltas on VideoCrafter's temporal modules (and `fps_embedding`).
    public var includeTemporal = false
    /// Skip (report) LoRA modules that match no tensor instead of failing.
    public var allowUnmatched = false
    /// Dequantize q8_0 base weights, merge, and quantize again (lossy).
    public var requantize = false
    public init() {}
}

/// A LoRA file resolved against a model.
public struct LoRAFile: Sendable {
    public var name: String
    /// The scheme of most of its modules.
    public var scheme: LoRAScheme
    /// Deltas on spatial tensors (and on temporal ones when included).
    public var deltas: [LoRADelta]
    /// Deltas on temporal / video-only tensors (merged only with `includeTemporal`).
    public var temporal: [LoRADelta]
    /// Modules that match no tensor of the model (as the file names them).
    public var unmatched: [String]

    /// Parses and validates every key of `source` (a LoRA file; `metadata` is its safetensors
    /// `__metadata__`) against `base`, the model's weights. Throws on malformed tensors, unknown
    /// keys and refused constructs; classifies the rest (policy is the caller's:
    /// see `LoRAFile.check(options:)`).
    public static func load(_ source: any TensorSource, metadata: [String: String], name: String,
                            names: ModelTensorNames, base: any TensorSource) throws -> LoRAFile {
        try load(source, metadata: metadata, name: name, names: names, resolver: LoRANameResolver(names: names), base: base)
    }

    /// `load` with a resolver built once for `names` (building one walks every name of the model;
    /// the LoRA fuzz target loads thousands of files against the same model).
    public static func load(_ source: any TensorSource, metadata: [String: String], name: String,
                            names: ModelTensorNames, resolver: LoRANameResolver, base: any TensorSource) throws -> LoRAFile {
        try checkBaseModelMetadata(metadata, file: name)
        let peft = try PEFTConfigs(metadata: metadata, file: name)
        let groups = try LoRAKeyParser.group(keys: source.tensorNames, file: name)
        var file = LoRAFile(name: name, scheme: .kohya, deltas: [], temporal: [], unmatched: [])
        var schemes: [LoRAScheme: Int] = [:]
        for g in groups {
            schemes[g.scheme, default: 0] += 1
            var target: LoRATarget?
            for c in g.candidates where target == nil {
                target = g.scheme == .kohya ? resolver.resolve(kohya: c) : resolver.resolve(path: c, namespace: g.namespace)
            }
            guard let target, let baseTensor = try base.tensor(named: target.tensor) else {
                // Still validate what can be validated without a target (NaN/Inf, rank agreement).
                _ = try loadFactors(g, source: source, file: name)
                file.unmatched.append(g.module)
                continue
            }
            let delta = try makeDelta(g, target: target, base: baseTensor, source: source, peft: peft, names: names, file: name)
            if target.origin.isVideoOnly { file.temporal.append(delta) } else { file.deltas.append(delta) }
        }
        file.scheme = schemes.max { a, b in a.value < b.value || (a.value == b.value && a.key.rawValue > b.key.rawValue) }?.key ?? .kohya
        return file
    }

    /// Applies the policy and returns the deltas to merge: unmatched modules are an error unless
    /// allowed; deltas on temporal (video-only) modules are left out unless included ("spatial only
    /// by default"; the caller reports them as skipped).
    public func check(options: LoRAOptions) throws -> [LoRADelta] {
        if !unmatched.isEmpty, !options.allowUnmatched { throw LoRAError.unmatched(file: name, modules: unmatched) }
        return options.includeTemporal ? deltas + temporal : deltas
    }

    // MARK: parsing

    private static func checkBaseModelMetadata(_ m: [String: String], file: String) throws {
        if let v = m["ss_base_model_version"] {
            let l = v.lowercased()
            if l.hasPrefix("sd_v1") {
                throw LoRAError.sd1(file: file, key: "__metadata__.ss_base_model_version", "the file says it was trained on '\(v)'")
            }
            if l.hasPrefix("sdxl") || l.hasPrefix("sd3") || l.hasPrefix("flux") {
                throw LoRAError.unsupported(file: file, key: "__metadata__.ss_base_model_version",
                                            "the file says it was trained on '\(v)', which does not fit an SD 2.x-based model")
            }
        } else if m["ss_v2"]?.lowercased() == "false" {
            throw LoRAError.sd1(file: file, key: "__metadata__.ss_v2", "the file says ss_v2 = False")
        }
    }

    /// The module's tensors as f32, checked to be finite float tensors.
    private static func loadFactors(_ g: LoRAGroup, source: any TensorSource, file: String) throws -> [LoRAPart: Tensor] {
        var out: [LoRAPart: Tensor] = [:]
        for (part, key) in g.parts {
            guard let t = try source.tensor(named: key) else { throw LoRAError.malformed(file: file, key: key, "listed but unreadable") }
            guard t.dtype == .f32 || t.dtype == .f16 || t.dtype == .bf16 else {
                throw LoRAError.malformed(file: file, key: key, "dtype \(t.dtype.rawValue) is not a float type")
            }
            let f = try t.converted(to: .f32)
            if let i = f.firstNonFinite() {
                throw LoRAError.malformed(file: file, key: key, "value \(f.floats()[i]) at element \(i) is not finite (NaN/Inf)")
            }
            if part == .alpha {
                guard f.count == 1 else { throw LoRAError.malformed(file: file, key: key, "alpha must be one value, found shape \(f.shape)") }
            } else {
                guard f.rank >= 2, !f.shape.contains(0) else {
                    throw LoRAError.malformed(file: file, key: key, "expected a non-empty matrix or conv kernel, found shape \(f.shape)")
                }
            }
            out[part] = f
        }
        // Rank agreement that needs no target.
        if let up = out[.up], let down = out[.down], out[.mid] == nil, up.shape[1] != down.shape[0], let k = g.parts[.up] {
            throw LoRAError.malformed(file: file, key: k, "rank mismatch: lora_up \(up.shape) has rank \(up.shape[1]) but lora_down \(down.shape) has rank \(down.shape[0])")
        }
        return out
    }

    private static func makeDelta(_ g: LoRAGroup, target: LoRATarget, base: Tensor, source: any TensorSource,
                                  peft: PEFTConfigs, names: ModelTensorNames, file: String) throws -> LoRADelta {
        let f = try loadFactors(g, source: source, file: file)
        func key(_ p: LoRAPart) -> String { g.parts[p] ?? g.module }
        func need(_ p: LoRAPart) throws -> Tensor {
            guard let t = f[p] else {
                throw LoRAError.malformed(file: file, key: g.keys.first ?? g.module, "module '\(g.module)' has no \(p.rawValue) tensor")
            }
            return t
        }
        func mismatch(_ p: LoRAPart, _ what: String) -> LoRAError { .malformed(file: file, key: key(p), what) }

        var shape = base.shape
        guard !shape.isEmpty else { throw mismatch(.down, "target \(target.tensor) is a scalar") }
        if let r = target.rows {
            guard r.upperBound <= shape[0] else { throw mismatch(.down, "target rows \(r) exceed \(target.tensor) \(base.shape)") }
            shape[0] = r.count
        }
        let targetDesc = "\(target.tensor)\(target.rows.map { " rows \($0.lowerBound):\($0.upperBound)" } ?? "") \(shape)"
        func trimmed(_ s: ArraySlice<Int>) -> [Int] {
            var a = Array(s)
            while a.last == 1 { a.removeLast() }
            return a
        }
        func checkShape(_ p: LoRAPart, out: Int, tail: [Int]) throws {
            guard out == shape[0], trimmed(tail[...]) == trimmed(shape.dropFirst()) else {
                throw mismatch(p, "shape mismatch: the delta is \([out] + tail) but \(targetDesc)")
            }
        }

        // SD 1.x: cross-attention keys/values (or the text encoder) fed 768-wide inputs.
        if let down = f[.down], down.shape[1] == 768, shape.count >= 2, shape[1] != 768,
           target.tensor.hasSuffix("attn2.to_k.weight") || target.tensor.hasSuffix("attn2.to_v.weight")
            || target.tensor.hasPrefix(ModelTensors.textPrefix) {
            throw LoRAError.sd1(file: file, key: key(.down), "768-wide inputs where the model's \(target.tensor) takes \(shape[1])")
        }

        let factors: LoRADelta.Factors
        var rank: Int?
        if f[.down] != nil || f[.up] != nil {
            let down = try need(.down), up = try need(.up), mid = f[.mid]
            let r = down.shape[0]
            if let mid {
                guard mid.rank >= 3, mid.shape[1] == r else {
                    throw mismatch(.mid, "rank mismatch: lora_mid \(mid.shape) does not take the \(r) channels of lora_down \(down.shape)")
                }
                guard up.shape[1] == mid.shape[0], !up.shape.dropFirst(2).contains(where: { $0 != 1 }) else {
                    throw mismatch(.up, "rank mismatch: lora_up \(up.shape) does not take the \(mid.shape[0]) channels of lora_mid \(mid.shape)")
                }
                guard !down.shape.dropFirst(2).contains(where: { $0 != 1 }) else {
                    throw mismatch(.down, "a Tucker lora_down must be 1x1, found \(down.shape)")
                }
                try checkShape(.down, out: up.shape[0], tail: [down.shape[1]] + mid.shape.dropFirst(2))
            } else {
                guard up.shape[1] == r, !up.shape.dropFirst(2).contains(where: { $0 != 1 }) else {
                    throw mismatch(.up, "rank mismatch: lora_up \(up.shape) does not match the rank \(r) of lora_down \(down.shape)")
                }
                try checkShape(.down, out: up.shape[0], tail: Array(down.shape.dropFirst()))
            }
            factors = .lowRank(up: up, down: down, mid: mid)
            rank = r
        } else if f[.hadaW1a] != nil {
            let w1a = try need(.hadaW1a), w1b = try need(.hadaW1b), w2a = try need(.hadaW2a), w2b = try need(.hadaW2b)
            guard w1a.rank == 2, w2a.rank == 2 else { throw mismatch(.hadaW1a, "hada_w*_a must be matrices") }
            guard w1a.shape[1] == w1b.shape[0] else { throw mismatch(.hadaW1b, "rank mismatch: hada_w1_a \(w1a.shape) vs hada_w1_b \(w1b.shape)") }
            guard w2a.shape[1] == w2b.shape[0] else { throw mismatch(.hadaW2b, "rank mismatch: hada_w2_a \(w2a.shape) vs hada_w2_b \(w2b.shape)") }
            let k1 = w1b.count / w1b.shape[0], k2 = w2b.count / w2b.shape[0]
            guard w1a.shape[0] == w2a.shape[0], k1 == k2, w1a.shape[0] == shape[0], k1 * shape[0] == shape.reduce(1, *) else {
                throw mismatch(.hadaW1b, "shape mismatch: the delta is [\(w1a.shape[0]), \(k1)] / [\(w2a.shape[0]), \(k2)] but \(targetDesc)")
            }
            factors = .loha(w1a: w1a, w1b: w1b, w2a: w2a, w2b: w2b)
            rank = w1b.shape[0]
        } else if f[.lokrW1] != nil || f[.lokrW1a] != nil {
            func factor(_ whole: LoRAPart, _ a: LoRAPart, _ b: LoRAPart) throws -> (LoRADelta.LoKrFactor, rows: Int, tail: [Int], rank: Int?) {
                if let w = f[whole] { return (.full(w), w.shape[0], Array(w.shape.dropFirst()), nil) }
                let ta = try need(a), tb = try need(b)
                guard ta.rank == 2, ta.shape[1] == tb.shape[0] else {
                    throw mismatch(b, "rank mismatch: \(a.rawValue) \(ta.shape) vs \(b.rawValue) \(tb.shape)")
                }
                return (.product(ta, tb), ta.shape[0], Array(tb.shape.dropFirst()), tb.shape[0])
            }
            let w1 = try factor(.lokrW1, .lokrW1a, .lokrW1b), w2 = try factor(.lokrW2, .lokrW2a, .lokrW2b)
            guard w1.tail.count == 1, let b = w1.tail.first, let d = w2.tail.first else {
                throw mismatch(.lokrW1, "lokr_w1 must be a matrix")
            }
            try checkShape(.lokrW2, out: w1.rows * w2.rows, tail: [b * d] + w2.tail.dropFirst())
            factors = .lokr(w1: w1.0, w2: w2.0)
            rank = w1.rank ?? w2.rank
        } else {
            throw LoRAError.malformed(file: file, key: g.keys.first ?? g.module, "module '\(g.module)' has no weight tensors")
        }

        // alpha: the module's own alpha tensor, else PEFT metadata, else alpha = r.
        var alpha: Double
        var rs = false
        if let a = f[.alpha] {
            alpha = Double(a.floats()[0])
            if alpha == 0, let r = rank { alpha = Double(r) }
            rs = peft.config(for: g.namespace)?.useRSLoRA ?? false
        } else if g.scheme != .kohya, let cfg = peft.config(for: g.namespace), cfg.loraAlpha != nil {
            let path = g.candidates.first ?? g.module
            let expectedRank = cfg.rank(for: path)
            if let expectedRank, let r = rank, expectedRank != r {
                throw LoRAError.malformed(file: file, key: key(.down),
                                          "rank mismatch: the adapter metadata says r = \(expectedRank) but the tensors have rank \(r)")
            }
            alpha = cfg.alpha(for: path) ?? Double(rank ?? 1)
            rs = cfg.useRSLoRA
        } else {
            alpha = Double(rank ?? 1)
        }
        guard alpha.isFinite else { throw mismatch(.alpha, "alpha is not finite") }
        return LoRADelta(module: g.module, keys: g.keys, target: target, factors: factors, rank: rank, alpha: alpha, rsLoRA: rs)
    }
}

// MARK: - PEFT adapter metadata

/// `lora_adapter_metadata` (the LoraConfig dict diffusers stores in the safetensors metadata,
/// keys prefixed `unet.` / `text_encoder.` for pipelines, unprefixed for a single model).
struct PEFTConfig {
    var r: Int?
    var loraAlpha: Double?
    var useRSLoRA = false
    var rankPattern: [(String, Int)] = []
    var alphaPattern: [(String, Double)] = []

    /// PEFT's pattern rule (peft utils get_pattern_key): a pattern matches a module path when the
    /// path is `pattern` or ends with `.pattern` (patterns are regular expressions).
    static func matches(_ pattern: String, _ path: String) -> Bool {
        guard let re = try? NSRegularExpression(pattern: "^(.*\\.)?(\(pattern))$") else { return pattern == path }
        return re.firstMatch(in: path, range: NSRange(path.startIndex..., in: path)) != nil
    }

    func rank(for path: String) -> Int? { rankPattern.first { Self.matches($0.0, path) }?.1 ?? r }
    func alpha(for path: String) -> Double? { alphaPattern.first { Self.matches($0.0, path) }?.1 ?? loraAlpha }
}

struct PEFTConfigs {
    var byPrefix: [String: PEFTConfig] = [:]

    init(metadata: [String: String], file: String) throws {
        guard let text = metadata["lora_adapter_metadata"] else { return }
        let key = "__metadata__.lora_adapter_metadata"
        guard let data = text.data(using: .utf8), let obj = try? JSONSerialization.jsonObject(with: data),
              let dict = obj as? [String: Any] else {
            throw LoRAError.malformed(file: file, key: key, "is not a JSON object")
        }
        var grouped: [String: [String: Any]] = [:]
        for (k, v) in dict {
            if let dot = k.firstIndex(of: "."), ["unet", "text_encoder", "text_encoder_2", "transformer"].contains(String(k[..<dot])) {
                grouped[String(k[..<dot]), default: [:]][String(k[k.index(after: dot)...])] = v
            } else {
                grouped["", default: [:]][k] = v
            }
        }
        func number(_ v: Any?) -> Double? { (v as? NSNumber)?.doubleValue }
        for (prefix, d) in grouped {
            if let t = d["peft_type"] as? String, t.uppercased() != "LORA" {
                throw LoRAError.unsupported(file: file, key: key, "PEFT adapter type '\(t)' is not supported (only LORA)")
            }
            if (d["use_dora"] as? Bool) == true {
                throw LoRAError.unsupported(file: file, key: key, "DoRA (use_dora) is not supported; merge it with PEFT or use a plain LoRA")
            }
            var c = PEFTConfig()
            c.r = number(d["r"]).map { Int($0) }
            c.loraAlpha = number(d["lora_alpha"])
            c.useRSLoRA = (d["use_rslora"] as? Bool) ?? false
            c.rankPattern = ((d["rank_pattern"] as? [String: Any]) ?? [:]).compactMap { k, v in number(v).map { (k, Int($0)) } }.sorted { $0.0 < $1.0 }
            c.alphaPattern = ((d["alpha_pattern"] as? [String: Any]) ?? [:]).compactMap { k, v in number(v).map { (k, $0) } }.sorted { $0.0 < $1.0 }
            byPrefix[prefix] = c
        }
    }

    func config(for ns: LoRANamespace) -> PEFTConfig? {
        switch ns {
        case .unet: return byPrefix["unet"] ?? byPrefix[""]
        case .textEncoder: return byPrefix["text_encoder"] ?? byPrefix[""]
        case .any: return byPrefix[""] ?? byPrefix["unet"]
        }
    }
}

// MARK: - arithmetic

/// The merge arithmetic. Every product goes through `Ops.matmul` (sgemm); no element loops here.
public enum LoRAMath {
    /// delta (unscaled, f32) of `d`, shaped `shape` (the target, or its row slice).
    public static func delta(_ d: LoRADelta, shape: [Int]) throws -> Tensor {
        let out = shape.first ?? 1
        let k = shape.reduce(1, *) / max(out, 1)
        switch d.factors {
        case .lowRank(let up, let down, nil):
            // [out, r] @ [r, in*kh*kw] -> [out, in*kh*kw]: every kernel tap contracted over the rank.
            let r = down.shape[0]
            let y = try Ops.matmul(up.reshaped([up.shape[0], r]), down.reshaped([r, down.count / r]))
            return try y.reshaped(shape)
        case .lowRank(let up, let down, let mid?):
            // Tucker: N[a, i, tap] = sum_b mid[a, b, tap] down[b, i], i.e. for each a the product
            // down^T [in, r] @ mid[a] [r, taps]; then delta = up [out, r'] @ N [r', in*taps].
            let r = down.shape[0], rp = mid.shape[0], taps = mid.count / (rp * r), cin = down.count / r
            let d2 = try down.reshaped([r, cin])
            var parts: [Tensor] = []
            for a in 0..<rp {
                let ma = try mid.rows(a, 1).reshaped([r, taps])
                parts.append(try Ops.matmul(d2, ma, transposeA: true)) // [in, taps]
            }
            let n = try concatRows(parts, shape: [rp, cin * taps])
            let y = try Ops.matmul(up.reshaped([up.shape[0], rp]), n)
            return try y.reshaped(shape)
        case .loha(let w1a, let w1b, let w2a, let w2b):
            let p1 = try Ops.matmul(w1a, w1b.reshaped([w1b.shape[0], w1b.count / w1b.shape[0]]))
            let p2 = try Ops.matmul(w2a, w2b.reshaped([w2b.shape[0], w2b.count / w2b.shape[0]]))
            return try Ops.mul(p1, p2).reshaped(shape)
        case .lokr(let f1, let f2):
            func whole(_ f: LoRADelta.LoKrFactor) throws -> Tensor {
                switch f {
                case .full(let w): return try w.reshaped([w.shape[0], w.count / w.shape[0]])
                case .product(let a, let b): return try Ops.matmul(a, b.reshaped([b.shape[0], b.count / b.shape[0]]))
                }
            }
            let w1 = try whole(f1), w2 = try whole(f2) // [a, b], [c, D]
            let (a, b, c, dd) = (w1.shape[0], w1.shape[1], w2.shape[0], w2.shape[1])
            guard a * c == out, b * dd == k else { throw TensorError.shapeMismatch("kron \(w1.shape) x \(w2.shape) for \(shape)") }
            // outer product [a*b, c*D] = P[i, j, k, l]; swap the middle axes to kron order [i, k, j, l].
            let p = try Ops.matmul(w1.reshaped([a * b, 1]), w2.reshaped([1, c * dd]))
            let q = try Ops.channelsLast(p.reshaped([a, b, c * dd]))   // [a, c*D, b] = [i, k, l, j]
            let r = try Ops.channelsLast(q.reshaped([a * c, dd, b]))   // [a*c, b, D] = [(i,k), j, l]
            return try r.reshaped(shape)
        }
    }

    /// Rows of `parts` stacked into one tensor of `shape`.
    static func concatRows(_ parts: [Tensor], shape: [Int]) throws -> Tensor {
        var bytes: [UInt8] = []
        bytes.reserveCapacity(parts.reduce(0) { $0 + $1.byteCount })
        for p in parts { bytes += p.bytes() }
        return try Tensor(shape: shape, dtype: parts.first?.dtype ?? .f32, bytes: bytes)
    }

    /// W' = W + sum of s_i * delta_i in f32, returned in W's dtype. Rows that no delta touches keep
    /// W's bytes exactly. `W` may be f32, f16, bf16 or q8_0 (rows of a q8_0 tensor are separate
    /// blocks, so untouched rows survive requantization bit for bit too).
    public static func merge(_ base: Tensor, deltas: [(delta: LoRADelta, multiplier: Double)]) throws -> Tensor {
        guard let rows = base.shape.first, base.rank >= 2 else {
            throw TensorError.shapeMismatch("LoRA target \(base.shape) is not a matrix or kernel")
        }
        var work = try base.converted(to: .f32)
        var touched = [Bool](repeating: false, count: rows)
        for (d, m) in deltas {
            let range = d.target.rows ?? 0..<rows
            let slice = try work.rows(range.lowerBound, range.count)
            let delta = try LoRAMath.delta(d, shape: slice.shape)
            let s = Float(d.scale(multiplier: m))
            let updated = try Ops.add(slice, try Ops.scale(delta, s))
            if range.count == rows {
                work = try updated.reshaped(base.shape)
            } else {
                work = try concatRows([try work.rows(0, range.lowerBound), updated,
                                       try work.rows(range.upperBound, rows - range.upperBound)], shape: base.shape)
            }
            for i in range { touched[i] = true }
        }
        let merged: Tensor
        if base.dtype == .f32 {
            merged = work
        } else {
            // Splice: runs of touched rows come from the merged f32 converted back, the rest from W.
            var parts: [Tensor] = []
            var start = 0
            while start < rows {
                var end = start
                while end < rows, touched[end] == touched[start] { end += 1 }
                parts.append(touched[start] ? try work.rows(start, end - start).converted(to: base.dtype)
                                            : try base.rows(start, end - start))
                start = end
            }
            merged = try concatRows(parts, shape: base.shape)
        }
        // Finite factors can still overflow (their product, the sum with W, or W's dtype, e.g. f16
        // beyond 65504): a finite base must stay finite, or the model silently produces NaN.
        // (Found by the LoRA fuzz target, docs/fuzzing.md.)
        if let i = merged.firstNonFinite(), base.firstNonFinite() == nil, let first = deltas.first?.delta {
            let modules = deltas.map(\.delta.module).joined(separator: ", ")
            throw LoRAError.malformed(file: "merge of " + modules, key: first.keys.first ?? first.module,
                                      "merging into '\(first.target.tensor)' (\(base.dtype.rawValue)) overflows to a non-finite value at element \(i)")
        }
        return merged
    }
}

/// A tensor source that serves `base` with the planned deltas merged in (lazily, tensor by
/// tensor). The import and merge jobs stream it into a writer.
public struct LoRAMergedSource: TensorSource {
    public struct Applied: Sendable {
        public var delta: LoRADelta
        public var multiplier: Double
        public init(delta: LoRADelta, multiplier: Double) { self.delta = delta; self.multiplier = multiplier }
    }

    public let base: any TensorSource
    /// Canonical tensor name -> deltas in application order.
    public let plan: [String: [Applied]]

    public init(base: any TensorSource, plan: [String: [Applied]]) { self.base = base; self.plan = plan }

    /// The plan for several LoRA files applied in order, each with its multiplier.
    public static func plan(_ files: [(deltas: [LoRADelta], multiplier: Double)]) -> [String: [Applied]] {
        var plan: [String: [Applied]] = [:]
        for f in files {
            for d in f.deltas { plan[d.target.tensor, default: []].append(Applied(delta: d, multiplier: f.multiplier)) }
        }
        return plan
    }

    public var tensorNames: [String] { base.tensorNames }

    public func tensor(named name: String) throws -> Tensor? {
        guard let t = try base.tensor(named: name) else { return nil }
        guard let applied = plan[name], !applied.isEmpty else { return t }
        return try LoRAMath.merge(t, deltas: applied.map { ($0.delta, $0.multiplier) })
    }
}
