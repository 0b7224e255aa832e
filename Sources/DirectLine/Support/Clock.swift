#if canImport(Glibc)
import Glibc
#endif

/// The clocks the library reads: wall time for what callers see, a
/// monotonic clock for deadlines.
enum Clock {
    /// Seconds since the epoch.
    static func now() -> Int { Int(time(nil)) }

    /// Milliseconds on a clock that never jumps (for deadlines and token lifetimes).
    static func monotonicMs() -> Int {
        var now = timespec()
        clock_gettime(CLOCK_MONOTONIC, &now)
        return Int(now.tv_sec) * 1000 + Int(now.tv_nsec) / 1_000_000
    }

    /// Nanoseconds on the same clock (for log lines' timings).
    static func monotonicNs() -> UInt64 {
        var now = timespec()
        clock_gettime(CLOCK_MONOTONIC, &now)
        return UInt64(now.tv_sec) * 1_000_000_000 + UInt64(now.tv_nsec)
    }
}

/// Sleeps the calling thread, resuming after signals until the time has passed.
func sleepMilliseconds(_ milliseconds: Int) {
    guard milliseconds > 0 else { return }
    var request = timespec(tv_sec: milliseconds / 1000, tv_nsec: (milliseconds % 1000) * 1_000_000)
    var remaining = timespec()
    while nanosleep(&request, &remaining) != 0 && errno == EINTR { request = remaining }
}
