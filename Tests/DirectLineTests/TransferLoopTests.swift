import Synchronization
import Testing
@testable import DirectLine

@Suite("transfer loop: due-time heap, queue, timers")
struct TransferLoopTests {
    @Test("the heap gives items by due time, ties in the order of their ids")
    func heapOrder() {
        var heap = DueHeap()
        var generator = SystemRandomNumberGenerator()
        var items: [DueHeap.Item] = []
        for id in 0..<2000 {
            items.append(DueHeap.Item(atMs: Int.random(in: 0..<200, using: &generator), id: UInt64(id)))
        }
        for item in items.shuffled() { heap.push(item) }
        var popped: [DueHeap.Item] = []
        while let item = heap.removeFirst() { popped.append(item) }
        #expect(popped == items.sorted { ($0.atMs, $0.id) < ($1.atMs, $1.id) })
        #expect(heap.count == 0 && heap.first == nil)
    }

    @Test("dropping cancelled items keeps the rest in order")
    func heapRemoveAll() {
        var heap = DueHeap()
        for id in 0..<1000 { heap.push(DueHeap.Item(atMs: (id * 7919) % 1000, id: UInt64(id))) }
        heap.removeAll { $0.id % 3 != 0 }
        var popped: [Int] = []
        while let item = heap.removeFirst() { popped.append(item.atMs) }
        #expect(popped.count == 334)
        #expect(popped == popped.sorted())
    }

    @Test("the queue is first in, first out, across its compactions")
    func fifo() {
        var queue = FIFO<Int>()
        var expected = 0
        for value in 0..<5000 {
            queue.append(value)
            if value % 3 == 0, let first = queue.removeFirst() {
                #expect(first == expected)
                expected += 1
            }
        }
        while let first = queue.removeFirst() {
            #expect(first == expected)
            expected += 1
        }
        #expect(expected == 5000 && queue.isEmpty && queue.count == 0)
    }

    @Test("timers run in due order on the loop's thread, a cancelled one never, and the thread then ends")
    func timers() {
        let loop = TransferLoop.shared
        let fired = Mutex<[Int]>([])
        let now = Clock.monotonicMs()
        _ = loop.schedule(atMs: now + 60) { _ in fired.withLock { $0.append(3) } }
        let cancelled = loop.schedule(atMs: now + 20) { _ in fired.withLock { $0.append(99) } }
        _ = loop.schedule(atMs: now + 40) { _ in fired.withLock { $0.append(2) } }
        _ = loop.schedule(atMs: now - 1000) { _ in fired.withLock { $0.append(1) } }
        loop.cancel(cancelled)
        let deadline = Clock.monotonicMs() + 5000
        while fired.withLock({ $0.count }) < 3, Clock.monotonicMs() < deadline { sleepMilliseconds(5) }
        #expect(fired.withLock { $0 } == [1, 2, 3])
        // Nothing left: the thread ends (other tests may start it again).
        var ended = false
        while !ended, Clock.monotonicMs() < deadline {
            ended = !loop.isRunning
            if !ended { sleepMilliseconds(5) }
        }
        #expect(ended)
    }
}
