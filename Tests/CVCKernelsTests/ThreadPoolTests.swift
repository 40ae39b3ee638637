import CVCKernels
import Foundation
import Testing

/// The thread pool: every task runs exactly once at any size, nested regions run serially on the
/// calling thread, resizing is safe, concurrent callers are serialised, and kernels give the same
/// bits at every thread count. Serialized: these tests change the process-wide thread count.
@Suite("thread pool", .serialized)
struct ThreadPoolTests {
    /// ctx = counters: task i increments slot i.
    static let count: @convention(c) (UnsafeMutableRawPointer?, Int32) -> Void = { ctx, i in
        guard let p = ctx?.assumingMemoryBound(to: Int32.self) else { return }
        p[Int(i)] += 1
    }

    static func runCounting(_ ntasks: Int) -> [Int32] {
        var counters = [Int32](repeating: 0, count: max(ntasks, 1))
        counters.withUnsafeMutableBytes { vck_parallel_for(Int32(ntasks), Self.count, $0.baseAddress) }
        return counters
    }

    @Test func everyTaskRunsOnceAtEverySize() {
        let saved = vck_get_threads()
        defer { vck_set_threads(saved) }
        for threads in [1, 2, 3, 1, 3, 2, 4, 1, 2] {
            vck_set_threads(Int32(threads))
            #expect(vck_get_threads() == Int32(threads))
            for ntasks in [1, 2, 3, 5, 64, 1000] {
                #expect(Self.runCounting(ntasks).allSatisfy { $0 == 1 }, "\(threads) threads, \(ntasks) tasks")
            }
            #expect(Self.runCounting(0) == [0])
        }
    }

    /// Outer task i runs an inner region of 4 tasks; each inner task records whether it ran on the
    /// thread of its outer task.
    struct NestCtx { var outerThread: [pthread_t]; var sameThread: [Int32]; var innerRuns: [Int32] }
    static let inner: @convention(c) (UnsafeMutableRawPointer?, Int32) -> Void = { ctx, j in
        guard let p = ctx?.assumingMemoryBound(to: (Int, UnsafeMutablePointer<pthread_t>, UnsafeMutablePointer<Int32>, UnsafeMutablePointer<Int32>).self) else { return }
        let (i, threadsPtr, same, runs) = p.pointee
        if pthread_equal(threadsPtr[i], pthread_self()) != 0 { same[i * 4 + Int(j)] = 1 }
        runs[i * 4 + Int(j)] += 1
    }
    static let outer: @convention(c) (UnsafeMutableRawPointer?, Int32) -> Void = { ctx, i in
        guard let p = ctx?.assumingMemoryBound(to: (UnsafeMutablePointer<pthread_t>, UnsafeMutablePointer<Int32>, UnsafeMutablePointer<Int32>).self) else { return }
        let (threadsPtr, same, runs) = p.pointee
        threadsPtr[Int(i)] = pthread_self()
        var innerCtx = (Int(i), threadsPtr, same, runs)
        withUnsafeMutablePointer(to: &innerCtx) { vck_parallel_for(4, Self.inner, $0) }
    }

    @Test func nestedRegionsRunSeriallyOnTheCallingThread() {
        let saved = vck_get_threads()
        defer { vck_set_threads(saved) }
        vck_set_threads(3)
        let n = 12
        let threadsPtr = UnsafeMutablePointer<pthread_t>.allocate(capacity: n)
        let same = UnsafeMutablePointer<Int32>.allocate(capacity: n * 4)
        let runs = UnsafeMutablePointer<Int32>.allocate(capacity: n * 4)
        defer { threadsPtr.deallocate(); same.deallocate(); runs.deallocate() }
        same.initialize(repeating: 0, count: n * 4)
        runs.initialize(repeating: 0, count: n * 4)
        var ctx = (threadsPtr, same, runs)
        withUnsafeMutablePointer(to: &ctx) { vck_parallel_for(Int32(n), Self.outer, $0) }
        #expect((0..<n * 4).allSatisfy { same[$0] == 1 && runs[$0] == 1 })
    }

    /// Several threads start regions at once: each region still runs each of its tasks once.
    @Test func concurrentCallersAreSerialised() {
        let saved = vck_get_threads()
        defer { vck_set_threads(saved) }
        vck_set_threads(2)
        let callers = 6
        nonisolated(unsafe) let results = UnsafeMutablePointer<Int32>.allocate(capacity: callers)
        defer { results.deallocate() }
        results.initialize(repeating: 0, count: callers)
        DispatchQueue.concurrentPerform(iterations: callers) { c in
            var ok: Int32 = 1
            for _ in 0..<50 where !Self.runCounting(37).allSatisfy({ $0 == 1 }) { ok = 0 }
            results[c] = ok
        }
        #expect((0..<callers).allSatisfy { results[$0] == 1 })
    }

    /// Kernels split their work into thread-independent pieces: identical bits at 1, 2 and 3 threads.
    @Test func kernelsGiveTheSameBitsAtEveryThreadCount() {
        let saved = vck_get_threads()
        defer { vck_set_threads(saved) }
        var rng = Rng(5)
        let rows = 3000, c = 64
        let x = rng.floats(rows * c), gamma = rng.floats(c), beta = rng.floats(c)
        let weights = TestWeight.dtypes.map { TestWeight(dtype: $0, n: 96, k: c, seed: 2) }
        var outputs: [[UInt32]] = []
        for threads in [1, 2, 3] {
            vck_set_threads(Int32(threads))
            var gn = [Float](repeating: 0, count: rows * c)
            gn.withUnsafeMutableBufferPointer { vck_group_norm(x, $0.baseAddress, 2, Int64(rows / 2), Int64(c), 8, gamma, beta, 1e-5, Int32(VCK_ACT_SILU)) }
            var lin: [UInt32] = []
            for w in weights {
                var y = [Float](repeating: 0, count: rows * 96)
                w.with { wp in y.withUnsafeMutableBufferPointer { vck_linear(Int64(rows), x, Int64(c), wp, nil, $0.baseAddress, 96, 0) } }
                lin += bits(y)
            }
            var sm = x
            sm.withUnsafeMutableBufferPointer { vck_softmax_rows($0.baseAddress, Int64(rows), Int64(c)) }
            outputs.append(bits(gn) + lin + bits(sm))
        }
        #expect(outputs[0] == outputs[1])
        #expect(outputs[0] == outputs[2])
    }
}
