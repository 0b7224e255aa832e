/// The final response to a request, after any automatic retries.
struct HTTPResponse: Sendable {
    var status: Int
    var body: [UInt8]
    /// How many times the request was sent (1 + automatic retries).
    var attempts: Int
    /// The service's `Retry-After`, in milliseconds, when a failure carried
    /// a valid one. The only header the library reads.
    var retryAfterMs: Int?

    init(status: Int, body: [UInt8], attempts: Int, retryAfterMs: Int? = nil) {
        self.status = status
        self.body = body
        self.attempts = attempts
        self.retryAfterMs = retryAfterMs
    }

    var isSuccess: Bool { (200..<300).contains(status) }
}
