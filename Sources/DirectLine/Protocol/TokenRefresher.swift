#if canImport(Glibc)
import Glibc
#endif

/// Refreshes conversation tokens before they expire, on one background
/// thread shared by the whole process.
///
/// The thread starts when the first token needs refreshing and ends when no
/// conversation is left to refresh, so a process that is not using the
/// library has no thread of ours. Conversations are held weakly, and
/// freeing a handle cancels its refresh (`Conversation.close`). Nothing here
/// runs from a deinit, so dropping a reference under the lock is harmless. A refresh runs outside the lock and never
/// blocks the conversation's other calls: they go on with the current token,
/// which stays valid until its own expiry.
final class TokenRefresher: @unchecked Sendable {
    static let shared = TokenRefresher()

    private struct Entry {
        weak var conversation: Conversation?
        var dueMs: Int
    }

    // Guarded by `mutex`; `condition` wakes the thread when an earlier
    // deadline arrives.
    private let mutex: UnsafeMutablePointer<pthread_mutex_t>
    private let condition: UnsafeMutablePointer<pthread_cond_t>
    private var entries: [ObjectIdentifier: Entry] = [:]
    /// The conversation being refreshed right now, if any, with its entry
    /// (so that a forked child can schedule it again).
    private var inFlight: (id: ObjectIdentifier, entry: Entry)?
    private var running = false

    private init() {
        mutex = .allocate(capacity: 1)
        mutex.initialize(to: pthread_mutex_t())
        condition = .allocate(capacity: 1)
        condition.initialize(to: pthread_cond_t())
        initializeSynchronization()
        ForkSafety.register(ForkSafety.Handlers(
            prepare: { [self] in pthread_mutex_lock(mutex) },
            parent: { [self] in pthread_mutex_unlock(mutex) },
            child: { [self] in afterFork() }))
    }

    /// In a forked child: the refresh thread did not come along, so it is
    /// started again for the tokens still scheduled; a refresh that was in
    /// flight in the parent is scheduled again at once.
    private func afterFork() {
        initializeSynchronization()
        running = false
        if let (id, entry) = inFlight, entries[id] == nil {
            entries[id] = Entry(conversation: entry.conversation, dueMs: Clock.monotonicMs())
        }
        inFlight = nil
        if !entries.isEmpty {
            running = Self.spawn()
        }
    }

    /// A fresh mutex, and a condition on the monotonic clock: at start, and
    /// in a forked child, where the parent's may be held or waited on.
    private func initializeSynchronization() {
        pthread_mutex_init(mutex, nil)
        var attributes = pthread_condattr_t()
        pthread_condattr_init(&attributes)
        pthread_condattr_setclock(&attributes, CLOCK_MONOTONIC)
        pthread_cond_init(condition, &attributes)
        pthread_condattr_destroy(&attributes)
    }

    private func locked<T>(_ body: () -> T) -> T {
        pthread_mutex_lock(mutex)
        defer { pthread_mutex_unlock(mutex) }
        return body()
    }

    /// Refreshes `conversation`'s token at `dueMs` (monotonic), replacing any
    /// earlier schedule for it.
    func schedule(_ conversation: Conversation, atMs dueMs: Int) {
        let startThread = locked { () -> Bool in
            entries[ObjectIdentifier(conversation)] = Entry(conversation: conversation, dueMs: dueMs)
            pthread_cond_signal(condition)
            if running { return false }
            running = true
            return true
        }
        if startThread, !Self.spawn() {
            // No thread: tokens are then refreshed only by explicit calls.
            locked { running = false }
        }
    }

    func cancel(_ id: ObjectIdentifier) {
        locked {
            if entries.removeValue(forKey: id) != nil { pthread_cond_signal(condition) }
        }
    }

    /// Whether a refresh is scheduled or running for the conversation (info's `autoRefresh`).
    func isActive(_ id: ObjectIdentifier) -> Bool {
        locked { entries[id] != nil || inFlight?.id == id }
    }

    private static func spawn() -> Bool {
        var thread = pthread_t()
        let created = pthread_create(&thread, nil, { _ in
            TokenRefresher.shared.run()
            return nil
        }, nil)
        guard created == 0 else { return false }
        pthread_detach(thread)
        return true
    }

    private func run() {
        while let conversation = nextDue() {
            conversation.refreshOnSchedule()
            locked { inFlight = nil }
        }
    }

    /// Waits for the next due conversation; nil when none is left, which ends the thread.
    private func nextDue() -> Conversation? {
        locked { () -> Conversation? in
            while true {
                entries = entries.filter { $0.value.conversation != nil }
                guard let (id, entry) = entries.min(by: { $0.value.dueMs < $1.value.dueMs }) else {
                    running = false
                    return nil
                }
                let now = Clock.monotonicMs()
                if entry.dueMs <= now {
                    entries.removeValue(forKey: id)
                    if let conversation = entry.conversation {
                        inFlight = (id, entry)
                        return conversation
                    }
                    continue
                }
                var deadline = timespec()
                clock_gettime(CLOCK_MONOTONIC, &deadline)
                let waitMs = entry.dueMs - now
                let nanoseconds = Int(deadline.tv_nsec) + (waitMs % 1000) * 1_000_000
                deadline.tv_sec += waitMs / 1000 + nanoseconds / 1_000_000_000
                deadline.tv_nsec = nanoseconds % 1_000_000_000
                pthread_cond_timedwait(condition, mutex, &deadline)
            }
        }
    }
}
