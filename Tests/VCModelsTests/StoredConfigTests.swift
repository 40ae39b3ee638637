import Foundation
import Testing
import VCModels

/// `ModelConfig.decodeStored`: the configuration JSON inside a .vcm.
@Suite("Stored model configuration")
struct StoredConfigTests {
    static func json(_ c: ModelConfig) throws -> [String: Any] {
        try #require(try JSONSerialization.jsonObject(with: JSONEncoder().encode(c)) as? [String: Any])
    }

    static func decode(_ object: [String: Any]) throws -> ModelConfig {
        try ModelConfig.decodeStored(try JSONSerialization.data(withJSONObject: object))
    }

    @Test func roundTripsEveryPreset() throws {
        var sd = ModelConfig.vc2_512
        sd.kind = .sd21
        sd.unet.removeVideoModules()
        for c in [ModelConfig.vc2_512, sd] {
            #expect(try Self.decode(try Self.json(c)) == c)
        }
    }

    /// A file written before a field existed: the missing keys take the defaults, the stored
    /// ones (here non-default) are kept; keys from a newer writer are ignored.
    @Test func missingKeysTakeDefaultsAndUnknownKeysAreIgnored() throws {
        var c = ModelConfig.vc2_512
        c.kind = .sd21
        c.unet.fpsCond = false
        c.unet.modelChannels = 64
        c.text.layer = "last"
        var o = try Self.json(c)
        var unet = try #require(o["unet"] as? [String: Any])
        unet["tempspatialAware"] = nil
        unet["temporalLength"] = nil
        unet["someFutureOption"] = 3
        o["unet"] = unet
        var text = try #require(o["text"] as? [String: Any])
        text["embedDim"] = nil
        o["text"] = text
        o["diffusion"] = nil
        o["futureSection"] = ["x": 1]
        let d = try Self.decode(o)
        #expect(d.kind == .sd21 && d.unet.fpsCond == false && d.unet.modelChannels == 64 && d.text.layer == "last")
        #expect(d.unet.tempspatialAware == UNetConfig().tempspatialAware && d.unet.temporalLength == UNetConfig().temporalLength)
        #expect(d.text.embedDim == TextEncoderConfig().embedDim && d.diffusion == DiffusionConfig())
    }

    @Test func errorsNameWhatIsWrong() throws {
        func message(_ data: Data) -> String {
            do { _ = try ModelConfig.decodeStored(data); return "no error" } catch { return "\(error)" }
        }
        var o = try Self.json(.vc2_512)
        o["kind"] = nil
        #expect(message(try JSONSerialization.data(withJSONObject: o)).contains("no model kind"))
        o = try Self.json(.vc2_512)
        var unet = try #require(o["unet"] as? [String: Any])
        unet["modelChannels"] = "many"
        o["unet"] = unet
        #expect(message(try JSONSerialization.data(withJSONObject: o)).contains("unet.modelChannels"))
        unet["modelChannels"] = 100   // 100 channels: not divisible by 32 groups
        o["unet"] = unet
        #expect(message(try JSONSerialization.data(withJSONObject: o)).contains("not divisible by 32"))
        #expect(message(Data("{\"kind\":".utf8)).contains("not JSON"))
        #expect(message(Data("[1, 2]".utf8)).contains("not a JSON object"))
        o = try Self.json(.vc2_512)
        o["kind"] = "vc9"
        #expect(message(try JSONSerialization.data(withJSONObject: o)).contains("kind"))
    }
}
