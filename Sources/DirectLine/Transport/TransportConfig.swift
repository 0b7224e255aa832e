extension TransportConfig {
    /// The request's full URL, its query percent-encoded.
    func url(for request: HTTPRequest) -> String {
        var url = baseURL + request.path
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
    var caFile: String?
    var proxy: String?
    var insecureSkipTlsVerify = false
}
