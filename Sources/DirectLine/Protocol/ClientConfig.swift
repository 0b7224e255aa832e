/// A client's validated configuration (`config_json` of `dl_client_new`).
struct ClientConfig: Sendable {
    static let publicEndpoint = "https://directline.botframework.com"
    /// The service's upload limit per request (about 4 MB, per its maintainers).
    static let defaultMaxUploadBytes: Int64 = 4 * 1024 * 1024

    /// Kept out of core dumps and wiped when the client goes (`SecretText`).
    /// A struct, not an enum with a payload per case: such an enum keeps
    /// its case in the reference's spare bits, where a leak checker no
    /// longer sees a pointer (LeakSanitizer called the text leaked).
    struct Credential: Sendable {
        enum Kind: Sendable {
            case secret
            case token
        }

        let kind: Kind
        let text: SecretText

        static func secret(_ text: SecretText) -> Credential { Credential(kind: .secret, text: text) }
        static func token(_ text: SecretText) -> Credential { Credential(kind: .token, text: text) }

        var value: String { text.string }
        /// The client's secret, when that is what it holds.
        var secret: SecretText? { kind == .secret ? text : nil }
    }

    var endpoint: Endpoint
    var protocolVersion: ProtocolVersion = .v3
    var credential: Credential
    /// What the transport is configured with, parsed here once and handed
    /// to it as it is.
    var transport: TransportConfig
    var maxUploadBytes = defaultMaxUploadBytes

    static let knownKeys: Set<String> = [
        "endpoint", "protocol", "secret", "token", "timeoutMs", "connectTimeoutMs", "retry",
        "userAgent", "caFile", "proxy", "insecureSkipTlsVerify", "allowInsecureHttp", "maxUploadBytes",
    ]

    init(json: JSONValue) throws(DirectLineError) {
        let reader = try JSONReader(json, context: "config")
        try reader.rejectUnknownKeys(Self.knownKeys)

        let allowInsecureHttp = try reader.bool("allowInsecureHttp") ?? false
        endpoint = try Endpoint(parsing: reader.string("endpoint") ?? Self.publicEndpoint,
                                allowInsecureHttp: allowInsecureHttp)
        transport = TransportConfig(baseURL: endpoint.baseURL)

        if let version = try reader.string("protocol") {
            guard let parsed = ProtocolVersion(rawValue: version) else {
                throw .invalidArgument("config.protocol must be \"3.0\" or \"1.1\", not \"\(version)\"")
            }
            protocolVersion = parsed
        }

        switch (try reader.string("secret"), try reader.string("token")) {
        case let (secret?, nil):
            try Validation.singleLine(secret, name: "config.secret")
            credential = .secret(SecretText(secret))
        case let (nil, token?):
            try Validation.singleLine(token, name: "config.token")
            credential = .token(SecretText(token))
        case (nil, nil):
            throw .invalidArgument("config needs a \"secret\" or a \"token\"")
        case (_?, _?):
            throw .invalidArgument("config takes a \"secret\" or a \"token\", not both")
        }

        let day: Int64 = 86_400_000
        if let value = try reader.integer("timeoutMs", in: 1...day) { transport.timeoutMs = Int(value) }
        if let value = try reader.integer("connectTimeoutMs", in: 1...day) { transport.connectTimeoutMs = Int(value) }
        if let retryReader = try reader.object("retry") {
            try retryReader.rejectUnknownKeys(["maxAttempts", "baseDelayMs", "maxDelayMs"])
            if let value = try retryReader.integer("maxAttempts", in: 1...100) { transport.retry.maxAttempts = Int(value) }
            if let value = try retryReader.integer("baseDelayMs", in: 0...day) { transport.retry.baseDelayMs = Int(value) }
            if let value = try retryReader.integer("maxDelayMs", in: 0...day) { transport.retry.maxDelayMs = Int(value) }
        }
        if let value = try reader.string("userAgent") {
            try Validation.singleLine(value, name: "config.userAgent")
            transport.userAgent = value
        }
        if let value = try reader.string("caFile") {
            try Validation.singleLine(value, name: "config.caFile")
            transport.caFile = value
        }
        if let value = try reader.string("proxy") {
            try Validation.singleLine(value, name: "config.proxy")
            transport.proxy = value
        }
        if let proxy = transport.proxy {
            guard let isPrivate = Self.proxyIsPrivate(proxy) else {
                throw .invalidArgument("config.proxy is not a URL libcurl can use")
            }
            if endpoint.scheme == "http", !allowInsecureHttp, !isPrivate {
                throw .invalidArgument("config.proxy is another machine reached without TLS, so a plain http:// endpoint "
                                       + "would hand it the credential unencrypted; use https://, a loopback or https:// "
                                       + "proxy, or set \"allowInsecureHttp\": true")
            }
        }
        transport.insecureSkipTlsVerify = try reader.bool("insecureSkipTlsVerify") ?? false
        if let value = try reader.integer("maxUploadBytes", in: 1...(Int64(1) << 40)) { maxUploadBytes = value }
    }
}

extension ClientConfig {
    /// Whether what goes to `proxy` stays private: an https:// proxy, or
    /// one on this machine, as libcurl will read the setting; nil when
    /// libcurl cannot read it at all.
    static func proxyIsPrivate(_ proxy: String) -> Bool? {
        guard let parsed = ProxyURL(parsing: proxy) else { return nil }
        return parsed.scheme == "https" || Endpoint.isLoopback(parsed.host)
    }
}
