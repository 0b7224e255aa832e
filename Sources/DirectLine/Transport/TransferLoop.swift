import CCurl
#if canImport(Glibc)
import Glibc
#endif

/// One library thread that runs many transfers at once on a curl multi
/// handle, and the timers that say when work starts.
///
/// The token refresher runs on it: each conversation's timer fires at its
/// refresh time and starts a refresh transfer, so a thousand refreshes
/// waiting on a slow token service cost one thread, not a thousand.
///
/// - The thread starts with the first timer or transfer and ends when none
///   is left, so a process that is not using the library has no thread of
///   ours.
/// - Timers sit in a due-time heap that knows where each one is:
///   scheduling and cancelling are O(log n), and no table is kept besides
///   the heap, so no rehash or sweep ever stalls a schedule or a cancel.
/// - At most `capacity` transfers run at once; more wait their turn, in
///   order, each prepared only when it starts.
/// - Timer actions, transfer starts and completions run on the loop's
///   thread, outside its lock, one at a time. They must not block; they may
///   schedule, cancel and enqueue.
/// - The thread sleeps in `curl_multi_poll` until the earliest timer (or
///   libcurl's own next timeout); a timer earlier than that, a transfer
///   waiting to start, or the last timer cancelled wakes it
///   (`curl_multi_wakeup`).
/// - In a forked child the parent's thread is gone: its multi handle and
///   the handles on it hold the parent's connections, so they are left as
///   they are, never cleaned up. Transfers in flight or waiting are
///   forgotten without their completions (their owners start them again
///   from their own fork handlers); timers carry over and a new thread runs
///   them.
final class TransferLoop: @unchecked Sendable {
    static let shared = TransferLoop()

    /// The most transfers in flight at once. A transfer holds a connection,
    /// and so a file descriptor, until it is answered: 10,000 conversations
    /// with 20-second tokens refreshed through a service that answers in a
    /// second need about 1,000 in flight. The loop also keeps to a quarter
    /// of the process's descriptor limit (`capacity`), which is often 1,024.
    static let maxTransfers = 1024

    /// A scheduled action; the loop's lock guards its state.
    final class Timer: DueHeapElement, @unchecked Sendable {
        fileprivate let action: @Sendable (Timer) -> Void
        /// Where it is in the heap; -1 once it fired or was cancelled.
        var heapIndex = -1

        fileprivate init(_ action: @escaping @Sendable (Timer) -> Void) {
            self.action = action
        }
    }

    /// A transfer the loop runs: a handle prepared for its request, and what
    /// to do with libcurl's result. The completion is called while the
    /// handle is still attached to the loop's multi handle (its response can
    /// still be read) and must end the transfer with `EasyHandle.finish`,
    /// which detaches it; the loop does not touch the handle afterwards.
    struct Transfer {
        let handle: any LoopTransferHandle
        let completion: (CURLcode) -> Void
        /// A stream (a WebSocket), open for as long as it is listened to:
        /// it does not take one of the `capacity` places, or it would keep
        /// refreshes and polls waiting behind it.
        var isStream = false
    }

    /// Prepares a transfer when the loop has room for it; nil when there is
    /// nothing to run after all (the start reported its failure itself).
    typealias Start = @Sendable () -> Transfer?

    // Guarded by `mutex`, which a fork() waits for (prepare) and the child
    // makes afresh, so the child never sees these half changed.
    private let mutex: UnsafeMutablePointer<pthread_mutex_t>
    private var heap = DueHeap<Timer>()
    private var lastSequence: UInt64 = 0
    private var waiting = FIFO<Start>()
    /// Transfers taken from `waiting` and not yet completed.
    private var started = 0
    /// Streams to attach (`attachStream`), and how many are attached.
    private var streamsWaiting = FIFO<Start>()
    private var streams = 0
    /// The transfers attached to `multi`, by their easy handle.
    private var transfers: [UnsafeMutableRawPointer: Transfer] = [:]
    private var running = false
    /// The running thread's multi handle (nil while none runs).
    private var multi: UnsafeMutableRawPointer?
    /// While the thread waits in its poll: the due time it waits for
    /// (`Int.max`: no timer). An earlier timer has to wake it.
    private var sleepingUntil: Int?
    private var capacity = maxTransfers
    /// What a fork() left in the child (the parent's transfers and waiting
    /// starts), released by the child's next thread rather than inside the
    /// fork handler.
    private var leftovers: [Any] = []
    /// The process is exiting (`quiesceForExit`): the thread takes on no
    /// more work and parks, and says so with `parked`.
    private var exiting = false
    private var parked = false

    private init() {
        mutex = ForkSafety.newMutex()
        ForkSafety.guardAcrossFork(mutex) { [self] in afterFork() }
    }

    private func locked<T>(_ body: () -> T) -> T {
        pthread_mutex_lock(mutex)
        defer { pthread_mutex_unlock(mutex) }
        return body()
    }

    /// Runs `action` on the loop's thread at `dueMs` (monotonic), or at once
    /// when that has passed. Timers due at the same time run in the order
    /// they were scheduled.
    func schedule(atMs dueMs: Int, _ action: @escaping @Sendable (Timer) -> Void) -> Timer {
        let timer = Timer(action)
        let started = locked { () -> Bool in
            lastSequence &+= 1
            heap.push(DueHeap.Item(atMs: dueMs, sequence: lastSequence, value: timer))
            if let sleepingUntil, dueMs < sleepingUntil { wake() }
            return startThreadIfNeeded()
        }
        if !started { Self.logNoThread() }
        return timer
    }

    /// Forgets a timer that has not fired; nothing when it has.
    func cancel(_ timer: Timer) {
        locked {
            guard timer.heapIndex >= 0 else { return }
            heap.remove(at: timer.heapIndex)
            // Nothing left: the thread ends now rather than at the timer.
            if heap.count == 0, waiting.isEmpty, started == 0, sleepingUntil != nil { wake() }
        }
    }

    /// Runs a transfer as soon as fewer than `capacity` are in flight:
    /// `start` prepares it then, on the loop's thread.
    func enqueue(_ start: @escaping Start) {
        let threadStarted = locked { () -> Bool in
            waiting.append(start)
            if sleepingUntil != nil, started < capacity { wake() }
            return startThreadIfNeeded()
        }
        if !threadStarted { Self.logNoThread() }
    }

    /// Runs a stream (`Transfer.isStream`) at once, whatever the number of
    /// transfers in flight: `start` prepares it on the loop's thread.
    func attachStream(_ start: @escaping Start) {
        let threadStarted = locked { () -> Bool in
            streamsWaiting.append(start)
            if sleepingUntil != nil { wake() }
            return startThreadIfNeeded()
        }
        if !threadStarted { Self.logNoThread() }
    }

    /// On the loop's thread only (a timer's action or a completion): takes
    /// a stream off the loop before it completed by itself. Its completion
    /// is never called; the caller ends the transfer.
    func detachStream(_ handle: any LoopTransferHandle) {
        locked {
            if transfers.removeValue(forKey: handle.curl) != nil { streams -= 1 }
        }
    }

    /// Whether the loop has a thread now (for tests and the docs' promise
    /// that an idle process has none).
    var isRunning: Bool { locked { running } }

    private func wake() {
        if let multi { _ = curl_multi_wakeup(multi) }
        sleepingUntil = nil
    }

    /// Starts the thread unless it runs; false when it could not be started.
    private func startThreadIfNeeded() -> Bool {
        if !running { running = Self.spawn() }
        return running
    }

    /// Outside the lock: the log callback is the caller's code.
    private static func logNoThread() {
        Log.emit(.error, "the library's transfer thread could not be started; tokens are refreshed only on request")
    }

    private static func spawn() -> Bool {
        var thread = pthread_t()
        let created = pthread_create(&thread, nil, { _ in
            TransferLoop.shared.run()
            return nil
        }, nil)
        guard created == 0 else { return false }
        pthread_detach(thread)
        return true
    }

    /// A quarter of the process's descriptor limit, at most `maxTransfers`.
    private static func currentCapacity() -> Int {
        var limit = rlimit()
        guard getrlimit(__rlimit_resource_t(RLIMIT_NOFILE.rawValue), &limit) == 0,
              limit.rlim_cur != rlim_t.max else { return maxTransfers }
        return min(maxTransfers, max(16, Int(clamping: limit.rlim_cur / 4)))
    }

    private func run() {
        // Started by a fork handler, the thread waits until every part of
        // the library has set itself up again in the child.
        ForkSafety.waitForHandlers()
        let inherited = locked { () -> [Any] in
            defer { leftovers = [] }
            return leftovers
        }
        _ = inherited
        guard curlGlobalInit == CURLE_OK, let multi = curl_multi_init() else {
            locked { running = false }
            Log.emit(.error, "libcurl could not make the transfer loop's multi handle; tokens are refreshed only on request")
            return
        }
        locked {
            self.multi = multi
            capacity = Self.currentCapacity()
        }
        Self.registerExitHandler()
        var due: [Timer] = []
        var starts: [Start] = []
        while true {
            if locked({ exiting }) { parkForExit() }
            // The timers that are due (which may enqueue transfers), then
            // the transfers there is room for.
            let now = Clock.monotonicMs()
            locked {
                while let top = heap.first, top.atMs <= now {
                    heap.remove(at: 0)
                    due.append(top.value)
                }
            }
            for timer in due { timer.action(timer) }
            due.removeAll(keepingCapacity: true)
            locked {
                while started < capacity, let start = waiting.removeFirst() {
                    starts.append(start)
                    started += 1
                }
            }
            for start in starts { begin(start, on: multi) }
            starts.removeAll(keepingCapacity: true)
            locked {
                while let start = streamsWaiting.removeFirst() { starts.append(start) }
            }
            for start in starts { beginStream(start, on: multi) }
            starts.removeAll(keepingCapacity: true)

            var active: Int32 = 0
            _ = curl_multi_perform(multi, &active)
            completeFinished(on: multi)

            guard let timeout = nextWait() else {
                if locked({ exiting }) { parkForExit() }  // no cleanup: TLS may be gone
                break
            }
            if timeout > 0 {
                if curl_multi_poll(multi, nil, 0, timeout, nil) != CURLM_OK {
                    sleepMilliseconds(10)  // never spin on a failing poll
                }
                locked { sleepingUntil = nil }
            }
        }
        curl_multi_cleanup(multi)
    }

    /// Registered once libcurl (and through it the TLS library) has been
    /// initialised, so that it runs before their own exit handlers (atexit
    /// handlers run in reverse order): a close frame or a refresh on this
    /// thread must not use TLS state that `OPENSSL_cleanup` already tore down.
    private static let exitHandler: Void = {
        _ = atexit { TransferLoop.shared.quiesceForExit() }
    }()

    private static func registerExitHandler() {
        _ = exitHandler
    }

    /// At exit (on the exiting thread): stops the loop's thread between two
    /// pieces of work, waiting up to 250 ms for it; nothing more is sent.
    /// Work that was scheduled (a close frame after a free, a refresh) is
    /// left undone, as the process is going away.
    private func quiesceForExit() {
        let waitFor = locked { () -> Bool in
            exiting = true
            guard running, !parked else { return false }
            if let multi { _ = curl_multi_wakeup(multi) }
            return true
        }
        guard waitFor else { return }
        let deadline = Clock.monotonicMs() + 250
        while !locked({ parked || !running }), Clock.monotonicMs() < deadline {
            sleepMilliseconds(1)
        }
    }

    /// The loop's thread at exit: never touches libcurl again.
    private func parkForExit() -> Never {
        locked { parked = true }
        while true { sleepMilliseconds(60_000) }
    }

    /// How long to wait for sockets or the next timer (ms; 0: go round at
    /// once), or nil when nothing is left, which ends the thread.
    private func nextWait() -> Int32? {
        locked { () -> Int32? in
            if heap.count == 0, waiting.isEmpty, started == 0, streamsWaiting.isEmpty, streams == 0 {
                running = false
                multi = nil
                return nil
            }
            let now = Clock.monotonicMs()
            let next = heap.first?.atMs ?? .max
            if next <= now || (!waiting.isEmpty && started < capacity) || !streamsWaiting.isEmpty { return 0 }
            sleepingUntil = next
            // libcurl shortens the wait to its own next timeout.
            return Int32(clamping: min(next - now, 60_000))
        }
    }

    private func begin(_ start: Start, on multi: UnsafeMutableRawPointer) {
        guard let transfer = start() else {
            locked { started -= 1 }
            return
        }
        guard transfer.handle.attach(to: multi) else {
            locked { started -= 1 }
            transfer.completion(CURLE_FAILED_INIT)
            return
        }
        locked { transfers[transfer.handle.curl] = transfer }
    }

    private func beginStream(_ start: Start, on multi: UnsafeMutableRawPointer) {
        guard let transfer = start() else { return }
        guard transfer.handle.attach(to: multi) else {
            transfer.completion(CURLE_FAILED_INIT)
            return
        }
        locked {
            transfers[transfer.handle.curl] = transfer
            streams += 1
        }
    }

    private func completeFinished(on multi: UnsafeMutableRawPointer) {
        var queued: Int32 = 0
        while let message = curl_multi_info_read(multi, &queued) {
            // The message does not outlive the handle's removal: read it first.
            guard message.pointee.msg == CURLMSG_DONE, let easy = message.pointee.easy_handle else { continue }
            let code = message.pointee.data.result
            guard let transfer = locked({ transfers.removeValue(forKey: easy) }) else { continue }
            // A stream counts down before its completion, which may attach
            // the next one.
            if transfer.isStream { locked { streams -= 1 } }
            transfer.completion(code)
            if !transfer.isStream { locked { started -= 1 } }
        }
    }

    /// In a forked child (see the type's comment).
    private func afterFork() {
        for transfer in transfers.values { transfer.handle.abandon() }
        leftovers = [transfers, waiting, streamsWaiting]
        transfers = [:]
        waiting = FIFO()
        streamsWaiting = FIFO()
        started = 0
        streams = 0
        multi = nil
        sleepingUntil = nil
        running = false
        if heap.count > 0 { _ = startThreadIfNeeded() }
    }
}

/// What the loop attaches to its multi handle: a libcurl easy handle that
/// runs one transfer (`EasyHandle`) or one WebSocket (`WebSocketConnection`).
protocol LoopTransferHandle: AnyObject, Sendable {
    var curl: UnsafeMutableRawPointer { get }
    /// Adds the prepared transfer to `multi`; false when libcurl refused.
    func attach(to multi: UnsafeMutableRawPointer) -> Bool
    /// In a forked child: let go without cleanup (the parent's connections).
    func abandon()
}

extension EasyHandle: LoopTransferHandle {}

/// What a `DueHeap` holds: an object that is told where it is in the heap.
protocol DueHeapElement: AnyObject {
    /// Its index in the heap, kept up to date by the heap; -1 when out of it.
    var heapIndex: Int { get set }
}

/// A min-heap of objects by due time (ties in the order of their sequence
/// numbers) that keeps each object's index, so that any one of them can be
/// removed in O(log n).
struct DueHeap<Value: DueHeapElement> {
    struct Item {
        var atMs: Int
        var sequence: UInt64
        var value: Value
    }

    private(set) var items: [Item] = []

    var count: Int { items.count }
    var first: Item? { items.first }

    private func precedes(_ a: Int, _ b: Int) -> Bool {
        let first = items[a]
        let second = items[b]
        return first.atMs != second.atMs ? first.atMs < second.atMs : first.sequence < second.sequence
    }

    mutating func push(_ item: Item) {
        items.append(item)
        item.value.heapIndex = items.count - 1
        siftUp(items.count - 1)
    }

    /// Removes the item at `index` (0: the first due) and returns it.
    @discardableResult
    mutating func remove(at index: Int) -> Item {
        let removed = items[index]
        let last = items.count - 1
        if index != last {
            exchange(index, last)
        }
        items.removeLast()
        removed.value.heapIndex = -1
        if index < items.count {
            siftDown(index)
            siftUp(index)
        }
        return removed
    }

    private mutating func exchange(_ a: Int, _ b: Int) {
        items.swapAt(a, b)
        items[a].value.heapIndex = a
        items[b].value.heapIndex = b
    }

    private mutating func siftUp(_ start: Int) {
        var child = start
        while child > 0 {
            let parent = (child - 1) / 2
            guard precedes(child, parent) else { return }
            exchange(child, parent)
            child = parent
        }
    }

    private mutating func siftDown(_ start: Int) {
        var parent = start
        while true {
            let left = 2 * parent + 1
            guard left < items.count else { return }
            let right = left + 1
            let child = right < items.count && precedes(right, left) ? right : left
            guard precedes(child, parent) else { return }
            exchange(child, parent)
            parent = child
        }
    }
}

/// First in, first out; taking from the front moves nothing.
struct FIFO<Element> {
    private var items: [Element?] = []
    private var head = 0

    var isEmpty: Bool { head == items.count }
    var count: Int { items.count - head }
    /// The element `removeFirst` would take, left in place.
    var first: Element? { head < items.count ? items[head] : nil }
    /// The element `append` put in last, which may be changed in place.
    var last: Element? {
        get { head < items.count ? items[items.count - 1] : nil }
        set {
            guard head < items.count, let newValue else { return }
            items[items.count - 1] = newValue
        }
    }

    mutating func append(_ element: Element) {
        items.append(element)
    }

    mutating func removeFirst() -> Element? {
        guard head < items.count else { return nil }
        let element = items[head]
        items[head] = nil
        head += 1
        if head == items.count {
            items.removeAll(keepingCapacity: true)
            head = 0
        } else if head >= 1024, head * 2 >= items.count {
            items.removeFirst(head)
            head = 0
        }
        return element
    }
}
