import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// What the library does around a fork(), so that a child (a pre-fork
/// server's worker, a `multiprocessing` process) gets a library that works:
/// no lock inherited held, no connection shared with the parent, refreshes
/// running again, ids of its own.
///
/// One `pthread_atfork` triple runs the handlers each part of the library
/// registers for itself, in registration order (prepare in reverse).
/// Handlers must not allocate in `child` beyond what a single-threaded
/// process may do (the child is single-threaded; the parent's other
/// threads are gone).
enum ForkSafety {
    struct Handlers {
        var prepare: () -> Void = {}
        var parent: () -> Void = {}
        var child: () -> Void = {}
    }

    private nonisolated(unsafe) static var handlers: [Handlers] = []
    nonisolated(unsafe) private static let registry: UnsafeMutablePointer<pthread_mutex_t> = {
        let mutex = UnsafeMutablePointer<pthread_mutex_t>.allocate(capacity: 1)
        pthread_mutex_init(mutex, nil)
        pthread_atfork({ ForkSafety.prepare() }, { ForkSafety.parent() }, { ForkSafety.child() })
        return mutex
    }()

    /// Adds handlers; they run at every later fork().
    static func register(_ new: Handlers) {
        pthread_mutex_lock(registry)
        handlers.append(new)
        pthread_mutex_unlock(registry)
    }

    /// A fresh pthread mutex, for `guardAcrossFork`. Lives as long as the process.
    static func newMutex() -> UnsafeMutablePointer<pthread_mutex_t> {
        let mutex = UnsafeMutablePointer<pthread_mutex_t>.allocate(capacity: 1)
        mutex.initialize(to: pthread_mutex_t())
        pthread_mutex_init(mutex, nil)
        return mutex
    }

    /// Makes fork() never leave `mutex` held: a fork waits until no thread
    /// holds it, the parent then goes on, and the child gets it afresh and
    /// calls `child` to set the state it guards right.
    static func guardAcrossFork(_ mutex: UnsafeMutablePointer<pthread_mutex_t>, child: @escaping () -> Void) {
        register(Handlers(prepare: { pthread_mutex_lock(mutex) },
                          parent: { pthread_mutex_unlock(mutex) },
                          child: {
                              pthread_mutex_init(mutex, nil)
                              child()
                          }))
    }

    /// Returns once no fork's handlers are running. A thread that a child
    /// handler starts calls it first, so that it runs only after every part
    /// of the library has set itself up again in the child.
    static func waitForHandlers() {
        pthread_mutex_lock(registry)
        pthread_mutex_unlock(registry)
    }

    // The registry's lock is held from prepare to parent/child, so the
    // list cannot change under a fork.
    private static func prepare() {
        pthread_mutex_lock(registry)
        for handler in handlers.reversed() { handler.prepare() }
    }

    private static func parent() {
        for handler in handlers { handler.parent() }
        pthread_mutex_unlock(registry)
    }

    private static func child() {
        for handler in handlers { handler.child() }
        pthread_mutex_unlock(registry)
    }
}

/// Every `Locked` mutex alive, so that a forked child can re-initialise
/// them: a lock another thread held at the fork would otherwise stay held
/// for ever in the child, where that thread does not exist.
enum LockRegistry {
    private nonisolated(unsafe) static var mutexes = Set<UnsafeMutablePointer<pthread_mutex_t>>()
    nonisolated(unsafe) private static let lock: UnsafeMutablePointer<pthread_mutex_t> = {
        let mutex = UnsafeMutablePointer<pthread_mutex_t>.allocate(capacity: 1)
        pthread_mutex_init(mutex, nil)
        ForkSafety.register(ForkSafety.Handlers(
            prepare: { pthread_mutex_lock(mutex) },
            parent: { pthread_mutex_unlock(mutex) },
            child: {
                for registered in LockRegistry.mutexes { Locked<Void>.initialize(registered) }
                pthread_mutex_init(mutex, nil)
            }))
        return mutex
    }()

    static func add(_ mutex: UnsafeMutablePointer<pthread_mutex_t>) {
        pthread_mutex_lock(lock)
        mutexes.insert(mutex)
        pthread_mutex_unlock(lock)
    }

    static func remove(_ mutex: UnsafeMutablePointer<pthread_mutex_t>) {
        pthread_mutex_lock(lock)
        mutexes.remove(mutex)
        pthread_mutex_unlock(lock)
    }
}

/// Counts the forks this process descends from, so that what was made or
/// counted before a fork() (easy handles and their connections, callback
/// users) is told apart in the child.
enum ProcessGeneration {
    private static let counter = Atomic(0)

    static var current: Int {
        _ = armed
        return counter.load(ordering: .relaxed)
    }

    private static let armed: Void = ForkSafety.register(ForkSafety.Handlers(child: {
        ProcessGeneration.counter.wrappingAdd(1, ordering: .relaxed)
    }))
}
