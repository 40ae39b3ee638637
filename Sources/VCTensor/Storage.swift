import CVCKernels
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// A contiguous block of bytes: either owned (64-byte aligned heap memory) or a window into a
/// read-only memory-mapped file. Immutable after creation except through the explicitly mutable
/// owned buffers that ops write while producing a new tensor; that is why it is
/// `@unchecked Sendable`: no tensor is written after it has been handed to another thread.
public final class Storage: @unchecked Sendable {
    let base: UnsafeMutableRawPointer
    public let byteCount: Int
    private let owner: Owner

    enum Owner {
        case heap
        /// A large anonymous mapping of `size` bytes, returned to the buffer cache when freed.
        case pooled(Int)
        case mapped(MappedFile)
    }

    /// Owned, zero-filled storage.
    public convenience init(byteCount: Int) {
        self.init(byteCount: byteCount, zeroed: true)
    }

    /// Owned storage whose bytes are left as the allocator returns them (for outputs that an op
    /// overwrites completely; saves a pass over memory).
    public convenience init(uninitializedByteCount byteCount: Int) {
        self.init(byteCount: byteCount, zeroed: false)
    }

    private init(byteCount: Int, zeroed: Bool) {
        let n = max(byteCount, 1)
        if n >= BufferCache.minimumBytes {
            let size = BufferCache.roundedSize(n)
            let (p, fresh) = BufferCache.take(size)
            if zeroed && !fresh { memset(p, 0, n) }   // fresh anonymous pages are already zero
            self.base = p
            self.byteCount = byteCount
            self.owner = .pooled(size)
            Storage.track(size)
            return
        }
        var p: UnsafeMutableRawPointer? = nil
        let rounded = (n + 63) & ~63
        if posix_memalign(&p, 64, rounded) != 0 || p == nil {
            // A bounded request failed: the machine is out of memory; nothing sensible remains.
            preconditionFailure("out of memory allocating \(n) bytes")
        }
        if zeroed { memset(p!, 0, rounded) }
        self.base = p!
        self.byteCount = byteCount
        self.owner = .heap
        Storage.track(rounded)
    }

    // Bytes of owned (heap) storage alive now and the high-water mark since the last reset: the
    // tensor part of a model's memory, without weights mapped from files, scratch of the kernels
    // or allocator caching.
    private static let live = Atomic<Int>(0)
    private static let peak = Atomic<Int>(0)

    private static func track(_ delta: Int) {
        let now = live.add(delta, ordering: .relaxed).newValue
        if delta > 0 {
            var p = peak.load(ordering: .relaxed)
            while now > p {
                let (exchanged, original) = peak.compareExchange(expected: p, desired: now, ordering: .relaxed)
                if exchanged { break }
                p = original
            }
        }
    }

    /// Bytes of heap storage alive now.
    public static var liveHeapBytes: Int { live.load(ordering: .relaxed) }
    /// The most heap storage alive at once since the last `resetPeakHeapBytes()`.
    public static var peakHeapBytes: Int { peak.load(ordering: .relaxed) }
    /// Starts a new high-water mark at the current live bytes.
    public static func resetPeakHeapBytes() { peak.store(live.load(ordering: .relaxed), ordering: .relaxed) }

    init(mapped file: MappedFile, offset: Int, byteCount: Int) {
        self.base = file.base.advanced(by: offset)
        self.byteCount = byteCount
        self.owner = .mapped(file)
    }

    deinit {
        switch owner {
        case .heap:
            free(base)
            Storage.track(-((max(byteCount, 1) + 63) & ~63))
        case let .pooled(size):
            BufferCache.give(base, size)
            Storage.track(-size)
        case .mapped:
            break
        }
    }

    public var isMapped: Bool { if case .mapped = owner { return true } else { return false } }

    /// Most bytes of freed large buffers kept for reuse (see `BufferCache`); 0 returns every
    /// freed buffer to the system at once. Default 128 MiB.
    public static func setBufferCacheLimit(_ bytes: Int) { BufferCache.setLimit(bytes) }
    /// The current limit of `setBufferCacheLimit`.
    public static var bufferCacheLimit: Int { BufferCache.limit }
    /// Runs `body` with the buffer cache limit at `bytes`, then restores the previous limit
    /// (freeing what no longer fits). The limit is process-wide: meant for a pipeline stage that
    /// owns the process's heavy work while it runs.
    public static func withBufferCacheLimit<T>(_ bytes: Int, _ body: () throws -> T) rethrows -> T {
        let before = bufferCacheLimit
        setBufferCacheLimit(bytes)
        defer { setBufferCacheLimit(before) }
        return try body()
    }
    /// Bytes of freed large buffers currently kept for reuse.
    public static var bufferCacheBytes: Int { BufferCache.cachedBytes }
    /// Returns every cached buffer to the system (e.g. after loading, whose temporaries have other
    /// sizes than the activations); the limit stays.
    public static func trimBufferCache() { BufferCache.trim() }

    /// A copy of the bytes in `range` (bounds-checked).
    public func bytes(_ range: Range<Int>) throws -> [UInt8] {
        guard range.lowerBound >= 0, range.upperBound <= byteCount else {
            throw TensorError.outOfBounds("bytes \(range) of a \(byteCount)-byte buffer")
        }
        return Array(UnsafeRawBufferPointer(start: base.advanced(by: range.lowerBound), count: range.count))
    }

    /// CRC-32C of bytes in `range`.
    public func crc32c(_ range: Range<Int>) -> UInt32 {
        precondition(range.lowerBound >= 0 && range.upperBound <= byteCount)
        return vck_crc32c(0, base.advanced(by: range.lowerBound), range.count)
    }
}

/// The activation arena: large owned buffers (>= 1 MiB) are anonymous mappings (transparent huge
/// pages requested from 4 MiB on, so a 100 MB activation costs ~50 page faults instead of
/// 25,000, and strided temporal access misses the TLB less). A freed one is kept, up to a total
/// limit, and handed out again for a request of the same rounded size: a UNet call allocates the
/// same shapes at every step, so in steady state the faults and the zeroing of fresh pages are
/// avoided. Beyond the limit, buffers go back to the system at once (RSS stays bounded).
enum BufferCache {
    static let minimumBytes = 1 << 20
    private static let hugeMinimum = 4 << 20
    private static let hugePage = 2 << 20

    private struct State {
        var free: [Int: [UInt]] = [:]   // rounded size -> addresses
        var cached = 0
        // 128 MiB: at VC2's shapes (q8, batch 2) a 512 MiB cache raised the peak RSS of a UNet
        // call by 431 MiB for a 1.6 % gain in time (docs/performance.md).
        var limit = 128 << 20
    }
    private static let state = Mutex(State())

    static func roundedSize(_ n: Int) -> Int {
        n >= hugeMinimum ? (n + hugePage - 1) & ~(hugePage - 1) : (n + 65535) & ~65535
    }

    /// A buffer of `size` bytes, and whether it is freshly mapped (zero-filled).
    static func take(_ size: Int) -> (UnsafeMutableRawPointer, Bool) {
        let cached: UInt? = state.withLock { s in
            guard var list = s.free[size], let a = list.popLast() else { return nil }
            s.free[size] = list.isEmpty ? nil : list
            s.cached -= size
            return a
        }
        if let a = cached, let p = UnsafeMutableRawPointer(bitPattern: a) { return (p, false) }
        guard let p = mmap(nil, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0), p != MAP_FAILED else {
            // A bounded request failed: the machine is out of memory; nothing sensible remains.
            preconditionFailure("out of memory mapping \(size) bytes")
        }
        if size >= hugeMinimum { _ = madvise(p, size, MADV_HUGEPAGE) }
        return (p, true)
    }

    static func give(_ p: UnsafeMutableRawPointer, _ size: Int) {
        let kept = state.withLock { s -> Bool in
            guard s.cached + size <= s.limit else { return false }
            s.free[size, default: []].append(UInt(bitPattern: p))
            s.cached += size
            return true
        }
        if !kept { munmap(p, size) }
    }

    static func setLimit(_ bytes: Int) {
        var release: [(UInt, Int)] = []
        state.withLock { s in
            s.limit = max(0, bytes)
            // Drop the largest buffers first until the cache fits.
            for size in s.free.keys.sorted(by: >) where s.cached > s.limit {
                while s.cached > s.limit, var list = s.free[size], let a = list.popLast() {
                    s.free[size] = list.isEmpty ? nil : list
                    s.cached -= size
                    release.append((a, size))
                }
            }
        }
        for (a, size) in release { if let p = UnsafeMutableRawPointer(bitPattern: a) { munmap(p, size) } }
    }

    static var cachedBytes: Int { state.withLock { $0.cached } }
    static var limit: Int { state.withLock { $0.limit } }

    static func trim() {
        let limit = state.withLock { $0.limit }
        setLimit(0)
        setLimit(limit)
    }
}

/// A read-only memory mapping of a whole file. Files are never read into memory as a whole.
public final class MappedFile: @unchecked Sendable {
    public let path: String
    public let size: Int
    let base: UnsafeMutableRawPointer

    public init(path: String) throws {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw TensorError.io(path: path, message: "cannot open: \(String(cString: strerror(errno)))") }
        defer { close(fd) }
        var st = stat()
        guard fstat(fd, &st) == 0 else { throw TensorError.io(path: path, message: "cannot stat: \(String(cString: strerror(errno)))") }
        guard (st.st_mode & S_IFMT) == S_IFREG else { throw TensorError.io(path: path, message: "not a regular file") }
        let size = Int(st.st_size)
        self.path = path
        self.size = size
        if size == 0 {
            // mmap of length 0 fails; an empty file is represented by a 1-byte heap block.
            self.base = UnsafeMutableRawPointer.allocate(byteCount: 1, alignment: 64)
            self.isEmptyPlaceholder = true
            return
        }
        guard let p = mmap(nil, size, PROT_READ, MAP_PRIVATE, fd, 0), p != MAP_FAILED else {
            throw TensorError.io(path: path, message: "cannot mmap \(size) bytes: \(String(cString: strerror(errno)))")
        }
        self.base = p
        self.isEmptyPlaceholder = false
    }

    /// An in-memory "mapping": a heap copy of `bytes`, named `path` in messages. The readers'
    /// in-memory entry points (fuzzing, data received over a pipe) use it; nothing is mapped.
    public init(bytes: [UInt8], path: String) {
        self.path = path
        self.size = bytes.count
        let p = UnsafeMutableRawPointer.allocate(byteCount: max(bytes.count, 1), alignment: 64)
        bytes.withUnsafeBytes { b in
            if let src = b.baseAddress, b.count > 0 { p.copyMemory(from: src, byteCount: b.count) }
        }
        self.base = p
        self.isEmptyPlaceholder = true
    }

    /// True when `base` is heap memory (an empty file, or `init(bytes:path:)`), not a mapping.
    private let isEmptyPlaceholder: Bool

    deinit {
        if isEmptyPlaceholder { base.deallocate() } else { munmap(base, size) }
    }

    /// A storage window [offset, offset + count) of the mapping (bounds-checked).
    public func storage(offset: Int, count: Int) throws -> Storage {
        guard offset >= 0, count >= 0, offset <= size, count <= size - offset else {
            throw TensorError.outOfBounds("\(path): bytes [\(offset), \(offset &+ count)) of a \(size)-byte file")
        }
        return Storage(mapped: self, offset: offset, byteCount: count)
    }

    /// A copy of bytes [offset, offset + count) (bounds-checked).
    public func bytes(offset: Int, count: Int) throws -> [UInt8] {
        guard offset >= 0, count >= 0, offset <= size, count <= size - offset else {
            throw TensorError.outOfBounds("\(path): bytes [\(offset), \(offset &+ count)) of a \(size)-byte file")
        }
        return Array(UnsafeRawBufferPointer(start: base.advanced(by: offset), count: count))
    }

    /// Little-endian unsigned integer of `width` bytes at `offset` (bounds-checked).
    public func readLE(offset: Int, width: Int) throws -> UInt64 {
        let b = try bytes(offset: offset, count: width)
        var v: UInt64 = 0
        for (i, x) in b.enumerated() { v |= UInt64(x) << (8 * UInt64(i)) }
        return v
    }

    /// CRC-32C of bytes [offset, offset + count).
    public func crc32c(offset: Int, count: Int) throws -> UInt32 {
        guard offset >= 0, count >= 0, offset <= size, count <= size - offset else {
            throw TensorError.outOfBounds("\(path): bytes [\(offset), \(offset &+ count)) of a \(size)-byte file")
        }
        return vck_crc32c(0, base.advanced(by: offset), count)
    }

    /// Advises the kernel that bytes [offset, offset+count) will not be needed soon (keeps the
    /// page cache from pinning a converted 7 GB checkpoint in RSS during streaming import).
    public func dontNeed(offset: Int, count: Int) {
        guard !isEmptyPlaceholder, count > 0, offset >= 0, offset < size else { return }
        let page = 4096
        let start = offset / page * page
        let end = count >= size - offset ? size : offset + count
        if end > start { madvise(base.advanced(by: start), end - start, MADV_DONTNEED) }
    }
}
