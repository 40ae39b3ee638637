import CVCKernels
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
    }

    init(mapped file: MappedFile, offset: Int, byteCount: Int) {
        self.base = file.base.advanced(by: offset)
        self.byteCount = byteCount
        self.owner = .mapped(file)
    }

    deinit {
        if case .heap = owner { free(base) }
    }

    public var isMapped: Bool { if case .mapped = owner { return true } else { return false } }

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
