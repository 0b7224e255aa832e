#if canImport(Glibc)
import Glibc
#endif

/// Refreshes conversation tokens before they expire, on the transfer loop's
/// one thread (`TransferLoop`), many at once.
///
/// Each conversation with a token to keep fresh has an entry here and a
/// timer on the loop; when it fires, the refresh request goes out on the
/// loop and the conversation handles the answer there
/// (`Conversation.startScheduledRefresh`). So a slow token service holds up
/// no other conversation's refresh: a thousand refreshes waiting on it are
/// a thousand transfers on one thread. Scheduling and cancelling cost
/// O(log n) and O(1), whatever the number of conversations.
///
/// Conversations are held weakly, and freeing a handle cancels its refresh
/// (`Conversation.close`). The loop's thread ends when no timer and no
/// refresh is left, so a process that is not using the library has no
/// thread of ours. A refresh never blocks the conversation's other calls:
/// they go on with the current token, which stays valid until its own
/// expiry.
final class TokenRefresher: @unchecked Sendable {
    static let shared = TokenRefresher()

    /// A conversation's refresh schedule; `mutex` guards its state. Its
    /// timer holds it, so a timer going off needs no lookup.
    private final class Entry: @unchecked Sendable {
        let id: ObjectIdentifier
        weak var conversation: Conversation?
        /// The timer that starts the next refresh; nil while one runs, or
        /// once the entry is cancelled.
        var timer: TransferLoop.Timer?
        /// Failures in a row of the automatic refresh (for the backoff).
        var failures = 0
        /// How long the service took to answer the last refresh (ms).
        var latencyMs = 0

        init(_ conversation: Conversation) {
            id = ObjectIdentifier(conversation)
            self.conversation = conversation
        }
    }

    private let loop: TransferLoop
    // Guarded by `mutex`, which a fork() waits for (prepare) and the child
    // makes afresh. Taken before the loop's lock, never after it, and never
    // while the loop calls back: the conversation's lock may be held around
    // a call here, never the other way round.
    private let mutex: UnsafeMutablePointer<pthread_mutex_t>
    private var entries: [ObjectIdentifier: Entry] = [:]

    private init() {
        // The loop first: its fork handlers then run before these in a child.
        loop = TransferLoop.shared
        mutex = ForkSafety.newMutex()
        ForkSafety.guardAcrossFork(mutex) { [self] in afterFork() }
    }

    /// In a forked child: the loop kept its timers, but the refreshes that
    /// were in flight in the parent are gone, so they start again at once.
    private func afterFork() {
        let now = Clock.monotonicMs()
        for entry in entries.values where entry.timer == nil {
            entry.timer = timer(for: entry, atMs: now)
        }
    }

    private func locked<T>(_ body: () -> T) -> T {
        pthread_mutex_lock(mutex)
        defer { pthread_mutex_unlock(mutex) }
        return body()
    }

    /// Refreshes `conversation`'s token at `dueMs` (monotonic), in place of
    /// any earlier schedule. With `expiresAtMs`, the token's expiry, the
    /// refresh starts early enough for twice the service's last answer time
    /// to fit before it: a slow service would otherwise answer after the
    /// token lapsed. `failures` counts the automatic refresh's failures in
    /// a row; `latencyMs`, when known, is how long the last one took.
    func schedule(_ conversation: Conversation, atMs dueMs: Int, before expiresAtMs: Int? = nil,
                  failures: Int = 0, latencyMs: Int? = nil) {
        let id = ObjectIdentifier(conversation)
        locked {
            let entry: Entry
            if let existing = entries[id] {
                entry = existing
            } else {
                entry = Entry(conversation)
                entries[id] = entry
            }
            if let latencyMs { entry.latencyMs = max(0, latencyMs) }
            var due = dueMs
            if let expiresAtMs, entry.latencyMs > 0 { due = min(due, expiresAtMs - 2 * entry.latencyMs) }
            if let old = entry.timer { loop.cancel(old) }
            entry.timer = timer(for: entry, atMs: due)
            entry.failures = failures
        }
    }

    private func timer(for entry: Entry, atMs dueMs: Int) -> TransferLoop.Timer {
        loop.schedule(atMs: dueMs) { timer in TokenRefresher.shared.fire(entry, timer) }
    }

    /// No more automatic refreshes for the conversation (freed, ended, or
    /// its refresh stopped for good). A refresh already running is not
    /// waited for; it finds the handle freed or ended and schedules nothing.
    func cancel(_ id: ObjectIdentifier) {
        locked {
            guard let entry = entries.removeValue(forKey: id) else { return }
            if let timer = entry.timer { loop.cancel(timer) }
            entry.timer = nil
        }
    }

    /// Whether a refresh is scheduled or running for the conversation (info's `autoRefresh`).
    func isActive(_ id: ObjectIdentifier) -> Bool {
        locked { entries[id] != nil }
    }

    /// On the loop's thread: the conversation's timer is due.
    private func fire(_ entry: Entry, _ timer: TransferLoop.Timer) {
        let due = locked { () -> (Conversation, Int)? in
            // A timer replaced or cancelled after it was taken from the
            // heap does nothing.
            guard entry.timer === timer else { return nil }
            entry.timer = nil
            guard let conversation = entry.conversation else {
                // Released without a free: nothing to refresh.
                if entries[entry.id] === entry { entries[entry.id] = nil }
                return nil
            }
            return (conversation, entry.failures)
        }
        if let (conversation, failures) = due {
            conversation.startScheduledRefresh(failures: failures)
        }
    }
}
