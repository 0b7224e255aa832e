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
    /// The credential to send in `Authorization: Bearer`; none when empty.
    var bearer: String
    /// Whether an answer proves the request was refused unprocessed, so it
    /// may be sent again; nil: `refusedByDefault`.
    var isRefusal: (@Sendable (HTTPResponse) -> Bool)?
    /// Told as the body goes out; may cancel the transfer.
    var progress: ProgressReporter?
    /// When the call this request serves must end (monotonic ms): the
    /// request gets the time left, and is not tried again past it.
    var deadlineMs: Int?
    /// Raised when the request must stop (its handle was freed): the
    /// transfer in flight is woken and aborted at once.
    var cancellation: Cancellation?
    /// `path` is a whole URL (a token or regional settings endpoint, or the
    /// service at the host its regional settings named), not a path below
    /// the endpoint.
    var pathIsURL = false
    /// Whether the client's own `headers` go with it: every Direct Line
    /// request, and another URL only on the same origin as the service.
    var carriesClientHeaders = true

    /// A GET changes nothing, so any 429 or 503 may be retried; a POST only
    /// on 429, unless the request says more (an intermediary's 503 may come
    /// after it forwarded the request).
    func refusedByDefault(_ response: HTTPResponse) -> Bool {
        response.status == 429 || (response.status == 503 && method == .get)
    }
}

/// The caller's progress callback: `report(done, total)` is called as body
/// bytes go out and returns false to cancel the transfer.
struct ProgressReporter: @unchecked Sendable {
    let report: (UInt64, UInt64) -> Bool
}
