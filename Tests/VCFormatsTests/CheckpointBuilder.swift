import Foundation
import VCFormats

/// Test-only writers for zip archives, pickles and torch-style checkpoints, so that small valid
/// and malformed inputs can be generated in the tests instead of being stored as fixtures.

/// Emits pickle opcodes.
struct PickleWriter {
    var bytes: [UInt8] = []

    mutating func op(_ b: UInt8) { bytes.append(b) }
    mutating func raw(_ b: [UInt8]) { bytes += b }
    mutating func le(_ v: UInt64, _ n: Int) { for i in 0..<n { bytes.append(UInt8(truncatingIfNeeded: v >> (8 * UInt64(i)))) } }

    mutating func proto(_ v: UInt8 = 2) { op(0x80); op(v) }
    mutating func stop() { op(0x2E) }
    mutating func mark() { op(0x28) }
    mutating func emptyDict() { op(0x7D) }
    mutating func emptyTuple() { op(0x29) }
    mutating func tuple() { op(0x74) }
    mutating func tuple1() { op(0x85) }
    mutating func tuple2() { op(0x86) }
    mutating func tuple3() { op(0x87) }
    mutating func setitem() { op(0x73) }
    mutating func setitems() { op(0x75) }
    mutating func reduce() { op(0x52) }
    mutating func build() { op(0x62) }
    mutating func binpersid() { op(0x51) }
    mutating func newFalse() { op(0x89) }
    mutating func none() { op(0x4E) }
    mutating func binput(_ i: UInt8) { op(0x71); op(i) }
    mutating func binget(_ i: UInt8) { op(0x68); op(i) }

    mutating func string(_ s: String) {
        let u = Array(s.utf8)
        op(0x58); le(UInt64(u.count), 4); raw(u)
    }

    mutating func int(_ v: Int) {
        if v >= 0 && v < 256 { op(0x4B); op(UInt8(v)) }
        else if v >= 0 && v < 65536 { op(0x4D); le(UInt64(v), 2) }
        else if v >= Int(Int32.min) && v <= Int(Int32.max) { op(0x4A); le(UInt64(bitPattern: Int64(v)), 4) }
        else { op(0x8A); op(8); le(UInt64(bitPattern: Int64(v)), 8) }
    }

    mutating func global(_ module: String, _ name: String) {
        op(0x63); raw(Array(module.utf8)); op(0x0A); raw(Array(name.utf8)); op(0x0A)
    }

    mutating func ints(_ xs: [Int]) { mark(); for x in xs { int(x) }; tuple() }

    /// `collections.OrderedDict()`.
    mutating func orderedDict() { global("collections", "OrderedDict"); emptyTuple(); reduce() }

    /// `_rebuild_tensor_v2(storage, offset, size, stride, False, OrderedDict())`.
    mutating func tensor(_ t: TensorSpec) {
        global("torch._utils", "_rebuild_tensor_v2")
        mark()
        mark(); string("storage"); global("torch", t.storageType); string(t.key); string("cpu"); int(t.storageNumel); tuple()
        binpersid()
        int(t.offset)
        ints(t.size)
        ints(t.stride ?? TensorSpec.contiguous(t.size))
        newFalse()
        orderedDict()
        tuple()
        reduce()
    }
}

/// One tensor of a generated checkpoint.
struct TensorSpec {
    var name: String
    var storageType = "FloatStorage"
    var key: String
    var storageNumel: Int
    var offset = 0
    var size: [Int]
    var stride: [Int]? = nil

    static func contiguous(_ size: [Int]) -> [Int] {
        var s = [Int](repeating: 1, count: size.count)
        var acc = 1
        for i in size.indices.reversed() { s[i] = acc; acc *= size[i] }
        return s
    }
}

enum WrapperKind { case stateDict, bare, deepSpeed }

/// A torch.save-style data.pkl for `tensors` with the given wrapper, optionally with extra
/// opcodes for the state-dict values (`extraItems` is called after the tensors, inside the
/// SETITEMS mark, and must push key/value pairs).
func torchPickle(_ tensors: [TensorSpec], wrapper: WrapperKind = .stateDict,
                 extraItems: ((inout PickleWriter) -> Void)? = nil,
                 extraRoot: ((inout PickleWriter) -> Void)? = nil) -> [UInt8] {
    var p = PickleWriter()
    p.proto(2)
    if wrapper != .bare {
        p.emptyDict()
        p.mark()
        p.string(wrapper == .stateDict ? "state_dict" : "module")
    }
    p.orderedDict()
    p.mark()
    for t in tensors {
        p.string(wrapper == .deepSpeed ? "_forward_module." + t.name : t.name)
        p.tensor(t)
    }
    extraItems?(&p)
    p.setitems()
    if wrapper != .bare {
        extraRoot?(&p)
        p.setitems()
    }
    p.stop()
    return p.bytes
}

/// A zip archive writer: stored entries, data aligned to `align` bytes with an "FB" padding extra
/// field (as PyTorch does), optional ZIP64 for every size and offset field.
struct ZipWriter {
    struct Item {
        var name: String
        var data: [UInt8]
        var method: UInt16 = 0
    }

    static func le(_ v: UInt64, _ n: Int) -> [UInt8] { (0..<n).map { UInt8(truncatingIfNeeded: v >> (8 * UInt64($0))) } }

    static func archive(_ items: [Item], zip64: Bool = false, align: Int = 64) -> [UInt8] {
        var out: [UInt8] = []
        var central: [UInt8] = []
        for item in items {
            let name = Array(item.name.utf8)
            let crc = ZipArchive.crc32(item.data)
            let offset = out.count
            var extra: [UInt8] = []
            if zip64 { extra += le(1, 2) + le(16, 2) + le(UInt64(item.data.count), 8) + le(UInt64(item.data.count), 8) }
            if align > 1 {
                let base = offset + 30 + name.count + extra.count + 4
                let pad = (align - base % align) % align
                extra += [0x46, 0x42] + le(UInt64(pad), 2) + [UInt8](repeating: 0x5A, count: pad)
            }
            let size32: UInt64 = zip64 ? 0xFFFF_FFFF : UInt64(item.data.count)
            out += le(0x0403_4b50, 4) + le(45, 2) + le(0, 2) + le(UInt64(item.method), 2) + le(0, 4)
            out += le(UInt64(crc), 4) + le(size32, 4) + le(size32, 4) + le(UInt64(name.count), 2) + le(UInt64(extra.count), 2)
            out += name + extra + item.data
            var cextra: [UInt8] = []
            if zip64 { cextra = le(1, 2) + le(24, 2) + le(UInt64(item.data.count), 8) + le(UInt64(item.data.count), 8) + le(UInt64(offset), 8) }
            central += le(0x0201_4b50, 4) + le(45, 2) + le(45, 2) + le(0, 2) + le(UInt64(item.method), 2) + le(0, 4)
            central += le(UInt64(crc), 4) + le(size32, 4) + le(size32, 4) + le(UInt64(name.count), 2) + le(UInt64(cextra.count), 2)
            central += le(0, 2) + le(0, 2) + le(0, 2) + le(0, 4) + le(zip64 ? 0xFFFF_FFFF : UInt64(offset), 4)
            central += name + cextra
        }
        let cdOffset = out.count
        out += central
        if zip64 {
            let recAt = out.count
            out += le(0x0606_4b50, 4) + le(44, 8) + le(45, 2) + le(45, 2) + le(0, 4) + le(0, 4)
            out += le(UInt64(items.count), 8) + le(UInt64(items.count), 8) + le(UInt64(central.count), 8) + le(UInt64(cdOffset), 8)
            out += le(0x0706_4b50, 4) + le(0, 4) + le(UInt64(recAt), 8) + le(1, 4)
            out += le(0x0605_4b50, 4) + le(0, 2) + le(0, 2) + le(0xFFFF, 2) + le(0xFFFF, 2)
            out += le(0xFFFF_FFFF, 4) + le(0xFFFF_FFFF, 4) + le(0, 2)
        } else {
            out += le(0x0605_4b50, 4) + le(0, 2) + le(0, 2) + le(UInt64(items.count), 2) + le(UInt64(items.count), 2)
            out += le(UInt64(central.count), 4) + le(UInt64(cdOffset), 4) + le(0, 2)
        }
        return out
    }
}

/// Little-endian f32 bytes.
func f32Bytes(_ xs: [Float]) -> [UInt8] { xs.flatMap { ZipWriter.le(UInt64($0.bitPattern), 4) } }

/// A checkpoint zip for `tensors` whose storage entries hold `storages[key]`.
func checkpointZip(folder: String = "archive", pickle: [UInt8], storages: [(String, [UInt8])],
                   zip64: Bool = false, align: Int = 64, extra: [ZipWriter.Item] = []) -> [UInt8] {
    var items = [ZipWriter.Item(name: folder + "/data.pkl", data: pickle)]
    for (k, b) in storages { items.append(.init(name: folder + "/data/" + k, data: b)) }
    items.append(.init(name: folder + "/version", data: Array("3\n".utf8)))
    items += extra
    return ZipWriter.archive(items, zip64: zip64, align: align)
}
