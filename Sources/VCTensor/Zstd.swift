import CZstd

/// zstd compression of byte buffers (tensor payloads in .vcm files, the bundled BPE vocabulary).
public enum Zstd {
    /// Compresses `input` at `level` (1...19; 3 is zstd's default).
    public static func compress(_ input: [UInt8], level: Int32 = 3) throws -> [UInt8] {
        let bound = ZSTD_compressBound(input.count)
        var out = [UInt8](repeating: 0, count: bound)
        let n = input.withUnsafeBytes { src in
            out.withUnsafeMutableBytes { dst in
                ZSTD_compress(dst.baseAddress, bound, src.baseAddress, input.count, level)
            }
        }
        if ZSTD_isError(n) != 0 { throw TensorError.compression(String(cString: ZSTD_getErrorName(n))) }
        out.removeSubrange(n...)
        return out
    }

    /// Decompresses a single zstd frame whose decompressed size must be exactly `expectedSize`
    /// (the caller knows it from its own metadata; a frame claiming more is rejected before any
    /// allocation).
    public static func decompress(_ input: [UInt8], expectedSize: Int) throws -> [UInt8] {
        guard expectedSize >= 0 else { throw TensorError.compression("negative expected size") }
        let declared = input.withUnsafeBytes { ZSTD_getFrameContentSize($0.baseAddress, input.count) }
        // ZSTD_CONTENTSIZE_UNKNOWN / _ERROR are the two largest UInt64 values.
        if declared >= UInt64.max - 1 { throw TensorError.compression("not a zstd frame with a known size") }
        guard declared == UInt64(expectedSize) else {
            throw TensorError.compression("frame holds \(declared) bytes, expected \(expectedSize)")
        }
        var out = [UInt8](repeating: 0, count: expectedSize)
        let n = input.withUnsafeBytes { src in
            out.withUnsafeMutableBytes { dst in
                ZSTD_decompress(dst.baseAddress, expectedSize, src.baseAddress, input.count)
            }
        }
        if ZSTD_isError(n) != 0 { throw TensorError.compression(String(cString: ZSTD_getErrorName(n))) }
        guard n == expectedSize else { throw TensorError.compression("decompressed \(n) bytes, expected \(expectedSize)") }
        return out
    }

    /// Decompresses a frame of unknown size (streaming), refusing output beyond `limit` bytes.
    public static func decompress(_ input: [UInt8], limit: Int) throws -> [UInt8] {
        guard limit >= 0 else { throw TensorError.compression("negative size limit \(limit)") }
        let declared = input.withUnsafeBytes { ZSTD_getFrameContentSize($0.baseAddress, input.count) }
        if declared < UInt64.max - 1 {
            guard declared <= UInt64(limit) else { throw TensorError.compression("frame holds \(declared) bytes, over the \(limit)-byte limit") }
            return try decompress(input, expectedSize: Int(declared))
        }
        throw TensorError.compression("zstd frame without a content size")
    }
}
