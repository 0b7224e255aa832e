extension TransportConfig {
    /// The request's full URL, its query percent-encoded.
    func url(for request: HTTPRequest) -> String {
        var url = baseURL + request.path
        for (index, item) in request.query.enumerated() {
            url += (index == 0 ? "?" : "&") + Validation.percentEncoded(item.name) + "=" + Validation.percentEncoded(item.value)
        }
        return url
    }
}

/// What the transport needs from the client's configuration.
struct TransportConfig: Sendable {
    var baseURL: String
    var timeoutMs: Int
    var connectTimeoutMs: Int
    var retry: RetryPolicy
    var userAgent: String
    var caFile: String?
    var proxy: String?
    var insecureSkipTlsVerify: Bool
}
