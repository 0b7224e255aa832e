import Synchronization

/// A caller's callback that may be replaced while other threads call it.
///
/// A thread pins the current callback for as long as it uses it; replacing
/// the callback returns only once no thread holds the previous one any
/// more, so the caller may release the old callback's userdata as soon as
/// the replacement returns. Serves the progress callback of a conversation
/// and the process's log callback.
final class CallbackSlot<Callback: Sendable>: Sendable {
    /// One installed callback and how many threads are using it.
    final class Pin: Sendable {
        let callback: Callback
        /// How many threads use the callback (low 32 bits), counted in which
        /// process generation (high 32 bits): a count from before a fork()
        /// is nobody in the child, where those threads do not exist.
        private let users = Atomic<UInt64>(0)

        fileprivate init(_ callback: Callback) { self.callback = callback }

        fileprivate func enter() {
            let generation = UInt64(truncatingIfNeeded: ProcessGeneration.current) & 0xFFFF_FFFF
            var old = users.load(ordering: .relaxed)
            while true {
                let next = old >> 32 == generation ? old &+ 1 : generation << 32 | 1
                let (exchanged, original) = users.compareExchange(expected: old, desired: next,
                                                                  successOrdering: .acquiring,
                                                                  failureOrdering: .relaxed)
                if exchanged { return }
                old = original
            }
        }

        /// Threads using the callback in this process.
        fileprivate var activeUsers: UInt64 {
            let value = users.load(ordering: .acquiring)
            let generation = UInt64(truncatingIfNeeded: ProcessGeneration.current) & 0xFFFF_FFFF
            return value >> 32 == generation ? value & 0xFFFF_FFFF : 0
        }

        /// Ends this thread's use of the callback.
        func unpin() { users.wrappingSubtract(1, ordering: .releasing) }
    }

    private let current = Locked<Pin?>(nil)
    /// Whether a callback is installed, readable without the lock: most
    /// slots are empty on most calls, and a read leaves the cache line
    /// shared between threads where taking the lock would not.
    private let installed = Atomic(false)

    /// Whether a callback is installed now (read without the lock).
    var isInstalled: Bool { installed.load(ordering: .acquiring) }

    /// The current callback, pinned (call `unpin()` when done), or nil when
    /// there is none or `accept` turns it down. A call that races an
    /// installation may miss the new callback, as if it had started first.
    func pin(if accept: (Callback) -> Bool = { _ in true }) -> Pin? {
        guard installed.load(ordering: .acquiring) else { return nil }
        return current.withLock { pin in
            guard let pin, accept(pin.callback) else { return nil }
            pin.enter()
            return pin
        }
    }

    /// Installs `callback` (nil removes it), running `whileLocked` in the
    /// same critical section, then waits until the previous callback is no
    /// longer pinned.
    func replace(with callback: Callback?, whileLocked: () -> Void = {}) {
        let previous = current.withLock { pin -> Pin? in
            defer {
                pin = callback.map(Pin.init)
                installed.store(callback != nil, ordering: .releasing)
            }
            whileLocked()
            return pin
        }
        guard let previous else { return }
        while previous.activeUsers > 0 { sleepMilliseconds(1) }
    }
}
