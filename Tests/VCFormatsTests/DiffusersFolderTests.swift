import Foundation
import Testing
import VCFormats
import VCTensor
import VCTestSupport

@Suite("DiffusersFolder")
struct DiffusersFolderTests {
    static let folder = Fixtures.path("sd21-tiny/diffusers")

    @Test func exposesEveryDiffusersTensorOfMappingTSV() throws {
        let d = try DiffusersFolder(path: Self.folder)
        #expect(d.components.map(\.name) == ["unet", "vae", "text_encoder"])
        // The fixture README: 916 diffusers tensors in all.
        #expect(d.tensorNames.count == 916)
        #expect(Set(d.tensorNames).count == 916)

        let tsv = try String(contentsOfFile: Fixtures.path("sd21-tiny/mapping.tsv"), encoding: .utf8)
        var checked = Set<String>()
        for line in tsv.split(separator: "\n").dropFirst() {
            let c = line.split(separator: "\t", omittingEmptySubsequences: false).map(String.init)
            guard c.count == 8, c[3] != "-" else { continue }
            let component = String(c[3].prefix(while: { $0 != "/" }))
            let name = component + "/" + c[4]
            let shape = c[5] == "scalar" ? [] : c[5].split(separator: "x").compactMap { Int($0) }
            let t = try #require(try d.tensor(named: name), "\(name) missing")
            #expect(t.shape == shape, "\(name)")
            #expect(t.dtype == .f32)
            // The per-component source sees the same tensor under its own name.
            #expect(try d.source(component)?.tensor(named: c[4])?.crc32c() == t.crc32c())
            checked.insert(name)
        }
        #expect(checked.count == 916)
    }

    @Test func exposesConfigsAsJSON() throws {
        let d = try DiffusersFolder(path: Self.folder)
        guard case .array(let channels) = try #require(d.config("unet")?["block_out_channels"]) else {
            Issue.record("block_out_channels missing"); return
        }
        #expect(channels == [.number("32"), .number("64"), .number("64"), .number("64")])
        #expect(d.config("text_encoder")?["hidden_size"] == .number("32"))
        #expect(d.config("vae")?["scaling_factor"] == .number("0.18215"))
        #expect(d.modelIndex["_class_name"] == .string("StableDiffusionPipeline"))
        #expect(d.config("scheduler") == nil) // not a weights component
    }

    @Test func openingByContent() throws {
        #expect(try TensorFiles.kind(of: Self.folder) == .diffusersFolder)
        #expect(try TensorFiles.kind(of: Fixtures.path("vc2-tiny-a/model.ckpt")) == .torchZip)
        #expect(try TensorFiles.kind(of: Fixtures.path("vc2-tiny-a/model.safetensors")) == .safetensors)
        #expect(try TensorFiles.open(Fixtures.path("vc2-tiny-a/model.ckpt")).tensorNames.count == 1717)
        #expect(try TensorFiles.open(Self.folder).tensorNames.count == 916)
        let tmp = try TempDir()
        let junk = try tmp.write("junk.bin", Array("hello world, not a model".utf8))
        expectFormatError(junk, ["not a safetensors file, a PyTorch checkpoint or a diffusers folder"]) { _ = try TensorFiles.open(junk) }
    }

    @Test func reportsMissingPartsClearly() throws {
        let tmp = try TempDir()
        let root = tmp.path("pipe")
        try FileManager.default.createDirectory(atPath: root + "/unet", withIntermediateDirectories: true)
        expectFormatError(root, ["no model_index.json"]) { _ = try DiffusersFolder(path: root) }
        try Data("{\"_class_name\": \"StableDiffusionPipeline\"}".utf8).write(to: URL(fileURLWithPath: root + "/model_index.json"))
        expectFormatError(root + "/unet", ["no weights file"]) { _ = try DiffusersFolder(path: root, components: ["unet"]) }
        try Data("{}".utf8).write(to: URL(fileURLWithPath: root + "/unet/diffusion_pytorch_model.safetensors.index.json"))
        expectFormatError(root + "/unet", ["sharded weights"]) { _ = try DiffusersFolder(path: root, components: ["unet"]) }
        expectFormatError(root, ["has no vae/ component"]) { _ = try DiffusersFolder(path: root, components: ["vae"]) }
        try Data("{\"a\":1,\"a\":2}".utf8).write(to: URL(fileURLWithPath: root + "/model_index.json"))
        expectFormatError(root + "/model_index.json", ["duplicate key \"a\""]) { _ = try DiffusersFolder(path: root, components: []) }
    }
}
