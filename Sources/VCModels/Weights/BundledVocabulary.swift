import Foundation
import VCTensor

/// The open_clip BPE merges text (`bpe_simple_vocab_16e6.txt`, the part open_clip 2.22.0 uses)
/// shipped with the tool as a zstd frame (Sources/VCModels/Resources, provenance in
/// fixtures/MANIFEST.md). An import stores it in the .vcm, so a model file is self-contained.
public enum BundledVocabulary {
    /// The zstd frame as shipped.
    public static func compressed() throws -> [UInt8] {
        guard let url = Bundle.module.url(forResource: CLIPTokenizer.bundledResourceName, withExtension: "zst") else {
            throw ConfigError("the bundled BPE vocabulary resource is missing from the build")
        }
        return [UInt8](try Data(contentsOf: url))
    }

    /// The merges text, decompressed (`CLIPTokenizer.bundledMergesText()` is the same as a String).
    public static func text() throws -> [UInt8] {
        try Zstd.decompress(try compressed(), limit: 16 << 20)
    }
}
