import Testing
@testable import DirectLine

@Suite("Retry-After and backoff")
struct RetryTests {
    @Test("Retry-After: seconds and HTTP dates; nonsense is ignored", arguments: [
        ("0", 0 as Int?), ("5", 5000), (" 7 ", 7000), ("99999999999", 86_400_000),
        ("Thu, 01 Jan 1970 00:00:30 GMT", 20_000), ("Thu, 01 Jan 1970 00:00:01 GMT", 0),
        ("-1", nil), ("1.0", nil), ("", nil), ("soon", nil), ("Thu, 01 Jan 1970 25:00:00 GMT", nil),
    ])
    func retryAfter(value: String, expected: Int?) {
        #expect(RetryAfter.milliseconds(value, now: 10) == expected)
    }

    @Test("backoff stays within its cap and honours Retry-After up to the cap")
    func backoff() {
        let policy = RetryPolicy(maxAttempts: 5, baseDelayMs: 100, maxDelayMs: 1000)
        for attempt in 1...40 {
            let delay = Backoff.delay(attempt: attempt, retryAfterMs: nil, policy: policy)
            #expect((0...min(1000, 100 << min(attempt - 1, 20))).contains(delay))
        }
        #expect(Backoff.delay(attempt: 1, retryAfterMs: 400, policy: policy) == 400)
        #expect(Backoff.delay(attempt: 1, retryAfterMs: 60_000, policy: policy) == 1000)
    }
}
