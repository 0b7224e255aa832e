import Synchronization

/// A flag one thread raises and others read without a lock: set when a
/// conversation handle is freed, so that its waits stop and its transfers
/// in flight are aborted.
final class Cancellation: Sendable {
    private let raised = Atomic(false)

    var isRaised: Bool { raised.load(ordering: .acquiring) }

    func raise() { raised.store(true, ordering: .releasing) }
}
