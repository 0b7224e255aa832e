/// One HTTP request as the protocol layer describes it; the transport adds
/// the endpoint, credentials and transport options.
struct HTTPRequest: Sendable {
    enum Method: String, Sendable { case get = "GET", post = "POST" }

    var method: Method
    /// The path below the endpoint, with every dynamic segment already percent-encoded.
    var path: String
    /// Query parameters, encoded by the transport.
    var query: [(name: String, value: String)] = []
    var contentType: String?
    /// Further headers, already validated (no CR, LF or NUL).
    var headers: [(name: String, value: String)] = []
    var body = RequestBody()
    /// The credential to send in `Authorization: Bearer`.
    var bearer: String
    /// Told as the body goes out; may cancel the transfer.
    var progress: ProgressReporter?
}

/// The caller's progress callback: `report(done, total)` is called as body
/// bytes go out and returns false to cancel the transfer.
struct ProgressReporter: @unchecked Sendable {
    let report: (UInt64, UInt64) -> Bool
}

/// The final response to a request, after any automatic retries.
struct HTTPResponse: Sendable {
    var status: Int
    var headers: [(name: String, value: String)]
    var body: [UInt8]
    /// How many times the request was sent (1 + automatic retries).
    var attempts: Int

    /// The value of a header, matched case-insensitively; the last one wins.
    func header(_ name: String) -> String? {
        let lowered = name.lowercased()
        return headers.last { $0.name.lowercased() == lowered }?.value
    }

    var isSuccess: Bool { (200..<300).contains(status) }

    /// The service's `Retry-After` in milliseconds, when it sent a valid one.
    var retryAfterMs: Int? {
        header("Retry-After").flatMap { RetryAfter.milliseconds($0, now: Clock.now()) }
    }
}
