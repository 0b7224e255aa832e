#if canImport(Glibc)
import Glibc
#endif

/// Marks the threads that are running one of the caller's callbacks, so
/// that a call back into the library is refused instead of deadlocking.
enum CallbackGuard {
    private static let key = makeThreadKey()

    static var isInsideCallback: Bool {
        guard let key else { return false }
        return pthread_getspecific(key) != nil
    }

    /// Runs a caller's callback with re-entry refused on this thread.
    static func run<T>(_ callback: () -> T) -> T {
        guard let key else { return callback() }
        let previous = pthread_getspecific(key)
        pthread_setspecific(key, UnsafeRawPointer(bitPattern: 1))
        defer { pthread_setspecific(key, previous) }
        return callback()
    }
}
