extension TransportConfig {
    /// The request's URL as logs show it: a whole URL given as the path (a
    /// token or regional settings endpoint) loses its query, which may hold
    /// a key (`?code=` of a function app).
    func loggedURL(for request: HTTPRequest) -> String {
        guard request.pathIsURL, let mark = request.path.firstIndex(of: "?") else { return url(for: request) }
        var trimmed = request
        trimmed.path = String(request.path[..<mark])
        return url(for: trimmed)
    }

    /// The request's full URL, its query percent-encoded.
    func url(for request: HTTPRequest) -> String {
        var url = request.pathIsURL ? request.path : baseURL + request.path
        for (index, item) in request.query.enumerated() {
            url += (index == 0 ? "?" : "&") + item.name.percentEncoded + "=" + item.value.percentEncoded
        }
        return url
    }
}

/// How a client's requests travel: where to, how long they may take, how
/// they are retried, and the TLS and proxy settings. Part of the client's
/// configuration, with the defaults of `config_json`.
struct TransportConfig: Sendable {
    var baseURL: String
    var timeoutMs = 30_000
    var connectTimeoutMs = 10_000
    var retry = RetryPolicy()
    var userAgent = "libdirectline/\(LibraryVersion.string)"
    /// `x-ms-bot-agent: ...`, on every request (the client's configuration
    /// makes it).
    var botAgentLine = "x-ms-bot-agent: DirectLine/3.0 (libdirectline \(LibraryVersion.string))"
    /// The caller's `headers`, as header lines, on every Direct Line request.
    var extraHeaderLines: [String] = []
    /// Text libcurl's trace (DL_LOG_DEBUG) must not show: the values of
    /// the caller's headers (gateway keys) and the queries of the token and
    /// regional settings endpoints (function keys).
    var traceSecrets: [String] = []
    var caFile: String?
    var proxy: String?
    var insecureSkipTlsVerify = false
}
