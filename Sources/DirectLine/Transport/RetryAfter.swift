#if canImport(Glibc)
import Glibc
#endif

/// Parses `Retry-After` (RFC 9110): delta-seconds or an HTTP-date.
enum RetryAfter {
    /// The delay in milliseconds, or nil for a value that is neither form
    /// (negative, fractional, empty, garbage). `now` is seconds since the epoch.
    static func milliseconds(_ value: String, now: Int) -> Int? {
        let trimmed = value.trimmingASCIIWhitespace
        guard !trimmed.isEmpty else { return nil }
        if trimmed.utf8.allSatisfy({ $0 >= UInt8(ascii: "0") && $0 <= UInt8(ascii: "9") }) {
            // Anything beyond a day is as good as "a very long time": clamp, never overflow.
            guard trimmed.utf8.count <= 9, let seconds = Int(trimmed) else { return 86_400_000 }
            return min(seconds, 86_400) * 1000
        }
        guard let date = httpDateSeconds(trimmed) else { return nil }
        return max(0, min(date - now, 86_400)) * 1000
    }

    /// IMF-fixdate, e.g. "Sun, 06 Nov 1994 08:49:37 GMT", as seconds since the epoch.
    static func httpDateSeconds(_ text: String) -> Int? {
        let fields = text.split(separator: " ")
        guard fields.count == 6, fields[0].count == 4, fields[0].hasSuffix(","), fields[5] == "GMT",
              let day = Int(fields[1]), fields[1].count == 2, (1...31).contains(day),
              let month = months.firstIndex(of: String(fields[2])),
              let year = Int(fields[3]), fields[3].count == 4, year >= 1970 else { return nil }
        let clock = fields[4].split(separator: ":", omittingEmptySubsequences: false)
        guard clock.count == 3, clock.allSatisfy({ $0.count == 2 }),
              let hour = Int(clock[0]), let minute = Int(clock[1]), let second = Int(clock[2]),
              hour < 24, minute < 60, second < 61 else { return nil }
        var parts = tm()
        parts.tm_year = Int32(year - 1900)
        parts.tm_mon = Int32(month)
        parts.tm_mday = Int32(day)
        parts.tm_hour = Int32(hour)
        parts.tm_min = Int32(minute)
        parts.tm_sec = Int32(second)
        return Int(timegm(&parts))
    }

    private static let months = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]
}

