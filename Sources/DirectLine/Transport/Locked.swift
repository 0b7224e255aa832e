#if canImport(Glibc)
import Glibc
#endif

/// A value guarded by a pthread mutex of glibc's adaptive kind (a short
/// spin, then a plain futex wait).
///
/// Used instead of `Synchronization.Mutex`, which on Linux in this toolchain
/// is built on priority-inheritance futexes: every contended hand-over goes
/// through the kernel and no thread spins, so with eight threads on one
/// conversation a send cost 70 µs of CPU instead of 44 and the throughput
/// fell to that of one thread (docs/performance.md).
final class Locked<Value>: @unchecked Sendable {
    private var value: Value
    private let mutex: UnsafeMutablePointer<pthread_mutex_t>

    init(_ value: Value) {
        self.value = value
        mutex = .allocate(capacity: 1)
        var attributes = pthread_mutexattr_t()
        pthread_mutexattr_init(&attributes)
        // PTHREAD_MUTEX_ADAPTIVE_NP (3), which Swift's Glibc module does not name.
        pthread_mutexattr_settype(&attributes, 3)
        pthread_mutex_init(mutex, &attributes)
        pthread_mutexattr_destroy(&attributes)
    }

    deinit {
        pthread_mutex_destroy(mutex)
        mutex.deallocate()
    }

    /// Runs `body` with the value, holding the lock. Keep it short, and
    /// never call out to the caller's code or the network inside.
    func withLock<Result, Failure: Error>(_ body: (inout Value) throws(Failure) -> Result) throws(Failure) -> Result {
        pthread_mutex_lock(mutex)
        defer { pthread_mutex_unlock(mutex) }
        return try body(&value)
    }
}
