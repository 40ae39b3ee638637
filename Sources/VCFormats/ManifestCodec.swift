// Marshals `VCMManifest` to and from the protobuf-c codec of CVCManifest (the flat C API in
// Sources/CVCManifest/include/CVCManifest.h). This is the only Swift file that talks to that C
// API; everything else uses the Swift value types of VCMManifest.swift.
import CVCManifest
import VCTensor

enum ManifestCodec {
    /// Serialises a manifest (tensor records in the given order).
    static func encode(_ m: VCMManifest) throws -> [UInt8] {
        guard let b = vcm_builder_new() else { throw TensorError.allocationTooLarge(bytes: 0, what: "manifest builder") }
        defer { vcm_builder_free(b) }
        func check(_ rc: Int32, _ what: String) throws {
            if rc != 0 { throw FormatError.unsupported(path: "<manifest>", "cannot encode \(what)") }
        }
        let p = m.provenance
        let strings: [(Int32, String)] = [
            (Int32(VCM_STR_MODEL_KIND), m.modelKind), (Int32(VCM_STR_CONFIG_JSON), m.configJSON),
            (Int32(VCM_STR_CONFIG_YAML), m.configYAML), (Int32(VCM_STR_TEXT_CONFIG_JSON), m.textConfigJSON),
            (Int32(VCM_STR_PRESET), m.preset), (Int32(VCM_STR_SOURCE_NAME), p.sourceName),
            (Int32(VCM_STR_SOURCE_FORMAT), p.sourceFormat), (Int32(VCM_STR_CONVERTER), p.converter),
            (Int32(VCM_STR_CONVERTER_VERSION), p.converterVersion),
        ]
        for (field, value) in strings {
            // A NUL would silently truncate the C string; no legitimate value contains one.
            guard !value.utf8.contains(0) else { throw FormatError.unsupported(path: "<manifest>", "string field \(field) contains a NUL byte") }
            try check(vcm_builder_set_string(b, field, value), "string field \(field)")
        }
        try check(vcm_builder_set_vocabulary(b, m.vocabularyZstd, m.vocabularyZstd.count, UInt64(m.vocabularySize), m.vocabularyCRC32C), "vocabulary")
        guard p.sourceSHA256.isEmpty || p.sourceSHA256.count == 32 else {
            throw FormatError.unsupported(path: "<manifest>", "source SHA-256 must be 32 bytes, not \(p.sourceSHA256.count)")
        }
        if p.sourceSHA256.isEmpty {
            try check(vcm_builder_set_source(b, UInt64(p.sourceSize), nil, p.createdUnix), "provenance")
        } else {
            try check(vcm_builder_set_source(b, UInt64(p.sourceSize), p.sourceSHA256, p.createdUnix), "provenance")
        }
        vcm_builder_set_alignment(b, UInt32(clamping: m.alignment))
        for o in p.options {
            guard !o.key.utf8.contains(0), !o.value.utf8.contains(0) else { throw FormatError.unsupported(path: "<manifest>", "option contains a NUL byte") }
            try check(vcm_builder_add_option(b, o.key, o.value), "option \(o.key)")
        }
        for t in m.tensors {
            guard !t.name.utf8.contains(0), t.shape.count <= Int(VCM_MAX_DIMS), t.shape.allSatisfy({ $0 >= 0 }) else {
                throw FormatError.unsupported(path: "<manifest>", "tensor '\(t.name)': name or shape \(t.shape) cannot be stored")
            }
            let shape = t.shape.map { UInt64($0) }
            try check(vcm_builder_add_tensor(b, t.name, VCMFormat.dtypeCode(t.dtype), shape, shape.count,
                                             UInt64(t.offset), UInt64(t.size), VCMFormat.compressionCode(t.compression),
                                             UInt64(t.storedSize), t.crc32c), "tensor '\(t.name)'")
        }
        let n = vcm_builder_packed_size(b)
        var out = [UInt8](repeating: 0, count: n)
        let written = vcm_builder_pack(b, &out)
        guard written == n else { throw FormatError.unsupported(path: "<manifest>", "packed \(written) of \(n) bytes") }
        return out
    }

    /// Parses manifest bytes read at `offset` of `path`. Structural problems (not protobuf, too
    /// much memory, unknown dtype or compression codes, sizes beyond Int) are reported here; the
    /// relations to the file (offsets, sizes, alignment) are checked by `VCMFile`.
    static func decode(_ bytes: [UInt8], path: String, offset: Int) throws -> VCMManifest {
        var err = [CChar](repeating: 0, count: 256)
        // protobuf-c allocates about as much as it reads; 8x plus 1 MB leaves room for the
        // per-message structs of many small records without letting a hostile file ask for more.
        let limit = bytes.count.multipliedReportingOverflow(by: 8).partialValue + (1 << 20)
        guard let h = vcm_manifest_decode(bytes, bytes.count, limit, &err, err.count) else {
            throw FormatError.malformed(path: path, offset: offset, "manifest: \(cString(err))")
        }
        defer { vcm_manifest_free(h) }

        func string(_ field: Int32) throws -> String {
            let n = vcm_manifest_string(h, field, nil, 0)
            var buf = [CChar](repeating: 0, count: n + 1)
            _ = vcm_manifest_string(h, field, &buf, buf.count)
            return try utf8(buf, n, what: "string field \(field)")
        }
        func utf8(_ buf: [CChar], _ n: Int, what: String) throws -> String {
            let bytes = buf.prefix(n).map { UInt8(bitPattern: $0) }
            guard let s = String(validating: bytes, as: UTF8.self) else {
                throw FormatError.malformed(path: path, offset: offset, "manifest: \(what) is not valid UTF-8")
            }
            return s
        }
        func int(_ v: UInt64, _ what: String) throws -> Int {
            guard v <= UInt64(Int.max) else { throw FormatError.malformed(path: path, offset: offset, "manifest: \(what) = \(v) is out of range") }
            return Int(v)
        }

        var m = VCMManifest()
        m.modelKind = try string(Int32(VCM_STR_MODEL_KIND))
        m.configJSON = try string(Int32(VCM_STR_CONFIG_JSON))
        m.configYAML = try string(Int32(VCM_STR_CONFIG_YAML))
        m.textConfigJSON = try string(Int32(VCM_STR_TEXT_CONFIG_JSON))
        m.preset = try string(Int32(VCM_STR_PRESET))
        let vn = vcm_manifest_bytes(h, Int32(VCM_BYTES_VOCABULARY_ZSTD), nil, 0)
        m.vocabularyZstd = [UInt8](repeating: 0, count: vn)
        _ = vcm_manifest_bytes(h, Int32(VCM_BYTES_VOCABULARY_ZSTD), &m.vocabularyZstd, vn)
        m.vocabularySize = try int(vcm_manifest_u64(h, Int32(VCM_U64_VOCABULARY_SIZE)), "vocabulary_size")
        m.vocabularyCRC32C = UInt32(truncatingIfNeeded: vcm_manifest_u64(h, Int32(VCM_U64_VOCABULARY_CRC32C)))
        m.alignment = try int(vcm_manifest_u64(h, Int32(VCM_U64_ALIGNMENT)), "alignment")

        var p = VCMProvenance()
        p.sourceName = try string(Int32(VCM_STR_SOURCE_NAME))
        p.sourceFormat = try string(Int32(VCM_STR_SOURCE_FORMAT))
        p.converter = try string(Int32(VCM_STR_CONVERTER))
        p.converterVersion = try string(Int32(VCM_STR_CONVERTER_VERSION))
        p.sourceSize = try int(vcm_manifest_u64(h, Int32(VCM_U64_SOURCE_SIZE)), "source_size")
        p.createdUnix = Int64(bitPattern: vcm_manifest_u64(h, Int32(VCM_U64_CREATED_UNIX)))
        let sn = vcm_manifest_bytes(h, Int32(VCM_BYTES_SOURCE_SHA256), nil, 0)
        guard sn == 0 || sn == 32 else { throw FormatError.malformed(path: path, offset: offset, "manifest: source_sha256 has \(sn) bytes, not 32") }
        p.sourceSHA256 = [UInt8](repeating: 0, count: sn)
        _ = vcm_manifest_bytes(h, Int32(VCM_BYTES_SOURCE_SHA256), &p.sourceSHA256, sn)
        for i in 0..<vcm_manifest_option_count(h) {
            let kn = vcm_manifest_option_key(h, i, nil, 0)
            var kb = [CChar](repeating: 0, count: kn + 1)
            _ = vcm_manifest_option_key(h, i, &kb, kb.count)
            let valueLength = vcm_manifest_option_value(h, i, nil, 0)
            var vb = [CChar](repeating: 0, count: valueLength + 1)
            _ = vcm_manifest_option_value(h, i, &vb, vb.count)
            p.options.append(VCMOption(try utf8(kb, kn, what: "option #\(i) key"), try utf8(vb, valueLength, what: "option #\(i) value")))
        }
        m.provenance = p

        let count = vcm_manifest_tensor_count(h)
        m.tensors.reserveCapacity(count)
        for i in 0..<count {
            let nn = vcm_manifest_tensor_name(h, i, nil, 0)
            var nb = [CChar](repeating: 0, count: nn + 1)
            _ = vcm_manifest_tensor_name(h, i, &nb, nb.count)
            let name = try utf8(nb, nn, what: "name of tensor #\(i)")
            func field(_ f: Int32) -> UInt64 { vcm_manifest_tensor_u64(h, i, f) }
            let code = field(Int32(VCM_TENSOR_DTYPE))
            guard let dtype = VCMFormat.dtype(code: code) else {
                throw FormatError.malformed(path: path, offset: offset, "tensor '\(name)': unknown dtype code \(code)")
            }
            let cc = field(Int32(VCM_TENSOR_COMPRESSION))
            guard let compression = VCMFormat.compression(code: cc) else {
                throw FormatError.malformed(path: path, offset: offset, "tensor '\(name)': unknown compression code \(cc)")
            }
            let ndim = Int(field(Int32(VCM_TENSOR_NDIM)))
            var shape: [Int] = []
            for d in 0..<ndim {
                shape.append(try int(vcm_manifest_tensor_dim(h, i, d), "dimension \(d) of tensor '\(name)'"))
            }
            m.tensors.append(VCMTensorRecord(
                name: name, dtype: dtype, shape: shape,
                offset: try int(field(Int32(VCM_TENSOR_OFFSET)), "offset of tensor '\(name)'"),
                size: try int(field(Int32(VCM_TENSOR_SIZE)), "size of tensor '\(name)'"),
                compression: compression,
                storedSize: try int(field(Int32(VCM_TENSOR_STORED_SIZE)), "stored size of tensor '\(name)'"),
                crc32c: UInt32(truncatingIfNeeded: field(Int32(VCM_TENSOR_CRC32C)))))
        }
        return m
    }

    private static func cString(_ buf: [CChar]) -> String {
        let bytes = buf.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }
        return String(decoding: bytes, as: UTF8.self)
    }
}

/// SHA-256 (FIPS 180-4) for the provenance record.
public struct SHA256 {
    private var ctx = vcm_sha256_ctx()

    public init() { vcm_sha256_init(&ctx) }

    /// Whether the x86 SHA extensions are used (`nil` queries; `false` forces the portable code,
    /// `true` uses them when the CPU has them). Both give the same digests; tests compare them.
    @discardableResult
    public static func hardware(_ enable: Bool? = nil) -> Bool {
        vcm_sha256_hardware(enable.map { $0 ? 1 : 0 } ?? -1) != 0
    }

    public mutating func update(_ bytes: [UInt8]) {
        vcm_sha256_update(&ctx, bytes, bytes.count)
    }

    /// The 32-byte digest (the hasher is reset afterwards).
    public mutating func finalize() -> [UInt8] {
        var out = [UInt8](repeating: 0, count: 32)
        vcm_sha256_final(&ctx, &out)
        vcm_sha256_init(&ctx)
        return out
    }

    /// SHA-256 of a whole file, read through the mapping in 8 MB steps whose pages are released
    /// afterwards (hashing a 7 GB checkpoint does not grow the resident set). `progress` gets the
    /// bytes hashed so far.
    public static func file(_ file: MappedFile, progress: (Int) -> Void = { _ in }) throws -> [UInt8] {
        var h = SHA256()
        let step = 8 << 20
        var offset = 0
        while offset < file.size {
            let n = min(step, file.size - offset)
            h.update(try file.bytes(offset: offset, count: n))
            file.dontNeed(offset: offset, count: n)
            offset += n
            progress(offset)
        }
        return h.finalize()
    }
}
