#if canImport(Glibc)
import Glibc
#endif

/// Per-thread overrides of the client's timeouts (`dl_set_thread_timeouts`).
/// Both values live in the bits of one thread-specific pointer, so setting
/// and reading them allocates nothing.
enum ThreadTimeouts {
    private static let key = makeThreadKey()

    /// The calling thread's overrides; nil where the client's value applies.
    static var current: (total: Int?, connect: Int?) {
        guard let key else { return (nil, nil) }
        let bits = UInt(bitPattern: pthread_getspecific(key))
        let total = Int(bits >> 32)
        let connect = Int(bits & 0xFFFF_FFFF)
        return (total == 0 ? nil : total, connect == 0 ? nil : connect)
    }

    /// Values are 1...86_400_000 ms (checked by the caller); nil clears.
    static func set(total: Int?, connect: Int?) -> Bool {
        guard let key else { return false }
        let bits = UInt(total ?? 0) << 32 | UInt(connect ?? 0)
        return pthread_setspecific(key, UnsafeRawPointer(bitPattern: bits)) == 0
    }
}

/// The timeouts one request runs with.
struct Timeouts: Equatable {
    var total: Int
    var connect: Int
}
