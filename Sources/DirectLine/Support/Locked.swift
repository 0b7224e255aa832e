import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// A value guarded by a pthread mutex of glibc's adaptive kind (a short
/// spin, then a plain futex wait).
///
/// Used instead of `Synchronization.Mutex`, which on Linux is built on
/// priority-inheritance futexes: there every contended hand-over goes
/// through the kernel and no thread spins, which serialises threads that
/// share a conversation (the measurements are in docs/performance.md).
final class Locked<Value>: @unchecked Sendable {
    /// The value lives behind a pointer rather than in a stored property:
    /// the mutex already makes access exclusive, and a property would add
    /// Swift's dynamic exclusivity check to every critical section.
    private let value: UnsafeMutablePointer<Value>
    private let mutex: UnsafeMutablePointer<pthread_mutex_t>

    init(_ value: Value) {
        self.value = .allocate(capacity: 1)
        self.value.initialize(to: value)
        mutex = .allocate(capacity: 1)
        Self.initialize(mutex)
        LockRegistry.add(mutex)
    }

    /// Makes `mutex` a fresh, unlocked adaptive mutex.
    static func initialize(_ mutex: UnsafeMutablePointer<pthread_mutex_t>) {
        var attributes = pthread_mutexattr_t()
        pthread_mutexattr_init(&attributes)
        // PTHREAD_MUTEX_ADAPTIVE_NP (3), which Swift's Glibc module does not name.
        pthread_mutexattr_settype(&attributes, 3)
        pthread_mutex_init(mutex, &attributes)
        pthread_mutexattr_destroy(&attributes)
    }

    deinit {
        LockRegistry.remove(mutex)
        pthread_mutex_destroy(mutex)
        mutex.deallocate()
        value.deinitialize(count: 1)
        value.deallocate()
    }

    /// Runs `body` with the value, holding the lock. Keep it short, and
    /// never call out to the caller's code or the network inside.
    func withLock<Result, Failure: Error>(_ body: (inout Value) throws(Failure) -> Result) throws(Failure) -> Result {
        pthread_mutex_lock(mutex)
        defer { pthread_mutex_unlock(mutex) }
        return try body(&value.pointee)
    }
}

/// A value guarded by a pthread reader-writer lock: many readers at once,
/// or one writer.
final class ReadWriteLocked<Value>: @unchecked Sendable {
    private let lock: UnsafeMutablePointer<pthread_rwlock_t>
    /// Behind a pointer, as in `Locked`: the lock makes access exclusive,
    /// and a stored property would add a dynamic exclusivity check.
    private let value: UnsafeMutablePointer<Value>

    init(_ value: Value) {
        self.value = .allocate(capacity: 1)
        self.value.initialize(to: value)
        lock = .allocate(capacity: 1)
        lock.initialize(to: pthread_rwlock_t())
        pthread_rwlock_init(lock, nil)
    }

    deinit {
        pthread_rwlock_destroy(lock)
        lock.deallocate()
        value.deinitialize(count: 1)
        value.deallocate()
    }

    /// Makes a fork() wait until no thread holds the lock, and gives the
    /// child a fresh one. For values that live as long as the process: the
    /// handlers keep this object alive.
    func guardAcrossFork() {
        ForkSafety.register(ForkSafety.Handlers(
            prepare: { pthread_rwlock_wrlock(self.lock) },
            parent: { pthread_rwlock_unlock(self.lock) },
            child: { pthread_rwlock_init(self.lock, nil) }))
    }

    func read<T>(_ body: (Value) -> T) -> T {
        pthread_rwlock_rdlock(lock)
        defer { pthread_rwlock_unlock(lock) }
        return body(value.pointee)
    }

    func write<T>(_ body: (inout Value) -> T) -> T {
        pthread_rwlock_wrlock(lock)
        defer { pthread_rwlock_unlock(lock) }
        return body(&value.pointee)
    }
}
