import Foundation
import Testing
import VCFormats
import VCTensor
import VCTestSupport

@Suite("TorchCheckpoint")
struct TorchCheckpointTests {
    let tmp: TempDir
    init() throws { tmp = try TempDir() }

    /// Two small tensors sharing nothing: a [2,3] f32 and a [4] f16 view at offset 2 of a
    /// 6-element storage.
    static let specs = [
        TensorSpec(name: "a.weight", key: "0", storageNumel: 6, size: [2, 3]),
        TensorSpec(name: "b.bias", storageType: "HalfStorage", key: "1", storageNumel: 6, offset: 2, size: [4]),
    ]
    static let storages: [(String, [UInt8])] = [
        ("0", f32Bytes([1, 2, 3, 4, 5, 6])),
        ("1", [0x00, 0x3C, 0x00, 0x40, 0x00, 0x42, 0x00, 0x44, 0x00, 0x45, 0x00, 0x46]), // f16 1,2,3,4,5,6
    ]

    func write(_ bytes: [UInt8], _ name: String = "m-\(UUID().uuidString).ckpt") throws -> String { try tmp.write(name, bytes) }

    func rejects(_ bytes: [UInt8], _ parts: String..., sourceLocation: SourceLocation = #_sourceLocation) throws {
        let p = try write(bytes)
        expectFormatError(p, parts, sourceLocation: sourceLocation) { _ = try TorchCheckpoint(path: p) }
    }

    func checkSmall(_ c: TorchCheckpoint) throws {
        #expect(c.tensorNames == ["a.weight", "b.bias"])
        let a = try #require(try c.tensor(named: "a.weight"))
        #expect(a.shape == [2, 3] && a.dtype == .f32 && a.floats() == [1, 2, 3, 4, 5, 6])
        let b = try #require(try c.tensor(named: "b.bias"))
        #expect(b.shape == [4] && b.dtype == .f16 && b.floats() == [3, 4, 5, 6])
    }

    // MARK: golden A: the .ckpt written by the official code equals the .safetensors copy

    @Test func goldenCheckpointMatchesSafetensors() throws {
        let ckpt = try TorchCheckpoint(path: Fixtures.path("vc2-tiny-a/model.ckpt"))
        let st = try SafetensorsFile(path: Fixtures.path("vc2-tiny-a/model.safetensors"))
        #expect(ckpt.folder == "model")
        #expect(ckpt.wrapper == .stateDict)
        #expect(ckpt.skipped.isEmpty)
        #expect(ckpt.tensorNames.count == 1717)
        #expect(Set(ckpt.tensorNames) == Set(st.tensorNames))
        var mapped = 0
        for name in st.tensorNames {
            let s = try #require(try st.tensor(named: name))
            let c = try #require(try ckpt.tensor(named: name))
            #expect(c.shape == s.shape, "\(name)")
            #expect(c.dtype == s.dtype, "\(name)")
            #expect(c.byteCount == s.byteCount && c.crc32c() == s.crc32c(), "\(name)")
            if c.storage.isMapped { mapped += 1 }
        }
        // torch.save aligns storages to 64 bytes: every tensor is zero-copy.
        #expect(mapped == 1717)
        // Spot-check one value against the bytes in both files.
        let name = "model.diffusion_model.input_blocks.0.0.weight"
        #expect(try ckpt.tensor(named: name)?.floats() == st.tensor(named: name)?.floats())
    }

    // MARK: wrappers, ZIP64, alignment

    @Test func readsAllThreeWrappers() throws {
        for (w, expected) in [(WrapperKind.stateDict, TorchCheckpoint.Wrapper.stateDict), (.bare, .bare), (.deepSpeed, .deepSpeed)] {
            let p = try write(checkpointZip(pickle: torchPickle(Self.specs, wrapper: w), storages: Self.storages))
            let c = try TorchCheckpoint(path: p)
            #expect(c.wrapper == expected)
            try checkSmall(c)
        }
    }

    @Test func readsParametersWrappingTensors() throws {
        // nn.Parameter pickles as _rebuild_parameter(_rebuild_tensor_v2(...), requires_grad, hooks).
        var p = PickleWriter()
        p.proto(); p.orderedDict()
        p.string("p"); p.global("torch._utils", "_rebuild_parameter"); p.mark(); p.tensor(Self.specs[0]); p.op(0x88); p.orderedDict(); p.tuple(); p.reduce()
        p.setitem(); p.stop()
        let c = try TorchCheckpoint(path: try write(checkpointZip(pickle: p.bytes, storages: Self.storages)))
        #expect(c.wrapper == .bare)
        #expect(try c.tensor(named: "p")?.floats() == [1, 2, 3, 4, 5, 6])
    }

    @Test func deepSpeedKeysMustCarryThePrefix() throws {
        var p = PickleWriter()
        p.proto(); p.emptyDict(); p.string("module"); p.orderedDict()
        p.string("plain.name"); p.tensor(Self.specs[0]); p.setitem(); p.setitem(); p.stop()
        try rejects(checkpointZip(pickle: p.bytes, storages: Self.storages), "DeepSpeed key 'plain.name' does not start with '_forward_module.'")
    }

    @Test func readsZip64AnyFolderAndUnalignedStorages() throws {
        let p = try write(checkpointZip(folder: "my run 7", pickle: torchPickle(Self.specs), storages: Self.storages, zip64: true))
        let z = try ZipArchive(path: p)
        #expect(z.entries.map(\.name).contains("my run 7/data/1"))
        let c = try TorchCheckpoint(path: p)
        #expect(c.folder == "my run 7")
        try checkSmall(c)
        #expect(try c.tensor(named: "a.weight")?.storage.isMapped == true)

        // No alignment padding: storages at odd offsets are copied, values unchanged.
        let q = try write(checkpointZip(pickle: torchPickle(Self.specs), storages: Self.storages, align: 1))
        let u = try TorchCheckpoint(path: q)
        try checkSmall(u)
        #expect(u.entries.contains { $0.fileOffset % 4 != 0 })
    }

    @Test func keepsUnusedOpaqueValuesAndSkipsPlainOnes() throws {
        // Lightning-style extras outside the state dict, including a call of os.system that
        // nothing uses, and plain values inside it.
        let bytes = torchPickle(Self.specs, extraItems: { p in
            p.string("_version"); p.int(3)
        }, extraRoot: { p in
            p.string("epoch"); p.int(12)
            p.string("callbacks"); p.global("os", "system"); p.string("echo hi"); p.tuple1(); p.reduce()
        })
        let c = try TorchCheckpoint(path: try write(checkpointZip(pickle: bytes, storages: Self.storages)))
        try checkSmall(c)
        #expect(c.skipped.map(\.name) == ["_version"])
    }

    @Test func doubleStorageIsRecognisedButUnusable() throws {
        let spec = TensorSpec(name: "betas", storageType: "DoubleStorage", key: "0", storageNumel: 2, size: [2])
        let p = try write(checkpointZip(pickle: torchPickle([spec]), storages: [("0", [UInt8](repeating: 0, count: 16))]))
        let c = try TorchCheckpoint(path: p)
        #expect(c.entries.first?.dtype == .f64)
        #expect(try c.rawStorage(named: "betas")?.byteCount == 16)
        expectFormatError(p, ["tensor 'betas' has dtype F64 (torch.DoubleStorage)", "cannot use"]) { _ = try c.tensor(named: "betas") }
    }

    @Test func pickleMachineHandlesOtherProtocolOpcodes() throws {
        // Protocol 4 style: FRAME, SHORT_BINUNICODE, MEMOIZE, STACK_GLOBAL, EMPTY_LIST/APPENDS,
        // BINFLOAT, LONG1, NEWTRUE, NONE, BINBYTES, SHORT_BINSTRING, EMPTY_SET/ADDITEMS.
        var p = PickleWriter()
        p.proto(4)
        p.op(0x95); p.le(0, 8) // FRAME (length not checked against content)
        p.op(0x7D); p.op(0x94) // EMPTY_DICT MEMOIZE -> memo 0
        p.mark()
        p.op(0x8C); p.op(1); p.raw(Array("l".utf8)); p.op(0x94)
        p.op(0x5D); p.mark(); p.op(0x47); p.raw([0x3F, 0xF8, 0, 0, 0, 0, 0, 0]); p.op(0x8A); p.op(2); p.raw([0x00, 0x80])
        p.op(0x88); p.none(); p.op(0x65) // APPENDS -> [1.5, -32768, True, None]
        p.op(0x8C); p.op(1); p.raw(Array("b".utf8)); p.op(0x42); p.le(3, 4); p.raw([1, 2, 3])
        p.op(0x8C); p.op(1); p.raw(Array("s".utf8)); p.op(0x55); p.op(2); p.raw(Array("hi".utf8))
        p.op(0x8C); p.op(1); p.raw(Array("g".utf8)); p.op(0x8C); p.op(6); p.raw(Array("module".utf8))
        p.op(0x8C); p.op(4); p.raw(Array("Name".utf8)); p.op(0x93)
        p.op(0x8C); p.op(1); p.raw(Array("e".utf8)); p.op(0x8F); p.mark(); p.int(5); p.int(6); p.op(0x90)
        p.setitems()
        p.op(0x8C); p.op(1); p.raw(Array("m".utf8)); p.op(0x68); p.op(1); p.setitem() // BINGET 1 = "l"
        p.stop()
        let g = try Unpickler.load(p.bytes)
        #expect(g.proto == 4)
        let items = try #require(g.dictItems(g.root))
        let byKey = Dictionary(uniqueKeysWithValues: items.map { (g.string($0.key) ?? "?", $0.value) })
        guard case .list(let lid) = g.nodes[try #require(byKey["l"])] else { Issue.record("l is not a list"); return }
        #expect(g.lists[lid].map { g.nodes[$0] } == [.float(1.5), .int(-32768), .bool(true), .none])
        #expect(g.nodes[try #require(byKey["b"])] == .bytes([1, 2, 3]))
        #expect(g.nodes[try #require(byKey["s"])] == .string("hi"))
        #expect(g.nodes[try #require(byKey["g"])] == .global(module: "module", name: "Name"))
        #expect(g.nodes[try #require(byKey["m"])] == .string("l"))
        guard case .set(let sid) = g.nodes[try #require(byKey["e"])] else { Issue.record("e is not a set"); return }
        #expect(g.lists[sid].map { g.nodes[$0] } == [.int(5), .int(6)])
    }

    @Test func sharedMemoReferencesSeeLaterMutation() throws {
        // d = {}; memo[0] = d; root = (d,); SETITEM on memo copy after it was placed in a tuple.
        var p = PickleWriter()
        p.proto(); p.emptyDict(); p.binput(0); p.tuple1(); p.binget(0); p.string("k"); p.int(1); p.setitem(); p.op(0x30); p.stop()
        let g = try Unpickler.load(p.bytes)
        let inner = try #require(g.tuple(g.root)?.first)
        #expect(g.dictItems(inner)?.count == 1)
    }

    // MARK: malformed zips

    var valid: [UInt8] { checkpointZip(pickle: torchPickle(Self.specs), storages: Self.storages) }

    @Test func rejectsTruncatedZip() throws {
        try rejects(Array(valid.prefix(valid.count / 2)), "no end-of-central-directory record")
        try rejects(Array(valid.prefix(10)), "too short for a zip archive")
        try rejects([], "too short")
    }

    @Test func rejectsBadCentralDirectory() throws {
        var b = valid
        let eocd = b.count - 22
        let cdOffset = Int(ZipArchive.u32le(b, eocd + 16))
        b[cdOffset] = 0x00 // break the first central-directory signature
        try rejects(b, "central directory entry 0 of 4: bad signature or truncated")

        var c = valid
        c.replaceSubrange((eocd + 16)..<(eocd + 20), with: ZipWriter.le(UInt64(c.count), 4))
        try rejects(c, "central directory", "runs past its end record")

        var d = valid
        d.replaceSubrange((eocd + 10)..<(eocd + 12), with: ZipWriter.le(60000, 2))
        try rejects(d, "60000 entries declared")

        // Local header offset of entry 0 pointing at garbage.
        var e = valid
        e.replaceSubrange((cdOffset + 42)..<(cdOffset + 46), with: ZipWriter.le(5, 4))
        try rejects(e, "entry 'archive/data.pkl': no local file header at 5")
    }

    @Test func rejectsDuplicateAndOverlappingEntries() throws {
        let dup = ZipWriter.archive([.init(name: "a/data.pkl", data: [0x2E]), .init(name: "a/data.pkl", data: [0x2E])])
        try rejects(dup, "duplicate entry name 'a/data.pkl'")
        var b = valid
        let eocd = b.count - 22
        let cdOffset = Int(ZipArchive.u32le(b, eocd + 16))
        let z = try ZipArchive(path: try write(b))
        // Declare data.pkl long enough to run over the next entry's local header.
        let n = UInt64(z.entries[1].localHeaderOffset - z.entries[0].dataOffset + 10)
        b.replaceSubrange((cdOffset + 20)..<(cdOffset + 28), with: ZipWriter.le(n, 4) + ZipWriter.le(n, 4))
        try rejects(b, "entries 'archive/data.pkl' and 'archive/data/0' overlap")
    }

    @Test func rejectsCompressedEntries() throws {
        let items: [ZipWriter.Item] = [
            .init(name: "archive/data.pkl", data: torchPickle(Self.specs)),
            .init(name: "archive/data/0", data: Self.storages[0].1, method: 8),
            .init(name: "archive/data/1", data: Self.storages[1].1),
        ]
        try rejects(ZipWriter.archive(items), "tensor 'a.weight': storage '0': entry 'archive/data/0' is compressed (method 8)")
        let pklCompressed: [ZipWriter.Item] = [.init(name: "archive/data.pkl", data: torchPickle(Self.specs), method: 8)]
        try rejects(ZipWriter.archive(pklCompressed), "entry 'archive/data.pkl' is compressed")
    }

    @Test func rejectsHugeDeclaredSizes() throws {
        // A ZIP64 size field of 2^40 bytes for a storage entry.
        var b = checkpointZip(pickle: torchPickle(Self.specs), storages: Self.storages, zip64: true)
        let name = Array("archive/data/0".utf8)
        let cdSig: [UInt8] = [0x50, 0x4B, 0x01, 0x02]
        var at = 0
        for i in 0..<(b.count - 46 - name.count) where Array(b[i..<(i + 4)]) == cdSig && Array(b[(i + 46)..<(i + 46 + name.count)]) == name { at = i; break }
        #expect(at > 0)
        let extra = at + 46 + name.count
        b.replaceSubrange((extra + 4)..<(extra + 20), with: ZipWriter.le(1 << 40, 8) + ZipWriter.le(1 << 40, 8))
        try rejects(b, "entry 'archive/data/0': declares 1099511627776 bytes")

        // A storage whose pickle declares far more elements than its entry holds.
        var big = Self.specs
        big[0].storageNumel = 1 << 40
        try rejects(checkpointZip(pickle: torchPickle(big), storages: Self.storages),
                    "tensor 'a.weight': storage '0' declares 1099511627776 elements of FloatStorage", "holds 24 bytes")
        big[0].storageNumel = Int.max / 2
        try rejects(checkpointZip(pickle: torchPickle(big), storages: Self.storages), "overflow")
    }

    @Test func rejectsMissingRecords() throws {
        try rejects(ZipWriter.archive([.init(name: "archive/data/0", data: [1])]), "no <folder>/data.pkl in the archive")
        try rejects(ZipWriter.archive([.init(name: "data.pkl", data: [0x2E])]), "no <folder>/data.pkl")
        try rejects(checkpointZip(pickle: torchPickle(Self.specs), storages: [Self.storages[0]]),
                    "tensor 'b.bias': storage '1' (archive/data/1) is missing from the archive")
        let two = checkpointZip(pickle: torchPickle(Self.specs), storages: Self.storages,
                                extra: [.init(name: "other/data.pkl", data: [0x2E])])
        try rejects(two, "2 data.pkl records")
    }

    @Test func rejectsBigEndianAndLegacyFiles() throws {
        let big = checkpointZip(pickle: torchPickle(Self.specs), storages: Self.storages,
                                extra: [.init(name: "archive/byteorder", data: Array("big".utf8))])
        try rejects(big, "big-endian")
        let little = checkpointZip(pickle: torchPickle(Self.specs), storages: Self.storages,
                                   extra: [.init(name: "archive/byteorder", data: Array("little".utf8))])
        try checkSmall(try TorchCheckpoint(path: try write(little)))
        // Legacy torch.save: a bare pickle stream starting with the magic number.
        try rejects([0x80, 0x02, 0x8A, 0x0A, 0x6C, 0xFC, 0x9C, 0x46, 0xF9, 0x20, 0x6A, 0xA8, 0x50, 0x19] + [UInt8](repeating: 0, count: 40),
                    "legacy (pre-1.6, non-zip) torch.save format")
    }

    @Test func rejectsCorruptPickleBytes() throws {
        var b = valid
        // Flip a byte inside data.pkl: the CRC-32 check catches it.
        let dataAt = try ZipArchive(path: try write(b)).entries[0].dataOffset
        b[dataAt + 5] ^= 0x01
        try rejects(b, "entry 'archive/data.pkl': CRC-32")
    }

    // MARK: malformed pickles (each error names the byte offset inside data.pkl)

    func pickleRejects(_ pickle: [UInt8], _ parts: String..., sourceLocation: SourceLocation = #_sourceLocation) throws {
        let p = try write(checkpointZip(pickle: pickle, storages: Self.storages))
        expectFormatError(p, ["archive/data.pkl byte"] + parts, sourceLocation: sourceLocation) { _ = try TorchCheckpoint(path: p) }
    }

    @Test func rejectsTruncatedPickles() throws {
        let good = torchPickle(Self.specs)
        try pickleRejects(Array(good.dropLast()), "truncated pickle: no STOP opcode")
        // Cut inside a BINUNICODE length/argument.
        var p = PickleWriter(); p.proto(); p.op(0x58); p.le(100, 4); p.raw([0x61])
        try pickleRejects(p.bytes, "byte 2:", "BINUNICODE declares 100 bytes, but only 1 remain")
        var q = PickleWriter(); q.proto(); q.op(0x4A); q.raw([1, 2])
        try pickleRejects(q.bytes, "byte 2:", "truncated BININT")
        var r = PickleWriter(); r.proto(); r.global("torch", "Float")
        r.bytes.removeLast()
        try pickleRejects(r.bytes, "truncated GLOBAL: no newline")
    }

    @Test func rejectsUnknownOpcodesAndProtocols() throws {
        var p = PickleWriter(); p.proto(); p.emptyDict(); p.op(0xFF); p.stop()
        try pickleRejects(p.bytes, "data.pkl byte 3: unknown or unsupported opcode 0xFF")
        var q = PickleWriter(); q.proto(6); q.emptyDict(); q.stop()
        try pickleRejects(q.bytes, "byte 0: unsupported pickle protocol 6")
        var r = PickleWriter(); r.proto(); r.op(0x82); r.op(1); r.stop()
        try pickleRejects(r.bytes, "byte 2: extension-registry opcode")
    }

    @Test func rejectsStackUnderflowAndMemoMisses() throws {
        var p = PickleWriter(); p.proto(); p.int(1); p.tuple2(); p.stop()
        try pickleRejects(p.bytes, "byte 4: TUPLE2: stack underflow")
        var q = PickleWriter(); q.proto(); q.stop()
        try pickleRejects(q.bytes, "STOP: stack underflow")
        var r = PickleWriter(); r.proto(); r.emptyDict(); r.binget(7); r.stop()
        try pickleRejects(r.bytes, "byte 3: memo has no entry 7")
        var s = PickleWriter(); s.proto(); s.int(1); s.tuple()
        try pickleRejects(s.bytes, "TUPLE: no MARK on the stack")
        // Items below a MARK are not reachable until the mark is popped.
        var t = PickleWriter(); t.proto(); t.int(1); t.mark(); t.tuple1(); t.stop()
        try pickleRejects(t.bytes, "TUPLE1: stack underflow")
        var u = PickleWriter(); u.proto(); u.int(1); u.int(2); u.setitem(); u.stop()
        try pickleRejects(u.bytes, "SETITEM: stack underflow")
        var v = PickleWriter(); v.proto(); v.int(0); v.int(1); v.int(2); v.setitem(); v.stop()
        try pickleRejects(v.bytes, "SETITEM on 0, not a dict")
    }

    @Test func rejectsDeepNestingAndBrokenLimits() throws {
        var p = PickleWriter(); p.proto(); p.emptyTuple()
        for _ in 0..<5000 { p.tuple1() }
        p.stop()
        try pickleRejects(p.bytes, "nesting deeper than 100")
        // Nested lists built with MARK ... LIST.
        var q = PickleWriter(); q.proto()
        for _ in 0..<150 { q.mark() }
        q.op(0x5D)
        for _ in 0..<150 { q.op(0x6C) }
        q.stop()
        try pickleRejects(q.bytes, "nesting deeper than 100")
        // Memo and container limits (lowered so the test stays small).
        var limits = PickleLimits()
        limits.maxMemo = 10
        var r = PickleWriter(); r.proto(); r.none()
        for i in 0..<11 { r.binput(UInt8(i)) }
        r.stop()
        #expect(throws: PickleError(offset: 23, message: "memo exceeds 10 entries")) { _ = try Unpickler.load(r.bytes, limits: limits) }
        limits = PickleLimits()
        limits.maxItems = 100
        var s = PickleWriter(); s.proto(); s.op(0x5D); s.mark()
        for _ in 0..<101 { s.none() }
        s.op(0x65); s.stop()
        #expect(throws: PickleError.self) { _ = try Unpickler.load(s.bytes, limits: limits) }
    }

    // MARK: tensors that depend on something not allowed, and bad views

    @Test func rejectsTensorsBuiltByGlobalsOutsideTheAllowlist() throws {
        var p = PickleWriter()
        p.proto(); p.emptyDict(); p.string("state_dict"); p.orderedDict()
        p.mark()
        p.string("evil"); p.global("os", "system"); p.string("rm -rf /"); p.tuple1(); p.reduce()
        p.setitems(); p.setitem(); p.stop()
        try pickleRejectsTensor(p.bytes, "tensor 'evil': built by os.system (REDUCE), which is not in the allowlist")

        var q = PickleWriter()
        q.proto(); q.emptyDict(); q.string("state_dict"); q.orderedDict()
        q.string("w"); q.global("builtins", "eval"); q.mark(); q.string("print(1)"); q.tuple(); q.reduce()
        q.setitem(); q.setitem(); q.stop()
        try pickleRejectsTensor(q.bytes, "tensor 'w': built by builtins.eval")

        // A genuine rebuild call whose size argument comes from builtins.eval.
        var r = PickleWriter()
        r.proto(); r.emptyDict(); r.string("state_dict"); r.orderedDict()
        r.string("w")
        r.global("torch._utils", "_rebuild_tensor_v2")
        r.mark()
        r.mark(); r.string("storage"); r.global("torch", "FloatStorage"); r.string("0"); r.string("cpu"); r.int(6); r.tuple()
        r.binpersid(); r.int(0)
        r.global("builtins", "eval"); r.string("(2,3)"); r.tuple1(); r.reduce()
        r.ints([3, 1]); r.newFalse(); r.orderedDict(); r.tuple(); r.reduce()
        r.setitem(); r.setitem(); r.stop()
        try pickleRejectsTensor(r.bytes, "tensor 'w': size is the result of calling builtins.eval, not a tuple of integers")

        // The storage class itself outside the allowlist.
        var spec = Self.specs[0]
        spec.storageType = "SystemStorage"
        try pickleRejectsTensor(torchPickle([spec]), "tensor 'a.weight': storage type torch.SystemStorage is not a torch storage class")
    }

    func pickleRejectsTensor(_ pickle: [UInt8], _ parts: String..., sourceLocation: SourceLocation = #_sourceLocation) throws {
        let p = try write(checkpointZip(pickle: pickle, storages: Self.storages))
        expectFormatError(p, parts, sourceLocation: sourceLocation) { _ = try TorchCheckpoint(path: p) }
    }

    @Test func rejectsBadViews() throws {
        func view(offset: Int = 0, size: [Int], stride: [Int]? = nil, numel: Int = 6) -> [UInt8] {
            torchPickle([TensorSpec(name: "v", key: "0", storageNumel: numel, offset: offset, size: size, stride: stride)])
        }
        try pickleRejectsTensor(view(offset: 1, size: [2, 3]), "tensor 'v': view of 6 elements at offset 1 is outside storage '0' of 6 elements")
        try pickleRejectsTensor(view(size: [3, 2], stride: [1, 3]), "tensor 'v': size [3, 2] with stride [1, 3] is not a contiguous view")
        try pickleRejectsTensor(view(size: [2, 3], stride: [-3, 1]), "tensor 'v': stride[0] is negative (-3)")
        try pickleRejectsTensor(view(size: [2, 3], stride: [3, Int.max]), "not a contiguous view")
        try pickleRejectsTensor(view(size: [1 << 62, 4], stride: [4, 1]), "tensor 'v': size [4611686018427387904, 4] overflows")
        try pickleRejectsTensor(view(offset: Int.max, size: [2]), "outside storage '0'")
        try pickleRejectsTensor(view(size: [-2, 3]), "size[0] is negative")
        try pickleRejectsTensor(view(size: [2, 3], stride: [3]), "different ranks")
        // Dimensions of size 1 may carry any stride; empty tensors are fine anywhere in range.
        let ok = try TorchCheckpoint(path: try write(checkpointZip(pickle: view(size: [2, 1, 3], stride: [3, 77, 1]), storages: Self.storages)))
        #expect(try ok.tensor(named: "v")?.floats() == [1, 2, 3, 4, 5, 6])
        let empty = try TorchCheckpoint(path: try write(checkpointZip(pickle: view(offset: 6, size: [0, 3], stride: [5, 9]), storages: Self.storages)))
        #expect(try empty.tensor(named: "v")?.shape == [0, 3])
    }

    @Test func rejectsStorageEntrySmallerThanDeclared() throws {
        try rejects(checkpointZip(pickle: torchPickle(Self.specs), storages: [("0", f32Bytes([1, 2, 3])), Self.storages[1]]),
                    "tensor 'a.weight': storage '0' declares 6 elements of FloatStorage (24 bytes), but archive/data/0 holds 12 bytes")
    }

    @Test func rejectsNonDictRootsAndDuplicateNames() throws {
        var p = PickleWriter(); p.proto(); p.int(5); p.stop()
        try pickleRejectsTensor(p.bytes, "data.pkl holds 5, not a dict of tensors")
        var q = PickleWriter(); q.proto(); q.emptyDict(); q.string("state_dict"); q.op(0x5D); q.setitem(); q.stop()
        try pickleRejectsTensor(q.bytes, "'state_dict' is a list of 0, not a dict of tensors")
        var twice = Self.specs
        twice[1].name = twice[0].name
        try pickleRejectsTensor(torchPickle(twice), "tensor 'a.weight' appears twice")
    }
}

extension ZipArchive {
    static func u32le(_ b: [UInt8], _ i: Int) -> UInt32 {
        UInt32(b[i]) | UInt32(b[i + 1]) << 8 | UInt32(b[i + 2]) << 16 | UInt32(b[i + 3]) << 24
    }
}
