// LoRA file key schemes: which tensor of which module a key holds.
//
// Formats read (names as the writers spell them):
// - kohya-ss/sd-scripts@48d368f networks/lora.py: `lora_unet_<module path, '.' -> '_'>` and
//   `lora_te_<CLIPTextModel path>` + `.lora_down.weight` / `.lora_up.weight` / `.alpha`
//   (LoCon convs the same; LyCORIS Tucker adds `.lora_mid.weight`).
// - KohakuBlueleaf/LyCORIS@f49d30d lycoris/modules/{loha,lokr}.py: `.hada_w{1,2}_{a,b}` (+ `.hada_t{1,2}`),
//   `.lokr_w1[_a|_b]`, `.lokr_w2[_a|_b]` (+ `.lokr_t2`), and DoRA's `.dora_scale`.
// - PEFT / diffusers (huggingface/diffusers@58eb52c loaders/lora_base.py, utils/state_dict_utils.py):
//   `unet.<path>.lora_A.weight` / `.lora_B.weight`, `text_encoder.<path>...`, network alphas
//   `<prefix>.<path>.alpha`; the interim `.lora.down|up.weight` and `.lora_linear_layer.down|up.weight`;
//   the old attention processors `<path>.processor.to_q_lora.down.weight` (to_q/k/v/out).
// Grouping is purely syntactic: which model module a group names is decided by the resolver
// (LoRA.swift), from the model's own enumerated module list.
import Foundation

/// A key naming scheme of a LoRA file.
public enum LoRAScheme: String, Sendable, Codable {
    /// kohya-ss `lora_unet_*` / `lora_te_*` (underscored module paths).
    case kohya
    /// PEFT `lora_A` / `lora_B`.
    case peft
    /// diffusers' interim `.lora.down` / `.lora_linear_layer.down` names.
    case diffusers
    /// diffusers' attention-processor names (`to_q_lora.down`, <= 0.20).
    case diffusersAttnProcessor
    /// kohya-style parameter names on dotted module paths (e.g. LDM names, VideoCrafter 0.9).
    case dotted
}

/// Which model a module path is relative to.
public enum LoRANamespace: String, Sendable, Codable {
    case unet
    case textEncoder
    /// Not stated by the key (kohya names carry it in the prefix; bare dotted paths do not).
    case any
}

/// The role of one tensor in a LoRA module.
enum LoRAPart: String, Sendable {
    case down, up, mid, alpha
    case hadaW1a = "hada_w1_a", hadaW1b = "hada_w1_b", hadaW2a = "hada_w2_a", hadaW2b = "hada_w2_b"
    case lokrW1 = "lokr_w1", lokrW1a = "lokr_w1_a", lokrW1b = "lokr_w1_b"
    case lokrW2 = "lokr_w2", lokrW2a = "lokr_w2_a", lokrW2b = "lokr_w2_b"
}

/// All tensors of one LoRA module as the file names them.
struct LoRAGroup {
    /// The module as the file spells it (e.g. `lora_unet_down_blocks_0_..._to_q`, `down_blocks.0...to_q`).
    var module: String
    var namespace: LoRANamespace
    var scheme: LoRAScheme
    /// Module paths to try, in order (the old processor names stand for `to_q` in the UNet and
    /// `q_proj` in the text encoder).
    var candidates: [String]
    var parts: [LoRAPart: String] = [:]
    var keys: [String] { parts.values.sorted() }
}

/// Errors in a LoRA file or in merging it. Every case names the file and the key(s) concerned.
public enum LoRAError: Error, CustomStringConvertible, Equatable {
    /// The tensors of a module are inconsistent or unusable (shape/rank mismatch, NaN/Inf, missing part).
    case malformed(file: String, key: String, String)
    /// A key that fits no LoRA scheme we know.
    case unknownKey(file: String, key: String)
    /// A recognised construct we refuse (DoRA, OFT, SDXL LoRA, ...).
    case unsupported(file: String, key: String, String)
    /// A Stable Diffusion 1.x LoRA (768-wide cross-attention / CLIP ViT-L text encoder).
    case sd1(file: String, key: String, String)
    /// Modules that no tensor of the model matches.
    case unmatched(file: String, modules: [String])
    /// The base weight is quantized (q8_0) and requantizing was not allowed.
    case quantizedBase(tensor: String, dtype: String)

    public var description: String {
        func list(_ items: [String]) -> String {
            let shown = items.prefix(20).map { "  \($0)" }.joined(separator: "\n")
            return shown + (items.count > 20 ? "\n  ... and \(items.count - 20) more" : "")
        }
        switch self {
        case .malformed(let f, let k, let m): return "\(f): LoRA key '\(k)': \(m)"
        case .unknownKey(let f, let k):
            return "\(f): LoRA key '\(k)' fits no known LoRA scheme (kohya lora_unet_/lora_te_ with lora_down/lora_up/alpha, PEFT lora_A/lora_B, diffusers lora.down/lora.up or to_q_lora)"
        case .unsupported(let f, let k, let m): return "\(f): LoRA key '\(k)': \(m)"
        case .sd1(let f, let k, let m): return "\(f): this is a Stable Diffusion 1.x LoRA and cannot be merged into an SD 2.x-based model (key '\(k)': \(m))"
        case .unmatched(let f, let ms):
            return "\(f): \(ms.count) LoRA module(s) match no tensor of the model (use --allow-unmatched to skip them):\n" + list(ms)
        case .quantizedBase(let t, let d):
            return "base tensor '\(t)' is \(d): merging into quantized weights needs --requantize (dequantize, merge, quantize; lossy). The documented flow is: import as f32 or f16, merge, then quantize"
        }
    }
}

enum LoRAKeyParser {
    /// kohya parameter suffixes (after the first '.').
    static let kohyaParts: [String: LoRAPart] = [
        "lora_down.weight": .down, "lora_up.weight": .up, "lora_mid.weight": .mid, "alpha": .alpha,
        "hada_w1_a": .hadaW1a, "hada_w1_b": .hadaW1b, "hada_w2_a": .hadaW2a, "hada_w2_b": .hadaW2b,
        "lokr_w1": .lokrW1, "lokr_w1_a": .lokrW1a, "lokr_w1_b": .lokrW1b,
        "lokr_w2": .lokrW2, "lokr_w2_a": .lokrW2a, "lokr_w2_b": .lokrW2b,
    ]

    /// Recognised parameters we refuse, with the reason.
    static let refusedParts: [String: String] = [
        "dora_scale": "DoRA (weight-decomposed LoRA) is not supported; merge it with its training tool or use a plain LoRA",
        "lora_magnitude_vector": "DoRA (PEFT use_dora) is not supported; merge it with PEFT or use a plain LoRA",
        "hada_t1": "LoHa with Tucker factors (hada_t1/hada_t2) is not supported",
        "hada_t2": "LoHa with Tucker factors (hada_t1/hada_t2) is not supported",
        "lokr_t2": "LoKr with a Tucker factor (lokr_t2) is not supported",
        "diff": "LyCORIS full-weight differences ('diff') are not supported",
        "diff_b": "LyCORIS full-weight differences ('diff_b') are not supported",
        "w_norm": "LyCORIS norm-layer deltas are not supported",
        "b_norm": "LyCORIS norm-layer deltas are not supported",
        "oft_blocks": "OFT / BOFT adapters are not supported",
        "oft_diag": "OFT / BOFT adapters are not supported",
        "oft_R": "OFT / BOFT adapters are not supported",
        "on_input": "(IA)^3 adapters are not supported",
        "lora_down.bias": "LoRA bias deltas are not supported",
        "lora_up.bias": "LoRA bias deltas are not supported",
        "lora_A.bias": "LoRA bias deltas (PEFT lora_bias) are not supported",
        "lora_B.bias": "LoRA bias deltas (PEFT lora_bias) are not supported",
    ]

    /// Dotted-path suffixes -> (part, scheme, module-name replacement candidates or nil).
    static let dottedSuffixes: [(suffix: String, part: LoRAPart, scheme: LoRAScheme, rename: [String]?)] = [
        (".lora_A.weight", .down, .peft, nil), (".lora_B.weight", .up, .peft, nil),
        (".lora.down.weight", .down, .diffusers, nil), (".lora.up.weight", .up, .diffusers, nil),
        (".lora_linear_layer.down.weight", .down, .diffusers, nil), (".lora_linear_layer.up.weight", .up, .diffusers, nil),
        (".to_q_lora.down.weight", .down, .diffusersAttnProcessor, ["to_q", "q_proj"]),
        (".to_q_lora.up.weight", .up, .diffusersAttnProcessor, ["to_q", "q_proj"]),
        (".to_k_lora.down.weight", .down, .diffusersAttnProcessor, ["to_k", "k_proj"]),
        (".to_k_lora.up.weight", .up, .diffusersAttnProcessor, ["to_k", "k_proj"]),
        (".to_v_lora.down.weight", .down, .diffusersAttnProcessor, ["to_v", "v_proj"]),
        (".to_v_lora.up.weight", .up, .diffusersAttnProcessor, ["to_v", "v_proj"]),
        (".to_out_lora.down.weight", .down, .diffusersAttnProcessor, ["to_out.0", "out_proj"]),
        (".to_out_lora.up.weight", .up, .diffusersAttnProcessor, ["to_out.0", "out_proj"]),
        (".lora_down.weight", .down, .dotted, nil), (".lora_up.weight", .up, .dotted, nil),
        (".lora_mid.weight", .mid, .dotted, nil),
    ]

    /// Splits every key of a LoRA file into module groups. Throws on keys of no known scheme,
    /// refused constructs and duplicated parts.
    static func group(keys: [String], file: String) throws -> [LoRAGroup] {
        var groups: [String: LoRAGroup] = [:]
        var order: [String] = []
        func add(_ key: String, module: String, namespace: LoRANamespace, scheme: LoRAScheme, candidates: [String], part: LoRAPart) throws {
            let id = "\(namespace.rawValue)|\(module)"
            if groups[id] == nil {
                groups[id] = LoRAGroup(module: module, namespace: namespace, scheme: scheme, candidates: candidates)
                order.append(id)
            }
            if groups[id]?.parts[part] != nil {
                throw LoRAError.malformed(file: file, key: key, "module '\(module)' has two '\(part.rawValue)' tensors")
            }
            groups[id]?.parts[part] = key
            // `.alpha` alone does not tell the scheme; the weights do.
            if part != .alpha { groups[id]?.scheme = scheme }
        }

        for key in keys {
            if key.hasPrefix("lora_te1_") || key.hasPrefix("lora_te2_") || key.hasPrefix("lora_te3_") {
                throw LoRAError.unsupported(file: file, key: key, "this is an SDXL/SD3 LoRA (two text encoders); it does not fit an SD 2.x-based model")
            }
            if key.hasPrefix("lora_unet_") || key.hasPrefix("lora_te_") {
                guard let dot = key.firstIndex(of: ".") else { throw LoRAError.unknownKey(file: file, key: key) }
                let module = String(key[..<dot]), param = String(key[key.index(after: dot)...])
                if let reason = refusedParts[param] { throw LoRAError.unsupported(file: file, key: key, reason) }
                guard let part = kohyaParts[param] else { throw LoRAError.unknownKey(file: file, key: key) }
                let ns: LoRANamespace = key.hasPrefix("lora_unet_") ? .unet : .textEncoder
                try add(key, module: module, namespace: ns, scheme: .kohya, candidates: [module], part: part)
                continue
            }

            // Dotted paths: drop PEFT's wrapper prefix and diffusers' `.processor.` segment.
            var path = key
            if path.hasPrefix("base_model.model.") { path.removeFirst("base_model.model.".count) }
            path = path.replacingOccurrences(of: ".processor.", with: ".")
            var ns = LoRANamespace.any
            if path.hasPrefix("text_encoder_2.") || path.hasPrefix("te2.") {
                throw LoRAError.unsupported(file: file, key: key, "this is an SDXL LoRA (second text encoder); it does not fit an SD 2.x-based model")
            }
            if path.hasPrefix("unet.") { ns = .unet; path.removeFirst("unet.".count) }
            else if path.hasPrefix("text_encoder.") { ns = .textEncoder; path.removeFirst("text_encoder.".count) }

            for (param, reason) in refusedParts where path.hasSuffix("." + param) || path.hasSuffix("." + param + ".weight") {
                throw LoRAError.unsupported(file: file, key: key, reason)
            }
            if path.hasSuffix(".alpha") {
                let module = String(path.dropLast(".alpha".count))
                try add(key, module: module, namespace: ns, scheme: .peft, candidates: [module], part: .alpha)
                continue
            }
            guard let m = dottedSuffixes.first(where: { path.hasSuffix($0.suffix) }) else {
                throw LoRAError.unknownKey(file: file, key: key)
            }
            let parent = String(path.dropLast(m.suffix.count))
            guard !parent.isEmpty else { throw LoRAError.unknownKey(file: file, key: key) }
            let module: String, candidates: [String]
            if let rename = m.rename {
                module = parent + "." + rename[0]
                candidates = rename.map { parent + "." + $0 }
            } else {
                module = parent
                candidates = [parent]
            }
            try add(key, module: module, namespace: ns, scheme: m.scheme, candidates: candidates, part: m.part)
        }
        // An alpha with no weights is a dangling key.
        for id in order {
            guard let g = groups[id] else { continue }
            if g.parts.keys.allSatisfy({ $0 == .alpha }), let k = g.parts[.alpha] {
                throw LoRAError.malformed(file: file, key: k, "an alpha without lora_down/lora_up tensors")
            }
        }
        return order.compactMap { groups[$0] }
    }
}
