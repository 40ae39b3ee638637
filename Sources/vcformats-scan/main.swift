// DEV ONLY (not a product, not shipped): opens a weights file with the VCFormats readers and
// reads every tensor once, computing CRC-32C, to measure open time, read throughput and peak
// memory on large files (run it under `/usr/bin/time -v`). See scripts/dev/README.md.
//
//   vcformats-scan PATH [--keep-pages] [--verify-zip-crc] [--export-safetensors OUT]
//
// --keep-pages      do not release each tensor's mapped pages after reading it
// --verify-zip-crc  (PyTorch zips) also check every entry against its zip CRC-32
// --export-safetensors OUT  then stream all tensors (file order) into OUT with SafetensorsWriter
// --vcm-verify-cost  (.vcm) time reading every tensor with and without the CRC-32C verification
import Foundation
import VCFormats
import VCTensor

func now() -> Double { Date().timeIntervalSince1970 }

var args = Array(CommandLine.arguments.dropFirst())
let keepPages = args.contains("--keep-pages")
let verifyZip = args.contains("--verify-zip-crc")
let vcmVerifyCost = args.contains("--vcm-verify-cost")
var exportPath: String? = nil
if let i = args.firstIndex(of: "--export-safetensors"), i + 1 < args.count {
    exportPath = args[i + 1]
    args.removeSubrange(i...(i + 1))
}
args.removeAll { $0.hasPrefix("--") }
guard let path = args.first else {
    FileHandle.standardError.write(Data("usage: vcformats-scan PATH [--keep-pages] [--verify-zip-crc]\n".utf8))
    exit(2)
}

if vcmVerifyCost {
    // The cost of the per-tensor CRC-32C check of a .vcm: read every tensor with and without
    // verification, alternating, three times each (pages stay cached after the first pass).
    do {
        var times: [Bool: [Double]] = [true: [], false: []]
        var bytes = 0
        for round in 0..<4 {
            for verify in [false, true] {
                let f = try VCMFile(path: path, verify: verify)
                let t0 = now()
                bytes = 0
                for name in f.tensorNames { bytes += try f.tensor(named: name)?.byteCount ?? 0 }
                if round > 0 { times[verify, default: []].append(now() - t0) } // round 0 warms the page cache
            }
        }
        let best = { (v: Bool) in times[v]?.min() ?? 0 }
        print(String(format: "%@: %.3f GB; read all tensors: %.3f s without verification, %.3f s with (CRC-32C %.2f GB/s); best of 3, warm page cache",
                     path, Double(bytes) / 1e9, best(false), best(true), Double(bytes) / 1e9 / max(best(true) - best(false), 1e-9)))
    } catch {
        FileHandle.standardError.write(Data("error: \(error)\n".utf8))
        exit(1)
    }
    exit(0)
}

do {
    let t0 = now()
    let kind = try TensorFiles.kind(of: path)
    let source = try TensorFiles.open(path)
    let t1 = now()
    var bytes = 0
    var digest: UInt32 = 0
    var unusable = 0
    var copied = 0
    for name in source.tensorNames {
        let crc: UInt32
        let n: Int
        do {
            guard let t = try source.tensor(named: name) else { continue }
            crc = t.crc32c()
            n = t.byteCount
            if !t.storage.isMapped { copied += 1 }
        } catch FormatError.unsupported {
            unusable += 1
            continue
        }
        bytes += n
        digest = digest &+ crc // order-independent: the same tensors in another file order give the same digest
        if !keepPages { source.releasePages(named: name) }
    }
    let t2 = now()
    print("\(path): \(kind.rawValue), \(source.tensorNames.count) tensors (\(unusable) of an unusable dtype, \(copied) copied to realign)")
    print(String(format: "open %.3f s, read+CRC-32C %.3f s, %.2f GB at %.2f GB/s, digest %08x",
                 t1 - t0, t2 - t1, Double(bytes) / 1e9, Double(bytes) / 1e9 / max(t2 - t1, 1e-9), digest))
    if verifyZip, let ckpt = source as? TorchCheckpoint {
        let t3 = now()
        var bad = 0
        for e in ckpt.archive.entries where try !ckpt.archive.verifyCRC(e) {
            print("CRC mismatch: \(e.name)")
            bad += 1
        }
        print(String(format: "zip CRC-32 of %d entries: %@ (%.1f s)", ckpt.archive.entries.count, bad == 0 ? "all match" : "\(bad) mismatches", now() - t3))
        if bad > 0 { exit(1) }
    }
    if let out = exportPath {
        let t4 = now()
        var layout: [SafetensorsWriter.Item] = []
        var names: [String] = []
        for name in source.tensorNames {
            guard let t = try source.tensor(named: name), let d = FileDType(t.dtype) else { continue }
            layout.append(.init(name: name, dtype: d, shape: t.shape))
            names.append(name)
        }
        let w = try SafetensorsWriter(path: out, layout: layout, metadata: ["format": "pt"])
        for name in names {
            if let t = try source.tensor(named: name) { try w.write(name, t) }
            source.releasePages(named: name)
        }
        try w.finish()
        print(String(format: "exported %d tensors to %@ in %.1f s", names.count, out, now() - t4))
    }
} catch {
    FileHandle.standardError.write(Data("error: \(error)\n".utf8))
    exit(1)
}
