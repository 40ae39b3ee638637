// Reading the configuration JSON a .vcm stores (written by `ImportJob` with JSONEncoder).
import Foundation

extension ModelConfig {
    /// Decodes a stored configuration and validates it. A key the file lacks takes the field's
    /// default (the official class default, as for an omitted YAML key), so files written before
    /// a field existed stay readable; keys this version does not know are ignored. `kind` has no
    /// default and must be present. Throws `ConfigError` naming what is wrong.
    public static func decodeStored(_ data: Data) throws -> ModelConfig {
        let parsed: Any
        do { parsed = try JSONSerialization.jsonObject(with: data) } catch {
            throw ConfigError("the stored configuration is not JSON (\(error.localizedDescription))")
        }
        guard let stored = parsed as? [String: Any] else { throw ConfigError("the stored configuration is not a JSON object") }
        guard stored["kind"] != nil else { throw ConfigError("the stored configuration has no model kind") }
        var defaults = try JSONSerialization.jsonObject(with: JSONEncoder().encode(ModelConfig.vc2_512)) as? [String: Any] ?? [:]
        defaults["kind"] = nil
        let merged = mergeDefaults(defaults, stored)
        let config: ModelConfig
        do {
            config = try JSONDecoder().decode(ModelConfig.self, from: try JSONSerialization.data(withJSONObject: merged))
        } catch let DecodingError.typeMismatch(_, context), let DecodingError.valueNotFound(_, context),
                let DecodingError.dataCorrupted(context) {
            let path = context.codingPath.map(\.stringValue).joined(separator: ".")
            throw ConfigError("stored configuration, \(path.isEmpty ? "top level" : path): \(context.debugDescription)")
        } catch {
            throw ConfigError("the stored configuration cannot be read: \(error)")
        }
        try config.validate()
        return config
    }

    /// `stored` over `defaults`: objects merge key by key (recursively), anything else in
    /// `stored` replaces the default.
    static func mergeDefaults(_ defaults: [String: Any], _ stored: [String: Any]) -> [String: Any] {
        var out = defaults
        for (key, value) in stored {
            if let d = defaults[key] as? [String: Any], let s = value as? [String: Any] {
                out[key] = mergeDefaults(d, s)
            } else {
                out[key] = value
            }
        }
        return out
    }
}
