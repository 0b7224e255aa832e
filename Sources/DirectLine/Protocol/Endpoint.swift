/// The service's base URL: scheme, authority and an optional path prefix.
struct Endpoint: Sendable, Equatable {
    var scheme: String
    var authority: String
    var host: String
    var pathPrefix: String

    var baseURL: String { "\(scheme)://\(authority)\(pathPrefix)" }

    init(parsing text: String, allowInsecureHttp: Bool) throws(DirectLineError) {
        let bad = { (why: String) -> DirectLineError in .invalidArgument("config.endpoint \(why)") }
        guard !text.unicodeScalars.contains(where: { Validation.isControl($0) || $0 == " " }) else {
            throw bad("contains a space or control character")
        }
        let parts = text.split(separator: "://", maxSplits: 1, omittingEmptySubsequences: false)
        guard parts.count == 2 else { throw bad("must be an http:// or https:// URL") }
        scheme = parts[0].lowercased()
        guard scheme == "https" || scheme == "http" else { throw bad("must be an http:// or https:// URL") }
        let rest = parts[1]
        guard !rest.contains("?"), !rest.contains("#") else { throw bad("must not have a query or fragment") }
        let slash = rest.firstIndex(of: "/") ?? rest.endIndex
        authority = String(rest[..<slash])
        var prefix = String(rest[slash...])
        while prefix.hasSuffix("/") { prefix.removeLast() }
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
