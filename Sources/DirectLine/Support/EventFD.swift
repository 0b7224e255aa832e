#if canImport(Glibc)
import Glibc
#endif

/// eventfd(2), which Swift's Glibc module does not import (it leaves
/// <sys/eventfd.h> out): two 32-bit integers in, one out, so the C and
/// Swift calling conventions agree. `EFD_CLOEXEC` and `EFD_NONBLOCK` are
/// `O_CLOEXEC` and `O_NONBLOCK` by definition.
@_silgen_name("eventfd")
private func systemEventFD(_ initialValue: UInt32, _ flags: Int32) -> Int32

/// A Linux eventfd used as a level-triggered flag: readable while raised.
///
/// Made close-on-exec and non-blocking. The owner raises and lowers it
/// under its own lock (`raise` and `lower` are not atomic together); any
/// thread may wait on it with `poll` meanwhile. Closed when released.
final class EventFD: @unchecked Sendable {
    let descriptor: Int32

    /// A new eventfd, or the reason (errno's text) it could not be made.
    static func make() -> Result<EventFD, DirectLineError> {
        let made = systemEventFD(0, O_CLOEXEC | O_NONBLOCK)
        guard made >= 0 else {
            let reason = String(cString: strerror(errno))
            return .failure(DirectLineError(.io, "an eventfd could not be made: \(reason)"))
        }
        return .success(EventFD(descriptor: made))
    }

    private init(descriptor: Int32) {
        self.descriptor = descriptor
    }

    deinit {
        close(descriptor)
    }

    /// Makes it readable (a counter above zero stays readable).
    func raise() {
        var one: UInt64 = 1
        // EAGAIN only at a counter of 2^64 - 2, which one raise per lower
        // never comes near; EINTR cannot happen on a non-blocking eventfd.
        _ = write(descriptor, &one, 8)
    }

    /// Makes it unreadable again: reading resets the counter to zero.
    func lower() {
        var count: UInt64 = 0
        _ = read(descriptor, &count, 8)
    }

    /// Waits until one of `descriptors` is readable or `timeoutMs` passes
    /// (-1: no limit); true when one is readable. Restarts after signals
    /// with the time left.
    static func waitReadable(_ descriptors: [Int32], timeoutMs: Int) -> Bool {
        var entries = descriptors.map { pollfd(fd: $0, events: Int16(POLLIN), revents: 0) }
        let deadline = timeoutMs < 0 ? nil : Clock.monotonicMs() + timeoutMs
        while true {
            let left = deadline.map { max(0, $0 - Clock.monotonicMs()) } ?? -1
            let ready = poll(&entries, nfds_t(entries.count), Int32(clamping: left))
            if ready > 0 { return true }
            if ready == 0 { return false }
            guard errno == EINTR else {
                // Never spin on a failing poll.
                sleepMilliseconds(10)
                return false
            }
        }
    }
}
