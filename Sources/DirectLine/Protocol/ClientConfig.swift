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
            /// Tokens come from `tokenEndpoint`, one for each start or generate.
            case tokenEndpoint
        }

        let kind: Kind
        /// nil for a token endpoint: the client then holds no credential.
        let text: SecretText?

        static func secret(_ text: SecretText) -> Credential { Credential(kind: .secret, text: text) }
        static func token(_ text: SecretText) -> Credential { Credential(kind: .token, text: text) }
        static let tokenEndpoint = Credential(kind: .tokenEndpoint, text: nil)

        /// The secret or token; empty for a token endpoint (never sent: the
        /// calls that would send it fetch a token first, or refuse).
        var value: String { text?.string ?? "" }
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
    /// Where tokens come from (`tokenEndpoint`), when that is the credential.
    var tokenEndpoint: Endpoint?
    /// Where the Direct Line host is read from (`regionalSettingsEndpoint`,
    /// or derived from a Copilot Studio token endpoint), when it is not
    /// `endpoint`.
    var regionalSettings: Endpoint?
    var allowInsecureHttp = false

    static let knownKeys: Set<String> = [
        "endpoint", "protocol", "secret", "token", "tokenEndpoint", "regionalSettingsEndpoint", "timeoutMs",
        "connectTimeoutMs", "retry", "userAgent", "botAgent", "headers", "caFile", "proxy", "insecureSkipTlsVerify",
        "allowInsecureHttp", "maxUploadBytes",
    ]

    /// The path segment that marks a Copilot Studio (Power Virtual Agents) URL.
    static let copilotStudioSegment = "/powervirtualagents/"

    init(json: JSONValue) throws(DirectLineError) {
        let reader = try JSONReader(json, context: "config")
        try reader.rejectUnknownKeys(Self.knownKeys)

        allowInsecureHttp = try reader.bool("allowInsecureHttp") ?? false
        let givenEndpoint = try reader.string("endpoint")
        endpoint = try Endpoint(parsing: givenEndpoint ?? Self.publicEndpoint, allowInsecureHttp: allowInsecureHttp)
        transport = TransportConfig(baseURL: endpoint.baseURL)

        if let version = try reader.string("protocol") {
            guard let parsed = ProtocolVersion(rawValue: version) else {
                throw .invalidArgument("config.protocol must be \"3.0\" or \"1.1\", not \"\(version)\"")
            }
            protocolVersion = parsed
        }

        let secret = try reader.string("secret")
        let token = try reader.string("token")
        let tokenURL = try reader.string("tokenEndpoint")
        guard [secret, token, tokenURL].compactMap({ $0 }).count == 1 else {
            throw .invalidArgument("config needs exactly one of \"secret\", \"token\" and \"tokenEndpoint\"")
        }
        if let secret {
            try Validation.singleLine(secret, name: "config.secret")
            credential = .secret(SecretText(secret))
        } else if let token {
            try Validation.singleLine(token, name: "config.token")
            credential = .token(SecretText(token))
        } else {
            let parsed = try Endpoint(parsing: tokenURL ?? "", allowInsecureHttp: allowInsecureHttp,
                                      name: "config.tokenEndpoint", allowQuery: true)
            tokenEndpoint = parsed
            credential = .tokenEndpoint
        }
        if let regional = try reader.string("regionalSettingsEndpoint") {
            guard givenEndpoint == nil else {
                throw .invalidArgument("config takes \"endpoint\" or \"regionalSettingsEndpoint\", not both: "
                                       + "the regional settings name the endpoint")
            }
            regionalSettings = try Endpoint(parsing: regional, allowInsecureHttp: allowInsecureHttp,
                                            name: "config.regionalSettingsEndpoint", allowQuery: true)
        } else if givenEndpoint == nil, let tokenEndpoint {
            regionalSettings = Self.regionalSettings(derivedFrom: tokenEndpoint)
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
        let botAgent = try reader.string("botAgent")
        if let botAgent { try ClientHeaders.checkBotAgent(botAgent) }
        transport.botAgentLine = ClientHeaders.botAgentLine(version: protocolVersion, botAgent: botAgent)
        if let headers = try reader.object("headers") {
            transport.extraHeaderLines = try ClientHeaders.lines(headers)
            transport.traceSecrets = headers.object.members.compactMap { $0.value.stringValue }
        }
        transport.traceSecrets += [tokenEndpoint?.query, regionalSettings?.query].compactMap { $0 }
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
            let plain = [endpoint, tokenEndpoint, regionalSettings].contains { $0?.scheme == "http" }
            if plain, !allowInsecureHttp, !isPrivate {
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
    /// Copilot Studio's regional settings URL for one of its token URLs, as
    /// Microsoft's samples make it: what comes before `/powervirtualagents/`,
    /// then `/powervirtualagents/regionalchannelsettings`, with the token
    /// URL's `api-version`. nil for a token endpoint of any other kind.
    static func regionalSettings(derivedFrom tokenEndpoint: Endpoint) -> Endpoint? {
        guard let cut = tokenEndpoint.pathPrefix.firstRange(of: copilotStudioSegment) else { return nil }
        var derived = tokenEndpoint
        derived.pathPrefix = String(tokenEndpoint.pathPrefix[..<cut.lowerBound]) + copilotStudioSegment
            + "regionalchannelsettings"
        let version = (tokenEndpoint.query ?? "").split(separator: "&").first { $0.hasPrefix("api-version=") }
        derived.query = version.map(String.init)
        return derived
    }

    /// Whether what goes to `proxy` stays private: an https:// proxy, or
    /// one on this machine, as libcurl will read the setting; nil when
    /// libcurl cannot read it at all.
    static func proxyIsPrivate(_ proxy: String) -> Bool? {
        guard let parsed = ProxyURL(parsing: proxy) else { return nil }
        return parsed.scheme == "https" || Endpoint.isLoopback(parsed.host)
    }
}
