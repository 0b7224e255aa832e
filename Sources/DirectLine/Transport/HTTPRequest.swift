/// One HTTP request as the protocol layer describes it; the transport adds
/// the endpoint, credentials and transport options.
struct HTTPRequest: Sendable {
    enum Method: String, Sendable {
        case get = "GET"
        case post = "POST"
    }

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
