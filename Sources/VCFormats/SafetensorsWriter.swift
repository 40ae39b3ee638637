import Foundation
import VCTensor

/// Streams a .safetensors file: the header (all names, dtypes and shapes, and `__metadata__`) is
/// written first, then each tensor's bytes in the given order, in bounded chunks, so a
/// multi-gigabyte file is written with memory for one chunk. The file goes to a temporary file in
/// the destination folder and is fsynced and renamed by `finish()`; a writer that is dropped
/// without `finish()` removes its temporary file.
///
/// Tensors are packed back to back in the order given (no alignment padding: the format forbids
/// gaps); the header is padded with spaces to a multiple of 8 bytes, as the reference writer does.
///
///     let w = try SafetensorsWriter(path: out, layout: [.init(name: "a", dtype: .f32, shape: [2])],
///                                   metadata: ["format": "pt"])
///     try w.write("a", tensorA)
///     try w.finish()
public final class SafetensorsWriter {
    public struct Item: Sendable, Equatable {
        public var name: String
        public var dtype: FileDType
        public var shape: [Int]
        public init(name: String, dtype: FileDType, shape: [Int]) {
            self.name = name; self.dtype = dtype; self.shape = shape
        }
    }

    public let path: String
    public let layout: [Item]
    private let sizes: [Int]
    private var next = 0
    private let out: OutputFile
    private static let chunk = 8 << 20

    public init(path: String, layout: [Item], metadata: [String: String] = [:]) throws {
        self.path = path
        self.layout = layout
        var seen = Set<String>()
        var sizes: [Int] = []
        var position = 0
        var json = "{"
        var empty = true
        if !metadata.isEmpty {
            empty = false
            json += "\"__metadata__\":{"
            json += metadata.keys.sorted().map { "\(StrictJSON.quote($0)):\(StrictJSON.quote(metadata[$0] ?? ""))" }.joined(separator: ",")
            json += "}"
        }
        for item in layout {
            guard item.name != "__metadata__" else { throw FormatError.model(path: path, "a tensor cannot be named __metadata__") }
            guard seen.insert(item.name).inserted else { throw FormatError.model(path: path, "tensor '\(item.name)' is listed twice") }
            guard item.dtype.isSafetensorsType else { throw FormatError.unsupported(path: path, "tensor '\(item.name)': safetensors has no dtype \(item.dtype.rawValue)") }
            var numel = 1
            for d in item.shape {
                guard d >= 0 else { throw FormatError.model(path: path, "tensor '\(item.name)': negative dimension in \(item.shape)") }
                let (p, o) = numel.multipliedReportingOverflow(by: d)
                guard !o else { throw FormatError.model(path: path, "tensor '\(item.name)': shape \(item.shape) overflows") }
                numel = p
            }
            guard let bytes = item.dtype.byteCount(elements: numel) else {
                throw FormatError.model(path: path, "tensor '\(item.name)': \(item.shape) of \(item.dtype.rawValue) is not a whole number of bytes")
            }
            let (end, o) = position.addingReportingOverflow(bytes)
            guard !o else { throw FormatError.model(path: path, "tensor '\(item.name)': data offsets overflow") }
            if !empty { json += "," }
            empty = false
            json += "\(StrictJSON.quote(item.name)):{\"dtype\":\"\(item.dtype.rawValue)\",\"shape\":[\(item.shape.map(String.init).joined(separator: ","))],\"data_offsets\":[\(position),\(end)]}"
            sizes.append(bytes)
            position = end
        }
        json += "}"
        var header = Array(json.utf8)
        while header.count % 8 != 0 { header.append(0x20) }
        guard header.count <= SafetensorsFile.maxHeaderSize else {
            throw FormatError.unsupported(path: path, "the header would be \(header.count) bytes, over the 100,000,000-byte limit")
        }
        self.sizes = sizes
        self.out = try OutputFile(path: path)
        var lengthBytes = [UInt8](repeating: 0, count: 8)
        for i in 0..<8 { lengthBytes[i] = UInt8(truncatingIfNeeded: UInt64(header.count) >> (8 * UInt64(i))) }
        try out.write(lengthBytes + header)
    }

    /// Writes the next tensor, which must be `layout[next]` with the same dtype and shape.
    public func write(_ name: String, _ tensor: Tensor) throws {
        guard next < layout.count else { throw FormatError.model(path: path, "tensor '\(name)' is not in the layout (all \(layout.count) written)") }
        let item = layout[next]
        guard item.name == name else { throw FormatError.model(path: path, "expected tensor '\(item.name)' next, got '\(name)'") }
        guard FileDType(tensor.dtype) == item.dtype, tensor.shape == item.shape else {
            throw FormatError.model(path: path, "tensor '\(name)': layout says \(item.dtype.rawValue) \(item.shape), got \(tensor.dtype.rawValue) \(tensor.shape)")
        }
        try writeBytes(name, storage: tensor.storage, offset: tensor.byteOffset, count: tensor.byteCount)
    }

    /// Writes the next tensor from raw stored bytes (any dtype, e.g. copied from another file).
    public func write(_ name: String, rawBytes storage: Storage) throws {
        guard next < layout.count, layout[next].name == name else {
            throw FormatError.model(path: path, "expected tensor '\(next < layout.count ? layout[next].name : "(none)")' next, got '\(name)'")
        }
        try writeBytes(name, storage: storage, offset: 0, count: storage.byteCount)
    }

    private func writeBytes(_ name: String, storage: Storage, offset: Int, count: Int) throws {
        guard count == sizes[next] else {
            throw FormatError.model(path: path, "tensor '\(name)': \(count) bytes, the layout needs \(sizes[next])")
        }
        var done = 0
        while done < count {
            let n = min(SafetensorsWriter.chunk, count - done)
            try out.write(storage.bytes((offset + done)..<(offset + done + n)))
            done += n
        }
        next += 1
    }

    /// Checks every tensor was written, then fsyncs and renames the file into place.
    public func finish() throws {
        guard next == layout.count else {
            out.discard()
            throw FormatError.model(path: path, "only \(next) of \(layout.count) tensors were written (next: '\(layout[next].name)')")
        }
        try out.commit()
    }

    /// Writes `tensors` in order with `metadata`.
    public static func write(path: String, tensors: [(name: String, tensor: Tensor)], metadata: [String: String] = [:]) throws {
        var layout: [Item] = []
        for (name, t) in tensors {
            guard let d = FileDType(t.dtype) else {
                throw FormatError.unsupported(path: path, "tensor '\(name)' is \(t.dtype.rawValue), which safetensors cannot hold")
            }
            layout.append(Item(name: name, dtype: d, shape: t.shape))
        }
        let w = try SafetensorsWriter(path: path, layout: layout, metadata: metadata)
        for (name, t) in tensors { try w.write(name, t) }
        try w.finish()
    }
}
