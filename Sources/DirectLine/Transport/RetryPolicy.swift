/// How often and how patiently requests that provably did not reach the
/// service are tried again (connect failures, 429, 503).
struct RetryPolicy: Sendable, Equatable {
    var maxAttempts = 4
    var baseDelayMs = 200
    var maxDelayMs = 10_000
}

/// How long to wait before the next attempt.
enum Backoff {
    /// Retry-After when the service gave one (capped), else capped
    /// exponential backoff with full jitter.
    static func delay(attempt: Int, retryAfterMs: Int?, policy: RetryPolicy) -> Int {
        if let retryAfterMs { return min(retryAfterMs, policy.maxDelayMs) }
        let exponent = min(attempt - 1, 20)
        let ceiling = min(policy.baseDelayMs.multipliedReportingOverflow(by: 1 << exponent).partialValue, policy.maxDelayMs)
        guard ceiling > 0 else { return 0 }
        return Int.random(in: 0...ceiling)
    }
}
