import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// How much `dl_set_log_callback` reports. Each level includes the ones
/// above it.
@c public enum dl_log_level: Int32, Sendable {
    /// Logging off (the default).
    case DL_LOG_OFF = 0
    /// Calls that failed: transport failures, refreshes that stopped.
    case DL_LOG_ERROR = 1
    /// Retries and their delays, refreshes that will be tried again.
    case DL_LOG_WARN = 2
    /// One line per HTTP request: method, URL, status, time, sizes, attempt.
    case DL_LOG_INFO = 3
    /// libcurl's own trace of each transfer: connections, request and
    /// response headers (never bodies). `Authorization` values and `t=`
    /// query values are replaced with `[redacted]`.
    case DL_LOG_DEBUG = 4
}

/// The process-wide log callback. Logging costs one relaxed atomic load
/// per request when it is off.
enum Log {
    typealias Function = @convention(c) (UnsafeMutableRawPointer?, Int32, UnsafePointer<CChar>?) -> Void

    /// The installed callback, its userdata and its level.
    struct Sink: @unchecked Sendable {
        let function: Function
        let userdata: UnsafeMutableRawPointer?
        let level: Int32
    }

    private static let threshold = Atomic<Int32>(0)
    private static let sink = CallbackSlot<Sink>()

    static func wants(_ level: dl_log_level) -> Bool {
        threshold.load(ordering: .relaxed) >= level.rawValue
    }

    /// Installs (or with nil removes) the callback. Returns once no thread
    /// is still inside the previous one.
    static func install(_ function: Function?, userdata: UnsafeMutableRawPointer?, level: dl_log_level) {
        let next = function.map { Sink(function: $0, userdata: userdata, level: level.rawValue) }
        sink.replace(with: next) {
            threshold.store(next?.level ?? 0, ordering: .relaxed)
        }
    }

    /// Hands a message to the callback, redacted, when its level is wanted.
    static func emit(_ level: dl_log_level, _ message: @autoclosure () -> String) {
        guard wants(level), let pinned = sink.pin(if: { $0.level >= level.rawValue }) else { return }
        defer { pinned.unpin() }
        let text = redact(message())
        let current = pinned.callback
        CallbackGuard.run {
            text.withCString { current.function(current.userdata, level.rawValue, $0) }
        }
    }

    /// Removes credentials from a log line: the value of any Authorization
    /// header and of any `t=` query parameter (the token in a stream URL).
    static func redact(_ line: String) -> String {
        var bytes = Array(line.utf8)
        var changed = false
        if let range = authorizationValue(in: bytes) {
            bytes.replaceSubrange(range, with: Array("[redacted]".utf8))
            changed = true
        }
        var index = 0
        while index + 1 < bytes.count {
            let startsParameter = bytes[index] == UInt8(ascii: "t") && bytes[index + 1] == UInt8(ascii: "=")
                && (index == 0 || bytes[index - 1] == UInt8(ascii: "?") || bytes[index - 1] == UInt8(ascii: "&"))
            if startsParameter {
                var end = index + 2
                while end < bytes.count, !isParameterEnd(bytes[end]) { end += 1 }
                bytes.replaceSubrange((index + 2)..<end, with: Array("[redacted]".utf8))
                changed = true
                index += 12
            } else {
                index += 1
            }
        }
        return changed ? String(decoding: bytes, as: UTF8.self) : line
    }

    private static func isParameterEnd(_ byte: UInt8) -> Bool {
        byte == UInt8(ascii: "&") || byte == UInt8(ascii: "#") || byte == UInt8(ascii: " ")
            || byte == UInt8(ascii: "\"") || byte < 0x20
    }

    /// The value of an `Authorization:` header anywhere in the text, up to
    /// the end of its line.
    private static func authorizationValue(in bytes: [UInt8]) -> Range<Int>? {
        let name = Array("authorization:".utf8)
        guard bytes.count >= name.count else { return nil }
        for start in 0...(bytes.count - name.count) {
            var matches = true
            for offset in 0..<name.count where bytes[start + offset] | 0x20 != name[offset] | 0x20 {
                matches = false
                break
            }
            guard matches else { continue }
            var valueStart = start + name.count
            while valueStart < bytes.count, bytes[valueStart] == 0x20 { valueStart += 1 }
            var end = valueStart
            while end < bytes.count, bytes[end] != 0x0D, bytes[end] != 0x0A { end += 1 }
            return valueStart..<end
        }
        return nil
    }

    static func elapsed(since startNs: UInt64) -> String {
        let micros = (Clock.monotonicNs() &- startNs) / 1000
        return "\(micros / 1000).\(String(micros % 1000 / 100)) ms"
    }
}

/// Per-thread overrides of the client's timeouts (`dl_set_thread_timeouts`).
/// Both values live in the bits of one thread-specific pointer, so setting
/// and reading them allocates nothing.
enum ThreadTimeouts {
    private static let key = makeThreadKey()

    /// The calling thread's overrides; nil where the client's value applies.
    static var current: (total: Int?, connect: Int?) {
        guard let key else { return (nil, nil) }
        let bits = UInt(bitPattern: pthread_getspecific(key))
        let total = Int(bits >> 32), connect = Int(bits & 0xFFFF_FFFF)
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

extension dl_log_level {
    static var error: dl_log_level { .DL_LOG_ERROR }
    static var warn: dl_log_level { .DL_LOG_WARN }
    static var info: dl_log_level { .DL_LOG_INFO }
    static var debug: dl_log_level { .DL_LOG_DEBUG }
}
