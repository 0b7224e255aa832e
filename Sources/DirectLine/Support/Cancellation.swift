import Synchronization

/// A flag one thread raises and others read without a lock: set when a
/// conversation handle is freed, so that its waits stop and its transfers
/// in flight are aborted.
///
/// A transfer blocked in a poll registers a waker while it runs; `raise`
/// calls every registered waker, so the transfer notices at once rather
/// than at its next timeout.
final class Cancellation: Sendable {
    private let raised = Atomic(false)
    private let wakers = Locked<(next: Int, registered: [Int: @Sendable () -> Void])>((0, [:]))

    var isRaised: Bool { raised.load(ordering: .acquiring) }

    /// Sets the flag and wakes what is registered. A waker runs under the
    /// registry's lock, so it never runs after its `withdraw` returned: what
    /// it touches may be released right after. Wakers must not block.
    func raise() {
        raised.store(true, ordering: .releasing)
        wakers.withLock { state in
            for wake in state.registered.values { wake() }
        }
    }

    /// Registers `wake` until `withdraw(token)`. A waker registered after
    /// the raise is not called: the caller checks `isRaised` after
    /// registering.
    func register(_ wake: @escaping @Sendable () -> Void) -> Int {
        wakers.withLock { state in
            state.next += 1
            state.registered[state.next] = wake
            return state.next
        }
    }

    func withdraw(_ token: Int) {
        wakers.withLock { state in _ = state.registered.removeValue(forKey: token) }
    }
}
