import Testing
import VCTensor

/// Large owned buffers come from the activation arena (anonymous mappings kept for reuse).
@Suite("Buffer cache and tensor memory counters")
struct BufferCacheTests {
    @Test func reusedBuffersAreZeroedAndCounted() throws {
        let n = 3 << 20   // 12 MiB of floats: a cached, huge-page size class
        for _ in 0..<3 {
            do {
                let dirty = Ops.randomUniform([n], seed: 9, low: 1, high: 2)
                #expect(dirty.floats()[n - 1] >= 1)
                #expect(Storage.liveHeapBytes >= n * 4)
            }
            // Whether this reuses the dirty buffer or maps a fresh one, it must read as zeros.
            let z = Tensor(zeros: [n])
            let f = z.floats()
            #expect(f.allSatisfy { $0 == 0 })
        }
        // Peak tracking sees a new allocation above the current live bytes.
        Storage.resetPeakHeapBytes()
        let before = Storage.liveHeapBytes
        do {
            let t = Tensor(uninitialized: [n])
            #expect(t.count == n)
            #expect(Storage.peakHeapBytes >= before + n * 4)
        }
        Storage.trimBufferCache()
        #expect(Storage.bufferCacheBytes == 0)
    }

    /// A scoped limit holds inside the body and the previous one is back afterwards, also when
    /// the body throws.
    @Test func scopedLimitIsRestored() throws {
        struct Stop: Error {}
        let before = Storage.bufferCacheLimit
        let inside = Storage.withBufferCacheLimit(before + (64 << 20)) { Storage.bufferCacheLimit }
        #expect(inside == before + (64 << 20))
        #expect(Storage.bufferCacheLimit == before)
        #expect(throws: Stop.self) { try Storage.withBufferCacheLimit(1 << 20) { throw Stop() } }
        #expect(Storage.bufferCacheLimit == before)
    }
}
