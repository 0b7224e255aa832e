import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// How much the log callback is told; each level includes the ones before
/// it. `dl_log_level` (CABI/CEnums.swift) is its C face, with the same values.
enum LogLevel: Int32, Sendable {
    case off = 0
    case error = 1
    case warn = 2
    case info = 3
    case debug = 4
}

/// The process-wide log callback. Logging costs one relaxed atomic load
/// per request when it is off.
enum Log {
    /// The installed callback and its level. The C boundary wraps the
    /// caller's function and userdata in `write`; the caller promises that
    /// function may be called from any thread (the header says so).
    struct Sink: @unchecked Sendable {
        let write: (LogLevel, String) -> Void
        let level: LogLevel
    }

    private static let threshold = Atomic<Int32>(0)
    private static let sink = CallbackSlot<Sink>()

    static func wants(_ level: LogLevel) -> Bool {
        threshold.load(ordering: .relaxed) >= level.rawValue
    }

    /// Installs (or with nil removes) the sink. Returns once no thread is
    /// still inside the previous one.
    static func install(_ next: Sink?) {
        sink.replace(with: next) {
            threshold.store(next?.level.rawValue ?? 0, ordering: .relaxed)
        }
    }

    /// Hands a message to the callback, redacted, when its level is wanted.
    static func emit(_ level: LogLevel, _ message: @autoclosure () -> String) {
        guard wants(level), let pinned = sink.pin(if: { $0.level.rawValue >= level.rawValue }) else { return }
        defer { pinned.unpin() }
        let text = redact(message())
        let current = pinned.callback
        CallbackGuard.run { current.write(level, text) }
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
