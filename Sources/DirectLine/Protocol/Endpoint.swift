/// An http:// or https:// URL the client talks to: the service's base URL
/// (scheme, authority and an optional path prefix), or a token or regional
/// settings endpoint, which may also carry a query (`?api-version=...`).
struct Endpoint: Sendable, Equatable {
    var scheme: String
    var authority: String
    var host: String
    var pathPrefix: String
    /// The text after `?`, for the endpoints that allow one; never for the service's base URL.
    var query: String?

    var baseURL: String { "\(scheme)://\(authority)\(pathPrefix)" }
    /// The whole URL, query included.
    var url: String { query.map { "\(baseURL)?\($0)" } ?? baseURL }

    /// Scheme, host and port, the port spelled out: what decides whether
    /// two URLs are the same origin (RFC 6454).
    var origin: String {
        var port = scheme == "https" ? "443" : "80"
        if !authority.hasSuffix("]"), let colon = authority.lastIndex(of: ":"), colon != authority.indices.last {
            port = String(authority[authority.index(after: colon)...])
        }
        return "\(scheme)://\(host):\(port)"
    }

    /// `name` is the config key the text came from (for the errors);
    /// `allowQuery` lets the URL keep a query, which is then kept as written.
    init(parsing text: String, allowInsecureHttp: Bool, name: String = "config.endpoint",
         allowQuery: Bool = false) throws(DirectLineError) {
        let bad = { (why: String) -> DirectLineError in .invalidArgument("\(name) \(why)") }
        guard !text.unicodeScalars.contains(where: { Validation.isControl($0) || $0 == " " }) else {
            throw bad("contains a space or control character")
        }
        let parts = text.split(separator: "://", maxSplits: 1, omittingEmptySubsequences: false)
        guard parts.count == 2 else { throw bad("must be an http:// or https:// URL") }
        scheme = parts[0].lowercased()
        guard scheme == "https" || scheme == "http" else { throw bad("must be an http:// or https:// URL") }
        var rest = parts[1]
        guard !rest.contains("#") else { throw bad(allowQuery ? "must not have a fragment" : "must not have a query or fragment") }
        if let mark = rest.firstIndex(of: "?") {
            guard allowQuery else { throw bad("must not have a query or fragment") }
            query = String(rest[rest.index(after: mark)...])
            rest = rest[..<mark]
        }
        let slash = rest.firstIndex(of: "/") ?? rest.endIndex
        authority = String(rest[..<slash])
        var prefix = String(rest[slash...])
        // The service's base URL gets paths appended; any other URL is used as written.
        if !allowQuery {
            while prefix.hasSuffix("/") { prefix.removeLast() }
        }
        pathPrefix = prefix
        guard !authority.isEmpty else { throw bad("has no host") }
        guard !authority.contains("@") else { throw bad("must not carry user credentials") }
        host = Self.host(ofAuthority: authority).lowercased()
        guard !host.isEmpty else { throw bad("has no host") }
        if scheme == "http" && !Self.isLoopback(host) && !allowInsecureHttp {
            throw bad("uses plain http:// to a host that is not loopback; use https:// or set \"allowInsecureHttp\": true")
        }
    }

    static func host(ofAuthority authority: String) -> String {
        if authority.hasPrefix("[") {
            guard let close = authority.firstIndex(of: "]") else { return "" }
            return String(authority[...close])
        }
        return String(authority.split(separator: ":", maxSplits: 1, omittingEmptySubsequences: false).first ?? "")
    }

    static func isLoopback(_ host: String) -> Bool {
        if host == "localhost" || host == "[::1]" { return true }
        let octets = host.split(separator: ".", omittingEmptySubsequences: false)
        return octets.count == 4 && octets[0] == "127" && octets.allSatisfy { UInt8($0) != nil }
    }
}
