// Format: Python's pickle protocols 0-5 as documented in CPython `Lib/pickletools.py` (opcode
// table and argument encodings) and `Lib/pickle.py` (`_Unpickler` semantics of MARK, memo,
// POP/POP_MARK, SETITEMS, BUILD). The restricted, non-executing design follows the description of
// leejet/stable-diffusion.cpp `src/model_io/pickle_io.cpp` @97d2990807 in
// ../shared/research/formats-lora-sdcpp.md §2.3. Own implementation.

/// A node of an unpickled value graph. Containers refer to other nodes by index into
/// `PickleGraph.nodes`, so shared references, mutation after memoization and even cycles are
/// represented faithfully, and no deep recursion happens when a graph is built or freed.
public enum PickleNode: Sendable, Equatable {
    case none
    case bool(Bool)
    case int(Int)
    /// An integer that does not fit in 64 bits (kept as its byte length only).
    case bigInt(byteCount: Int)
    case float(Double)
    case string(String)
    case bytes([UInt8])
    case tuple([Int])
    /// A list; items in `PickleGraph.lists[id]`.
    case list(id: Int)
    /// A dict (also `collections.OrderedDict()`); items in `PickleGraph.dicts[id]`, in order.
    case dict(id: Int)
    /// A set or frozenset; items in `PickleGraph.lists[id]`.
    case set(id: Int)
    /// A reference to a global (`module.name`). It is never resolved or imported.
    case global(module: String, name: String)
    /// The result of BINPERSID/PERSID: the node holding the persistent id.
    case persistent(Int)
    /// A call that was *not* made: REDUCE (callable, args), NEWOBJ (cls, args) or OBJ/INST;
    /// details in `PickleGraph.objects[id]`.
    case object(id: Int)
}

public struct PickleDictItem: Sendable, Equatable {
    public var key: Int
    public var value: Int
}

/// A call the unpickler recorded instead of making it.
public struct PickleObject: Sendable, Equatable {
    public enum Kind: String, Sendable { case reduce = "REDUCE", newobj = "NEWOBJ", inst = "INST/OBJ" }
    public var kind: Kind
    /// The callable or class node (usually a `.global`).
    public var callable: Int
    /// The argument tuple node.
    public var args: Int
    /// State given by BUILD, items given by SETITEM(S)/APPEND(S) (kept, never applied).
    public var state: Int?
    public var dictItems: [PickleDictItem] = []
    public var listItems: [Int] = []
}

/// Limits that keep a hostile pickle from exhausting memory or the stack.
public struct PickleLimits: Sendable {
    /// Maximum nesting of containers (a real state dict pickle nests about 6 deep).
    public var maxDepth = 100
    /// Maximum number of memo entries.
    public var maxMemo = 1 << 22
    /// Maximum items on the stack (all frames together) and in one container.
    public var maxItems = 1 << 24
    public init() {}
}

/// The value graph of one pickle, with the byte offset of the opcode that created each node.
public struct PickleGraph: Sendable {
    public internal(set) var nodes: [PickleNode] = []
    public internal(set) var offsets: [Int] = []
    public internal(set) var lists: [[Int]] = []
    public internal(set) var dicts: [[PickleDictItem]] = []
    public internal(set) var objects: [PickleObject] = []
    /// The protocol from PROTO (0 if absent).
    public internal(set) var proto = 0
    /// The value STOP returned.
    public internal(set) var root = 0

    public func string(_ i: Int) -> String? { if case .string(let s) = nodes[i] { return s }; return nil }
    public func int(_ i: Int) -> Int? {
        switch nodes[i] {
        case .int(let v): return v
        case .bool(let b): return b ? 1 : 0
        default: return nil
        }
    }
    public func tuple(_ i: Int) -> [Int]? { if case .tuple(let t) = nodes[i] { return t }; return nil }
    public func dictItems(_ i: Int) -> [PickleDictItem]? { if case .dict(let id) = nodes[i] { return dicts[id] }; return nil }
    public func global(_ i: Int) -> (module: String, name: String)? {
        if case .global(let m, let n) = nodes[i] { return (m, n) }
        return nil
    }
    public func object(_ i: Int) -> PickleObject? { if case .object(let id) = nodes[i] { return objects[id] }; return nil }

    /// A short description of a node for error messages (never recursive beyond one level).
    public func describe(_ i: Int) -> String {
        switch nodes[i] {
        case .none: return "None"
        case .bool(let b): return b ? "True" : "False"
        case .int(let v): return "\(v)"
        case .bigInt(let n): return "a \(n)-byte integer"
        case .float(let d): return "\(d)"
        case .string(let s): return "'\(s.count > 60 ? String(s.prefix(60)) + "..." : s)'"
        case .bytes(let b): return "\(b.count) bytes"
        case .tuple(let t): return "a \(t.count)-tuple"
        case .list(let id): return "a list of \(lists[id].count)"
        case .dict(let id): return "a dict of \(dicts[id].count)"
        case .set(let id): return "a set of \(lists[id].count)"
        case .global(let m, let n): return "\(m).\(n)"
        case .persistent: return "a persistent id"
        case .object(let id):
            let o = objects[id]
            if case .global(let m, let n) = nodes[o.callable] { return "the result of calling \(m).\(n)" }
            return "the result of a call (\(o.kind.rawValue))"
        }
    }
}

/// Errors of the unpickler carry the byte offset inside the pickle.
public struct PickleError: Error, Equatable, CustomStringConvertible {
    public var offset: Int
    public var message: String
    public var description: String { "pickle byte \(offset): \(message)" }
    public init(offset: Int, message: String) { self.offset = offset; self.message = message }
}

/// A pickle stack machine that builds a `PickleGraph` and never calls, imports or executes
/// anything: GLOBAL only records a name, REDUCE/NEWOBJ/OBJ only record the call. The only
/// interpretation is that `collections.OrderedDict()` (called with no arguments) yields an empty
/// dict, so that SETITEMS can fill it. Everything is bounds-checked; an unknown or unsupported
/// opcode, a truncated argument, a stack underflow, a memo miss or a broken limit throws with the
/// offset of the opcode.
public enum Unpickler {
    public static func load(_ data: [UInt8], limits: PickleLimits = PickleLimits()) throws(PickleError) -> PickleGraph {
        var m = Machine(data: data, limits: limits)
        return try m.run()
    }

    private struct Machine {
        let data: [UInt8]
        let limits: PickleLimits
        var g = PickleGraph()
        var depth: [Int] = []
        var stack: [Int] = []
        var marks: [Int] = []
        var memo: [Int: Int] = [:]
        var pos = 0
        var op = 0 // offset of the current opcode

        init(data: [UInt8], limits: PickleLimits) { self.data = data; self.limits = limits }

        func fail(_ m: String) -> PickleError { PickleError(offset: op, message: m) }

        // MARK: reading arguments

        mutating func take(_ n: Int, _ what: String) throws(PickleError) -> ArraySlice<UInt8> {
            guard n >= 0, n <= data.count - pos else {
                throw fail("truncated \(what): needs \(n) bytes, \(data.count - pos) left")
            }
            defer { pos += n }
            return data[pos..<(pos + n)]
        }

        mutating func uint(_ n: Int, _ what: String) throws(PickleError) -> UInt64 {
            let b = try take(n, what)
            var v: UInt64 = 0
            for (i, x) in b.enumerated() { v |= UInt64(x) << (8 * UInt64(i)) }
            return v
        }

        mutating func length(_ n: Int, _ what: String) throws(PickleError) -> Int {
            let v = try uint(n, what)
            guard v <= UInt64(data.count - pos) else {
                throw fail("\(what) declares \(v) bytes, but only \(data.count - pos) remain")
            }
            return Int(v)
        }

        mutating func line(_ what: String) throws(PickleError) -> String {
            guard let nl = data[pos...].firstIndex(of: 0x0A) else { throw fail("truncated \(what): no newline") }
            defer { pos = nl + 1 }
            return String(decoding: data[pos..<nl], as: UTF8.self)
        }

        // MARK: graph building

        mutating func add(_ n: PickleNode, children: [Int] = []) throws(PickleError) -> Int {
            var d = 0
            for c in children { d = max(d, depth[c] + 1) }
            guard d <= limits.maxDepth else { throw fail("nesting deeper than \(limits.maxDepth)") }
            guard children.count <= limits.maxItems else { throw fail("a container of \(children.count) items exceeds the limit of \(limits.maxItems)") }
            g.nodes.append(n)
            g.offsets.append(op)
            depth.append(d)
            return g.nodes.count - 1
        }

        mutating func grow(_ container: Int, with children: [Int], size: Int) throws(PickleError) {
            var d = depth[container]
            for c in children { d = max(d, depth[c] + 1) }
            guard d <= limits.maxDepth else { throw fail("nesting deeper than \(limits.maxDepth)") }
            guard size <= limits.maxItems else { throw fail("a container of \(size) items exceeds the limit of \(limits.maxItems)") }
            depth[container] = d
        }

        mutating func push(_ i: Int) throws(PickleError) {
            guard stack.count < limits.maxItems else { throw fail("stack exceeds \(limits.maxItems) items") }
            stack.append(i)
        }

        mutating func push(_ n: PickleNode, children: [Int] = []) throws(PickleError) {
            try push(try add(n, children: children))
        }

        var frameBase: Int { marks.last ?? 0 }

        mutating func pop(_ name: String) throws(PickleError) -> Int {
            guard stack.count > frameBase else { throw fail("\(name): stack underflow") }
            return stack.removeLast()
        }

        mutating func top(_ name: String) throws(PickleError) -> Int {
            guard stack.count > frameBase else { throw fail("\(name): stack underflow") }
            return stack[stack.count - 1]
        }

        mutating func popMark(_ name: String) throws(PickleError) -> [Int] {
            guard let m = marks.popLast() else { throw fail("\(name): no MARK on the stack") }
            let items = Array(stack[m...])
            stack.removeSubrange(m...)
            return items
        }

        mutating func memoPut(_ index: Int) throws(PickleError) {
            let v = try top("PUT")
            guard index >= 0 else { throw fail("negative memo index \(index)") }
            if memo[index] == nil, memo.count >= limits.maxMemo { throw fail("memo exceeds \(limits.maxMemo) entries") }
            memo[index] = v
        }

        mutating func memoGet(_ index: Int) throws(PickleError) {
            guard let v = memo[index] else { throw fail("memo has no entry \(index)") }
            try push(v)
        }

        mutating func appendItems(_ target: Int, _ items: [Int], _ name: String) throws(PickleError) {
            switch g.nodes[target] {
            case .list(let id):
                try grow(target, with: items, size: g.lists[id].count + items.count)
                g.lists[id].append(contentsOf: items)
            case .object(let id):
                try grow(target, with: items, size: g.objects[id].listItems.count + items.count)
                g.objects[id].listItems.append(contentsOf: items)
            default:
                throw fail("\(name) on \(g.describe(target)), not a list")
            }
        }

        mutating func setItems(_ target: Int, _ kv: [Int], _ name: String) throws(PickleError) {
            guard kv.count % 2 == 0 else { throw fail("\(name) with an odd number of items (\(kv.count))") }
            var items: [PickleDictItem] = []
            items.reserveCapacity(kv.count / 2)
            var i = 0
            while i < kv.count { items.append(PickleDictItem(key: kv[i], value: kv[i + 1])); i += 2 }
            switch g.nodes[target] {
            case .dict(let id):
                try grow(target, with: kv, size: g.dicts[id].count + items.count)
                g.dicts[id].append(contentsOf: items)
            case .object(let id):
                try grow(target, with: kv, size: g.objects[id].dictItems.count + items.count)
                g.objects[id].dictItems.append(contentsOf: items)
            default:
                throw fail("\(name) on \(g.describe(target)), not a dict")
            }
        }

        mutating func newList(_ items: [Int], set: Bool = false) throws(PickleError) {
            g.lists.append(items)
            try push(set ? .set(id: g.lists.count - 1) : .list(id: g.lists.count - 1), children: items)
        }

        mutating func newDict(_ items: [PickleDictItem]) throws(PickleError) -> Int {
            g.dicts.append(items)
            return try add(.dict(id: g.dicts.count - 1), children: items.flatMap { [$0.key, $0.value] })
        }

        mutating func call(_ kind: PickleObject.Kind, _ callable: Int, _ args: Int) throws(PickleError) {
            if kind == .reduce, case .global("collections", "OrderedDict") = g.nodes[callable], g.tuple(args) == [] {
                try push(try newDict([]))
                return
            }
            g.objects.append(PickleObject(kind: kind, callable: callable, args: args))
            try push(.object(id: g.objects.count - 1), children: [callable, args])
        }

        func signedLE(_ b: ArraySlice<UInt8>) -> PickleNode {
            let bytes = Array(b)
            guard let last = bytes.last else { return .int(0) }
            let negative = last & 0x80 != 0
            let ext: UInt8 = negative ? 0xFF : 0x00
            if bytes.count > 8 {
                // Fits in 64 bits only if the extra bytes are pure sign extension.
                guard bytes[8...].allSatisfy({ $0 == ext }), (bytes[7] & 0x80 != 0) == negative else {
                    return .bigInt(byteCount: bytes.count)
                }
            }
            var v: UInt64 = negative ? ~0 : 0
            for i in 0..<min(8, bytes.count) {
                v &= ~(UInt64(0xFF) << (8 * UInt64(i)))
                v |= UInt64(bytes[i]) << (8 * UInt64(i))
            }
            return .int(Int(Int64(bitPattern: v)))
        }

        func textInt(_ s: String, _ what: String) throws(PickleError) -> PickleNode {
            var t = s
            if t.hasSuffix("L") { t.removeLast() }
            if let v = Int(t) { return .int(v) }
            let digits = t.hasPrefix("-") || t.hasPrefix("+") ? t.dropFirst() : Substring(t)
            guard !digits.isEmpty, digits.utf8.allSatisfy({ $0 >= 0x30 && $0 <= 0x39 }) else {
                throw fail("\(what): invalid integer literal '\(s)'")
            }
            return .bigInt(byteCount: digits.count / 2 + 1)
        }

        // MARK: the loop

        mutating func run() throws(PickleError) -> PickleGraph {
            while true {
                op = pos
                guard pos < data.count else { throw fail("truncated pickle: no STOP opcode") }
                let code = data[pos]
                pos += 1
                switch code {
                case 0x80: // PROTO
                    let v = Int(try uint(1, "PROTO"))
                    guard v <= 5 else { throw fail("unsupported pickle protocol \(v) (0 to 5 are known)") }
                    g.proto = v
                case 0x95: // FRAME: the frame length only helps buffering
                    _ = try length(8, "FRAME")
                case 0x2E: // STOP
                    g.root = try pop("STOP")
                    return g
                case 0x28: // MARK
                    guard marks.count < limits.maxItems else { throw fail("too many marks") }
                    marks.append(stack.count)
                case 0x30: // POP
                    if stack.count > frameBase { stack.removeLast() } else { _ = try popMark("POP") }
                case 0x31: _ = try popMark("POP_MARK")
                case 0x32: try push(try top("DUP"))
                case 0x71: try memoPut(Int(try uint(1, "BINPUT")))
                case 0x72: try memoPut(Int(try uint(4, "LONG_BINPUT")))
                case 0x94: try memoPut(memo.count) // MEMOIZE
                case 0x70: // PUT
                    let s = try line("PUT")
                    guard let i = Int(s) else { throw fail("PUT: invalid index '\(s)'") }
                    try memoPut(i)
                case 0x68: try memoGet(Int(try uint(1, "BINGET")))
                case 0x6A: try memoGet(Int(try uint(4, "LONG_BINGET")))
                case 0x67: // GET
                    let s = try line("GET")
                    guard let i = Int(s) else { throw fail("GET: invalid index '\(s)'") }
                    try memoGet(i)
                case 0x4E: try push(.none)
                case 0x88: try push(.bool(true))
                case 0x89: try push(.bool(false))
                case 0x4B: try push(.int(Int(try uint(1, "BININT1"))))
                case 0x4D: try push(.int(Int(try uint(2, "BININT2"))))
                case 0x4A: try push(.int(Int(Int32(bitPattern: UInt32(try uint(4, "BININT"))))))
                case 0x8A: // LONG1
                    let n = Int(try uint(1, "LONG1"))
                    try push(signedLE(try take(n, "LONG1")))
                case 0x8B: // LONG4
                    let n = Int(Int32(bitPattern: UInt32(try uint(4, "LONG4"))))
                    guard n >= 0 else { throw fail("LONG4 with negative length \(n)") }
                    try push(signedLE(try take(n, "LONG4")))
                case 0x49: // INT (protocol 0; "01"/"00" are True/False)
                    let s = try line("INT")
                    if s == "01" { try push(.bool(true)) } else if s == "00" { try push(.bool(false)) } else { try push(try textInt(s, "INT")) }
                case 0x4C: try push(try textInt(try line("LONG"), "LONG"))
                case 0x47: // BINFLOAT, big-endian
                    let b = try take(8, "BINFLOAT")
                    var v: UInt64 = 0
                    for x in b { v = v << 8 | UInt64(x) }
                    try push(.float(Double(bitPattern: v)))
                case 0x46: // FLOAT
                    let s = try line("FLOAT")
                    guard let d = Double(s) else { throw fail("FLOAT: invalid literal '\(s)'") }
                    try push(.float(d))
                case 0x58: try push(.string(String(decoding: try take(try length(4, "BINUNICODE"), "BINUNICODE"), as: UTF8.self)))
                case 0x8C: try push(.string(String(decoding: try take(try length(1, "SHORT_BINUNICODE"), "SHORT_BINUNICODE"), as: UTF8.self)))
                case 0x8D: try push(.string(String(decoding: try take(try length(8, "BINUNICODE8"), "BINUNICODE8"), as: UTF8.self)))
                case 0x54: // BINSTRING (signed length); Python 2 str, decoded as UTF-8 like torch.load
                    let n = Int(Int32(bitPattern: UInt32(try uint(4, "BINSTRING"))))
                    guard n >= 0 else { throw fail("BINSTRING with negative length \(n)") }
                    try push(.string(String(decoding: try take(n, "BINSTRING"), as: UTF8.self)))
                case 0x55: try push(.string(String(decoding: try take(try length(1, "SHORT_BINSTRING"), "SHORT_BINSTRING"), as: UTF8.self)))
                case 0x42: try push(.bytes(Array(try take(try length(4, "BINBYTES"), "BINBYTES"))))
                case 0x43: try push(.bytes(Array(try take(try length(1, "SHORT_BINBYTES"), "SHORT_BINBYTES"))))
                case 0x8E: try push(.bytes(Array(try take(try length(8, "BINBYTES8"), "BINBYTES8"))))
                case 0x96: try push(.bytes(Array(try take(try length(8, "BYTEARRAY8"), "BYTEARRAY8"))))
                case 0x29: try push(.tuple([]))
                case 0x74: let items = try popMark("TUPLE"); try push(.tuple(items), children: items)
                case 0x85:
                    let a = try pop("TUPLE1"); try push(.tuple([a]), children: [a])
                case 0x86:
                    let b = try pop("TUPLE2"), a = try pop("TUPLE2"); try push(.tuple([a, b]), children: [a, b])
                case 0x87:
                    let c = try pop("TUPLE3"), b = try pop("TUPLE3"), a = try pop("TUPLE3")
                    try push(.tuple([a, b, c]), children: [a, b, c])
                case 0x5D: try newList([])
                case 0x6C: try newList(try popMark("LIST"))
                case 0x61: // APPEND
                    let v = try pop("APPEND")
                    try appendItems(try top("APPEND"), [v], "APPEND")
                case 0x65: // APPENDS
                    let items = try popMark("APPENDS")
                    try appendItems(try top("APPENDS"), items, "APPENDS")
                case 0x7D: try push(try newDict([]))
                case 0x64: // DICT
                    let kv = try popMark("DICT")
                    let d = try newDict([])
                    try push(d)
                    try setItems(d, kv, "DICT")
                case 0x73: // SETITEM
                    let v = try pop("SETITEM"), k = try pop("SETITEM")
                    try setItems(try top("SETITEM"), [k, v], "SETITEM")
                case 0x75: // SETITEMS
                    let kv = try popMark("SETITEMS")
                    try setItems(try top("SETITEMS"), kv, "SETITEMS")
                case 0x8F: try newList([], set: true)
                case 0x90: // ADDITEMS
                    let items = try popMark("ADDITEMS")
                    let s = try top("ADDITEMS")
                    guard case .set(let id) = g.nodes[s] else { throw fail("ADDITEMS on \(g.describe(s)), not a set") }
                    try grow(s, with: items, size: g.lists[id].count + items.count)
                    g.lists[id].append(contentsOf: items)
                case 0x91: try newList(try popMark("FROZENSET"), set: true)
                case 0x63: // GLOBAL
                    let module = try line("GLOBAL"), name = try line("GLOBAL")
                    try push(.global(module: module, name: name))
                case 0x93: // STACK_GLOBAL
                    let n = try pop("STACK_GLOBAL"), m = try pop("STACK_GLOBAL")
                    guard let name = g.string(n), let module = g.string(m) else {
                        throw fail("STACK_GLOBAL needs two strings, got \(g.describe(m)) and \(g.describe(n))")
                    }
                    try push(.global(module: module, name: name))
                case 0x52: // REDUCE
                    let args = try pop("REDUCE"), f = try pop("REDUCE")
                    guard g.tuple(args) != nil else { throw fail("REDUCE arguments are \(g.describe(args)), not a tuple") }
                    try call(.reduce, f, args)
                case 0x81: // NEWOBJ
                    let args = try pop("NEWOBJ"), cls = try pop("NEWOBJ")
                    guard g.tuple(args) != nil else { throw fail("NEWOBJ arguments are \(g.describe(args)), not a tuple") }
                    try call(.newobj, cls, args)
                case 0x92: // NEWOBJ_EX (cls, args, kwargs): kwargs are kept as part of the args
                    let kw = try pop("NEWOBJ_EX"), args = try pop("NEWOBJ_EX"), cls = try pop("NEWOBJ_EX")
                    guard let a = g.tuple(args) else { throw fail("NEWOBJ_EX arguments are \(g.describe(args)), not a tuple") }
                    let packed = try add(.tuple(a + [kw]), children: a + [kw])
                    try call(.newobj, cls, packed)
                case 0x6F: // OBJ: MARK cls args... OBJ
                    let items = try popMark("OBJ")
                    guard let cls = items.first else { throw fail("OBJ without a class") }
                    let args = Array(items.dropFirst())
                    try call(.inst, cls, try add(.tuple(args), children: args))
                case 0x69: // INST: module, name lines; MARK args... INST
                    let module = try line("INST"), name = try line("INST")
                    let args = try popMark("INST")
                    let cls = try add(.global(module: module, name: name))
                    try call(.inst, cls, try add(.tuple(args), children: args))
                case 0x62: // BUILD: record the state, never apply it
                    let state = try pop("BUILD")
                    let target = try top("BUILD")
                    if case .object(let id) = g.nodes[target] {
                        try grow(target, with: [state], size: 1)
                        g.objects[id].state = state
                    }
                case 0x51: // BINPERSID
                    let pid = try pop("BINPERSID")
                    try push(.persistent(pid), children: [pid])
                case 0x50: // PERSID
                    let s = try add(.string(try line("PERSID")))
                    try push(.persistent(s), children: [s])
                case 0x82, 0x83, 0x84:
                    throw fail("extension-registry opcode 0x\(String(code, radix: 16)) is not supported")
                case 0x97, 0x98:
                    throw fail("out-of-band buffer opcode 0x\(String(code, radix: 16)) is not supported")
                default:
                    throw fail("unknown or unsupported opcode 0x\(String(code, radix: 16, uppercase: true))")
                }
            }
        }
    }
}
