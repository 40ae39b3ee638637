import Foundation
import VCTensor

// Layout: a diffusers pipeline folder as written by huggingface/diffusers
// `DiffusionPipeline.save_pretrained` (model_index.json + one sub-folder per component with
// config.json and `diffusion_pytorch_model.safetensors` / transformers' `model.safetensors`).
// Own implementation.

/// A diffusers pipeline folder (e.g. Stable Diffusion 2.1) as one `TensorSource`.
///
/// Names are `<component>/<diffusers name>`, e.g. `unet/conv_in.weight`,
/// `vae/decoder.conv_in.bias`, `text_encoder/text_model.embeddings.token_embedding.weight`.
/// Mapping these to canonical LDM names is not done here (see the name tables of the import job);
/// `source(_:)` gives one component's tensors under their own names, and `config(_:)` its
/// `config.json` as parsed JSON.
///
/// Weights per component, first found wins: `diffusion_pytorch_model.safetensors`,
/// `model.safetensors`, the `.fp16.safetensors` variants, then PyTorch `.bin` zips
/// (`diffusion_pytorch_model.bin`, `pytorch_model.bin`). Sharded weights
/// (`*.safetensors.index.json`) are reported as unsupported.
public final class DiffusersFolder: MappedTensorSource, @unchecked Sendable {
    public struct Component: Sendable {
        public var name: String
        /// The weights file that was opened.
        public var weightsPath: String
        public var source: any MappedTensorSource
        /// `config.json` of the component (nil if the file is absent).
        public var config: JSONValue?
    }

    /// The components holding weights that VideoCrafter/SD 2.1 inference needs.
    public static let weightComponents = ["unet", "vae", "text_encoder"]
    static let weightFiles = ["diffusion_pytorch_model.safetensors", "model.safetensors",
                              "diffusion_pytorch_model.fp16.safetensors", "model.fp16.safetensors",
                              "diffusion_pytorch_model.bin", "pytorch_model.bin"]

    public let path: String
    /// model_index.json, parsed.
    public let modelIndex: JSONValue
    /// Components in the order requested.
    public let components: [Component]
    private let byName: [String: Int]

    /// Opens `path` (the folder holding model_index.json) and the weights of `components`.
    public init(path: String, components wanted: [String] = DiffusersFolder.weightComponents) throws {
        self.path = path
        let fm = FileManager.default
        let indexPath = path + "/model_index.json"
        guard fm.fileExists(atPath: indexPath) else {
            throw FormatError.model(path: path, "not a diffusers folder: no model_index.json")
        }
        self.modelIndex = try DiffusersFolder.readJSON(indexPath)
        guard case .object = modelIndex else {
            throw FormatError.malformed(path: indexPath, offset: 0, "model_index.json is \(modelIndex.kindName), not an object")
        }
        var comps: [Component] = []
        var byName: [String: Int] = [:]
        for name in wanted {
            let dir = path + "/" + name
            var isDir: ObjCBool = false
            guard fm.fileExists(atPath: dir, isDirectory: &isDir), isDir.boolValue else {
                throw FormatError.model(path: path, "the diffusers folder has no \(name)/ component")
            }
            guard let file = DiffusersFolder.weightFiles.first(where: { fm.fileExists(atPath: dir + "/" + $0) }) else {
                let listing = (try? fm.contentsOfDirectory(atPath: dir)) ?? []
                if listing.contains(where: { $0.hasSuffix(".safetensors.index.json") || $0.hasSuffix(".bin.index.json") }) {
                    throw FormatError.unsupported(path: dir, "sharded weights (*.index.json) are not supported; merge the shards into one file")
                }
                throw FormatError.model(path: dir, "no weights file (looked for \(DiffusersFolder.weightFiles.joined(separator: ", ")))")
            }
            let weights = dir + "/" + file
            let source: any MappedTensorSource = file.hasSuffix(".bin") ? try TorchCheckpoint(path: weights) : try SafetensorsFile(path: weights)
            let configPath = dir + "/config.json"
            let config = fm.fileExists(atPath: configPath) ? try DiffusersFolder.readJSON(configPath) : nil
            byName[name] = comps.count
            comps.append(Component(name: name, weightsPath: weights, source: source, config: config))
        }
        self.components = comps
        self.byName = byName
    }

    static func readJSON(_ p: String) throws -> JSONValue {
        let bytes: [UInt8]
        do { bytes = Array(try Data(contentsOf: URL(fileURLWithPath: p))) } catch {
            throw FormatError.io(path: p, "cannot read: \(error.localizedDescription)")
        }
        do { return try StrictJSON.parse(bytes) } catch {
            throw FormatError.malformed(path: p, offset: error.offset, error.message)
        }
    }

    /// One component's tensors under their diffusers names.
    public func source(_ component: String) -> (any MappedTensorSource)? { byName[component].map { components[$0].source } }

    /// One component's config.json.
    public func config(_ component: String) -> JSONValue? { byName[component].flatMap { components[$0].config } }

    public var tensorNames: [String] {
        components.flatMap { c in c.source.tensorNames.map { c.name + "/" + $0 } }
    }

    public func releasePages(named name: String) {
        guard let slash = name.firstIndex(of: "/"), let i = byName[String(name[..<slash])] else { return }
        components[i].source.releasePages(named: String(name[name.index(after: slash)...]))
    }

    public func tensor(named name: String) throws -> Tensor? {
        guard let slash = name.firstIndex(of: "/"), let i = byName[String(name[..<slash])] else { return nil }
        return try components[i].source.tensor(named: String(name[name.index(after: slash)...]))
    }
}

/// Opens any supported weights file or folder by content.
public enum TensorFiles {
    public enum Kind: String, Sendable { case safetensors, torchZip, diffusersFolder }

    /// What `path` holds, judged by its content (not its extension).
    public static func kind(of path: String) throws -> Kind {
        var isDir: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDir) else {
            throw FormatError.io(path: path, "no such file or folder")
        }
        if isDir.boolValue {
            guard FileManager.default.fileExists(atPath: path + "/model_index.json") else {
                throw FormatError.unsupported(path: path, "a folder without model_index.json is not a diffusers pipeline")
            }
            return .diffusersFolder
        }
        let f: MappedFile
        do { f = try MappedFile(path: path) } catch { throw FormatError.io(path: path, "\(error)") }
        let head = try f.bytes(offset: 0, count: min(f.size, 9))
        if head.count >= 4, head[0] == 0x50, head[1] == 0x4B, head[2] == 0x03 || head[2] == 0x05 { return .torchZip }
        if head.count >= 2, head[0] == 0x80, head[1] <= 5 { return .torchZip } // legacy torch.save: rejected clearly by the reader
        if head.count == 9, [0x7B, 0x20, 0x09, 0x0A, 0x0D].contains(head[8]) { return .safetensors }
        throw FormatError.unsupported(path: path, "not a safetensors file, a PyTorch checkpoint or a diffusers folder")
    }

    /// The tensors of `path`: a .safetensors file, a PyTorch zip checkpoint or a diffusers folder.
    public static func open(_ path: String) throws -> any MappedTensorSource {
        switch try kind(of: path) {
        case .safetensors: return try SafetensorsFile(path: path)
        case .torchZip: return try TorchCheckpoint(path: path)
        case .diffusersFolder: return try DiffusersFolder(path: path)
        }
    }
}

/// A tensor source backed by memory-mapped files. Tensors are windows into the mapping, so the
/// pages they touch count towards the process's resident memory until released: a streaming
/// consumer (import, export, checksums) calls `releasePages(named:)` once it is done with a
/// tensor and keeps its peak RSS near one tensor instead of the whole file.
public protocol MappedTensorSource: TensorSource {
    /// Drops the mapped pages of `name` from the process (they are re-read from the file if the
    /// tensor is used again). Tensors already copied out are unaffected.
    func releasePages(named name: String)
}
