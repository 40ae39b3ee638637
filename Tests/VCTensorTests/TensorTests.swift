import Foundation
import Testing
import VCTensor
import VCTestSupport

@Suite("Tensor, Zstd, WeightBinder, MappedFile")
struct TensorTests {
    @Test func conversionsRoundTrip() throws {
        var rng = SystemRandomNumberGenerator()
        let values = (0..<100).map { _ in Float.random(in: -4...4, using: &rng) }
        let x = try Tensor(shape: [4, 25], floats: values)
        let h = try x.converted(to: .f16)
        #expect(h.dtype == .f16 && h.byteCount == 200)
        #expect(h.floats() == values.map { Float(Float16($0)) })
        let b = try x.converted(to: .bf16)
        #expect(b.byteCount == 200)
        // bf16 keeps the top 16 bits after rounding: within half a bf16 step (2^-8 relative).
        #expect(zip(b.floats(), values).allSatisfy { abs($0 - $1) <= abs($1) * 0x1p-8 })
        let q = try x.converted(to: .q8_0)
        #expect(q.byteCount == 4 * 34) // 4 rows of one (partial) block
        #expect(zip(q.floats(), values).allSatisfy { abs($0 - $1) <= 4.0 / 127 * 0.6 })
        #expect(try h.converted(to: .q8_0).shape == [4, 25])
        #expect(try q.converted(to: .f32).floats() == q.floats())
        #expect(throws: TensorError.self) { try x.converted(to: .i32) }
        // Integer tensors expand to floats.
        let i = try Tensor(shape: [3], dtype: .i32, bytes: [1, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 7, 0, 0, 0])
        #expect(i.floats() == [1, -1, 7])
        let l = try Tensor(shape: [1], dtype: .i64, bytes: [0, 1, 0, 0, 0, 0, 0, 0])
        #expect(l.floats() == [256])
        let u = try Tensor(shape: [2], dtype: .u8, bytes: [3, 250])
        #expect(u.floats() == [3, 250])
        #expect(i.bytes() == [1, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 7, 0, 0, 0])
        // CRC-32C of the stored bytes: the standard check value.
        #expect(try Tensor(shape: [9], dtype: .u8, bytes: Array("123456789".utf8)).crc32c() == 0xE306_9283)
    }

    @Test func constructionAndViewsAreChecked() throws {
        #expect(throws: TensorError.self) { try Tensor(shape: [2, 2], floats: [1, 2, 3]) }
        #expect(throws: TensorError.self) { try Tensor(shape: [-1, -1], floats: [1]) }
        #expect(throws: TensorError.self) { try Tensor(shape: [Int.max, 4], floats: [1]) }
        #expect(throws: TensorError.self) { try Tensor(shape: [2], dtype: .f16, bytes: [1, 2, 3]) }
        #expect(throws: TensorError.self) { try Tensor.zeros([3, -2]) }
        #expect(try Tensor.zeros([3, 2], dtype: .f16).byteCount == 12)
        let x = try Tensor(shape: [3, 2], floats: [1, 2, 3, 4, 5, 6])
        #expect(try x.rows(1, 2).floats() == [3, 4, 5, 6])
        #expect(try x.rows(3, 0).count == 0)
        #expect(throws: TensorError.self) { try x.rows(2, 2) }
        #expect(throws: TensorError.self) { try x.rows(-1, 1) }
        #expect(throws: TensorError.self) { try x.rows(1, Int.max) }
        #expect(try x.reshaped([2, 3]).shape == [2, 3])
        #expect(throws: TensorError.self) { try x.reshaped([4, 2]) }
        #expect(throws: TensorError.self) { try x.reshaped([-2, -3]) }
        let q = try x.converted(to: .q8_0)
        #expect(try q.rows(1, 1).floats().count == 2)
        #expect(try q.reshaped([3, 2, 1]).shape == [3, 2, 1])
        #expect(throws: TensorError.self) { try q.reshaped([6]) }
        #expect(throws: TensorError.self) { try q.reshaped([2, 3]) }
        // Views share storage; copies do not.
        let view = try x.rows(0, 1)
        #expect(view.storage === x.storage)
        #expect(x.copy().storage !== x.storage)
        // Wrapping storage is bounds-checked.
        #expect(throws: TensorError.self) { try Tensor(shape: [7], dtype: .f32, storage: x.storage) }
        #expect(throws: TensorError.self) { try Tensor(shape: [1], dtype: .f32, storage: x.storage, byteOffset: 24) }
        #expect(throws: TensorError.self) { try Tensor(shape: [1], dtype: .f32, storage: x.storage, byteOffset: -4) }
    }

    @Test func zstdRoundTripAndRefusals() throws {
        let input = (0..<100_000).map { UInt8(truncatingIfNeeded: $0 * 7 / 3) }
        let packed = try Zstd.compress(input)
        #expect(packed.count < input.count / 4)
        #expect(try Zstd.decompress(packed, expectedSize: input.count) == input)
        #expect(try Zstd.decompress(packed, limit: input.count) == input)
        #expect(try Zstd.decompress(try Zstd.compress([]), expectedSize: 0) == [])
        // Wrong sizes are refused before decompressing.
        #expect(throws: TensorError.self) { try Zstd.decompress(packed, expectedSize: input.count - 1) }
        #expect(throws: TensorError.self) { try Zstd.decompress(packed, expectedSize: input.count + 1) }
        #expect(throws: TensorError.self) { try Zstd.decompress(packed, expectedSize: -1) }
        #expect(throws: TensorError.self) { try Zstd.decompress(packed, limit: input.count - 1) }
        #expect(throws: TensorError.self) { try Zstd.decompress(packed, limit: -1) }
        // Not zstd at all, and a truncated frame.
        #expect(throws: TensorError.self) { try Zstd.decompress([1, 2, 3, 4, 5, 6, 7, 8], expectedSize: 8) }
        #expect(throws: TensorError.self) { try Zstd.decompress(Array(packed.prefix(packed.count / 2)), expectedSize: input.count) }
    }

    @Test func weightBinderListsEveryProblemAtOnce() throws {
        let f = try Tensor(shape: [2, 3], floats: [1, 2, 3, 4, 5, 6])
        let source = DictionarySource([
            "a.weight": f,
            "b.weight": try f.converted(to: .f16),
            "c.weight": try f.reshaped([3, 2]),
            "d.ids": try Tensor(shape: [2], dtype: .i32, bytes: [UInt8](repeating: 0, count: 8)),
            "extra.one": f, "extra.two": f, "other.ignored": f,
        ])
        let binder = WeightBinder(source)
        #expect(binder.take("a.weight", [2, 3]).floats() == [1, 2, 3, 4, 5, 6])
        let quant = binder.take("b.weight", [2, 3], allowQuantized: true)
        #expect(quant.dtype == .f16)
        #expect(binder.take("b.weight", [2, 3]).dtype == .f32) // converted when quantized types are not allowed
        let misshapen = binder.take("c.weight", [2, 3])
        #expect(misshapen.shape == [2, 3] && misshapen.floats().allSatisfy { $0 == 0 }) // zeros stand in
        _ = binder.take("d.ids", [2])
        _ = binder.take("missing.weight", [4])
        binder.ignore { $0.hasPrefix("other.") }
        do {
            try binder.finish()
            Issue.record("finish() should throw")
        } catch let e as BindingError {
            #expect(e.missing == ["missing.weight [4]"])
            #expect(e.unexpected == ["extra.one", "extra.two"])
            #expect(e.misshapen == ["c.weight: expected [2, 3], found [3, 2]"])
            #expect(e.wrongType == ["d.ids: i32"])
            #expect(e.description.contains("1 missing tensors") && e.description.contains("2 unexpected tensors"))
        }
        // The prefix limits the unexpected-name check; a clean binding does not throw.
        let clean = WeightBinder(DictionarySource(["m.w": f, "n.w": f]))
        _ = clean.take("m.w", [2, 3])
        #expect(throws: Never.self) { try clean.finish(prefix: "m.") }
        #expect(throws: BindingError.self) { try clean.finish() }
    }

    @Test func mappedFileBounds() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("vctensor-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let path = dir.appendingPathComponent("data.bin").path
        let content = Array("123456789".utf8) + [0x01, 0x02, 0x03, 0x04]
        try Data(content).write(to: URL(fileURLWithPath: path))
        let m = try MappedFile(path: path)
        #expect(m.size == 13)
        #expect(try m.bytes(offset: 9, count: 4) == [1, 2, 3, 4])
        #expect(try m.readLE(offset: 9, width: 4) == 0x0403_0201)
        #expect(try m.crc32c(offset: 0, count: 9) == 0xE306_9283)
        #expect(try m.storage(offset: 13, count: 0).byteCount == 0)
        for (offset, count) in [(0, 14), (13, 1), (-1, 2), (5, -1), (Int.max, 2), (2, Int.max)] {
            #expect(throws: TensorError.self) { try m.bytes(offset: offset, count: count) }
            #expect(throws: TensorError.self) { try m.storage(offset: offset, count: count) }
            #expect(throws: TensorError.self) { try m.crc32c(offset: offset, count: count) }
        }
        #expect(throws: TensorError.self) { try m.readLE(offset: 11, width: 4) }
        m.dontNeed(offset: -4096, count: 8192) // ignored, never touches memory before the mapping
        m.dontNeed(offset: 0, count: Int.max)
        #expect(try m.bytes(offset: 0, count: 3) == Array("123".utf8))
        // A tensor over mapped storage.
        let s = try m.storage(offset: 9, count: 4)
        #expect(s.isMapped)
        #expect(try Tensor(shape: [4], dtype: .u8, storage: s).floats() == [1, 2, 3, 4])
        // Empty files, missing files and directories.
        let empty = dir.appendingPathComponent("empty").path
        try Data().write(to: URL(fileURLWithPath: empty))
        #expect(try MappedFile(path: empty).size == 0)
        #expect(throws: TensorError.self) { try MappedFile(path: empty).bytes(offset: 0, count: 1) }
        #expect(throws: TensorError.self) { try MappedFile(path: dir.appendingPathComponent("nope").path) }
        #expect(throws: TensorError.self) { try MappedFile(path: dir.path) }
    }
}
