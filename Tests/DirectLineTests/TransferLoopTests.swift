import Synchronization
import Testing
@testable import DirectLine

@Suite("transfer loop: due-time heap, queue, timers")
struct TransferLoopTests {
    final class Slot: DueHeapElement {
        let id: Int
        var heapIndex = -1
        init(_ id: Int) { self.id = id }
    }

    @Test("the heap gives items by due time, ties in the order of their sequence numbers")
    func heapOrder() {
        var heap = DueHeap<Slot>()
        var items: [(atMs: Int, sequence: UInt64)] = []
        for sequence in 0..<2000 { items.append((Int.random(in: 0..<200), UInt64(sequence))) }
        for item in items.shuffled() {
            heap.push(DueHeap.Item(atMs: item.atMs, sequence: item.sequence, value: Slot(Int(item.sequence))))
        }
        var popped: [(atMs: Int, sequence: UInt64)] = []
        while heap.count > 0 {
            let item = heap.remove(at: 0)
            #expect(item.value.heapIndex == -1)
            popped.append((item.atMs, item.sequence))
        }
        let expected = items.sorted { ($0.atMs, $0.sequence) < ($1.atMs, $1.sequence) }
        #expect(popped.elementsEqual(expected) { $0 == $1 })
        #expect(heap.first == nil)
    }

    @Test("any item can be removed where the heap says it is, and the rest stay in order")
    func heapRemoveAnywhere() {
        var heap = DueHeap<Slot>()
        let slots = (0..<1000).map(Slot.init)
        for slot in slots.shuffled() {
            heap.push(DueHeap.Item(atMs: (slot.id * 7919) % 1000, sequence: UInt64(slot.id), value: slot))
        }
        for slot in slots.shuffled() where slot.id % 3 != 0 {
            #expect(heap.items[slot.heapIndex].value === slot)
            heap.remove(at: slot.heapIndex)
            #expect(slot.heapIndex == -1)
        }
        #expect(heap.items.indices.allSatisfy { heap.items[$0].value.heapIndex == $0 })
        var popped: [Int] = []
        while heap.count > 0 { popped.append(heap.remove(at: 0).atMs) }
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
