#if canImport(Glibc)
import Glibc
#endif

/// A configured Direct Line client: endpoint, credential and transport.
/// Immutable after creation, so any number of threads may share it.
final class DirectLineClient: Sendable {
    let config: ClientConfig
    let requests: DirectLineRequests
    let transport: CurlTransport
    /// The conversations handed out from this client (held weakly).
    let conversations = ConversationRegistry()

    /// The Direct Line host the regional settings named, once read.
    let regionalEndpoint = Locked<Endpoint?>(nil)

    init(config: ClientConfig) {
        self.config = config
        requests = DirectLineRequests(version: config.protocolVersion)
        transport = CurlTransport(config: config.transport)
    }

    var version: ProtocolVersion { config.protocolVersion }

    /// Sends a request and returns a success response; any other status
    /// becomes the matching error. Every failure passes one redaction, of
    /// the client's credential and the request's token, on its way out.
    func execute(_ request: HTTPRequest, reaching recipient: Recipient) throws(DirectLineError) -> HTTPResponse {
        do throws(DirectLineError) {
            let request = goesToRegionalHost(request) ? located(request, at: try serviceEndpoint(for: request)) : request
            return try accepted(try transport.send(request), reaching: recipient)
        } catch {
            throw error.redacting([config.credential.value, request.bearer])
        }
    }

    /// `execute` on the transfer loop, for the automatic token refresh: one
    /// attempt (the caller decides when to try again), by the same rules,
    /// answered on the loop's thread.
    func start(_ original: HTTPRequest, reaching recipient: Recipient,
               completion: @escaping @Sendable (Result<HTTPResponse, DirectLineError>) -> Void) {
        guard goesToRegionalHost(original) else {
            return startNow(original, reaching: recipient, completion: completion)
        }
        // The library's thread never waits on the network: the regional
        // host is read there first when a handle opened from a saved state
        // polls or refreshes before anything else was sent.
        serviceEndpoint { [self] base in
            switch base {
            case .success(let base): startNow(located(original, at: base), reaching: recipient, completion: completion)
            case .failure(let error): completion(.failure(error))
            }
        }
    }

    /// `start` of a request whose URL is final.
    func startNow(_ request: HTTPRequest, reaching recipient: Recipient,
                  completion: @escaping @Sendable (Result<HTTPResponse, DirectLineError>) -> Void) {
        transport.start(request, on: TransferLoop.shared) { [self] outcome in
            do throws(DirectLineError) {
                completion(.success(try accepted(try outcome.get(), reaching: recipient)))
            } catch {
                completion(.failure(error.redacting([config.credential.value, request.bearer])))
            }
        }
    }

    private func accepted(_ response: HTTPResponse, reaching recipient: Recipient) throws(DirectLineError) -> HTTPResponse {
        guard response.isSuccess else {
            throw Responses.failure(response, reaching: recipient, version: version)
        }
        return response
    }

    /// `dl_conversation_start`: starts a conversation and returns its handle
    /// object and the service's Conversation object.
    func startConversation(_ requestJSON: JSONValue?) throws(DirectLineError) -> (Conversation, JSONValue) {
        let body = try Self.startOptions(requestJSON, version: version, call: "starts conversations", takesLocale: true)
        // With a token endpoint: a fresh token for this conversation (it may
        // be bound to one already, which the start then joins).
        let issued = config.credential.kind == .tokenEndpoint ? try fetchEndpointToken() : nil
        let issuedAt = Clock.monotonicMs()
        let response = try execute(requests.startConversation(body: body, bearer: issued?.token ?? config.credential.value),
                                   reaching: .service)
        let result = try Responses.json(response, what: "start conversation")
        if let bound = issued?.conversationId, let started = result.objectValue?["conversationId"]?.stringValue,
           started != bound {
            throw Responses.protocolError("the service started another conversation than the one the token endpoint's "
                                          + "token is bound to", response)
        }
        let conversation = try Conversation(client: self, conversationObject: result, response: response,
                                            issuedAtMs: issuedAt, fallbackToken: issued?.token)
        return (conversation, result)
    }

    /// Whether `token` is a token the service can refresh, rather than the
    /// client's secret (which never expires).
    func isRefreshable(_ token: String) -> Bool {
        if let secret = config.credential.secret, secret == token { return false }
        return true
    }

    /// `dl_conversation_open`: a handle for a conversation started elsewhere;
    /// with `reconnect`, 3.0 `GET conversations/{id}` first.
    func openConversation(_ stateJSON: JSONValue) throws(DirectLineError) -> Conversation {
        let reader = try JSONReader(stateJSON, context: "state")
        try reader.rejectUnknownKeys(["conversationId", "token", "watermark", "streamUrl", "expires_in",
                                      "tokenExpiresAt", "tokenLifetime", "reconnect"])
        guard let id = try reader.string("conversationId") else {
            throw .invalidArgument("state needs a string \"conversationId\"")
        }
        try Validation.identifier(id, name: "state.conversationId")
        let token = try reader.string("token")
        if let token {
            try Validation.singleLine(token, name: "state.token")
            guard !token.isEmpty else { throw .invalidArgument("state.token must not be empty") }
        }
        let watermark = try reader.string("watermark")
        let streamUrl = try reader.string("streamUrl")
        let expiresIn = try reader.integer("expires_in", in: 0...(Int64(1) << 31))
        let lifetime = try reader.integer("tokenLifetime", in: 1...(Int64(1) << 31)).map { Int($0) }
        var expiresAt: Int?
        if let text = try reader.string("tokenExpiresAt") {
            guard let parsed = ISO8601.parse(text) else {
                throw .invalidArgument("state.tokenExpiresAt must look like \"2026-11-21T02:30:00Z\"")
            }
            expiresAt = parsed
        }
        if expiresIn != nil && expiresAt != nil {
            throw .invalidArgument("state takes \"expires_in\" or \"tokenExpiresAt\", not both")
        }
        if token == nil, config.credential.kind == .tokenEndpoint {
            throw .invalidArgument("state needs a \"token\": this client has no credential of its own (it takes "
                                   + "tokens from its tokenEndpoint, each for a conversation of its own)")
        }
        let credential = token ?? config.credential.value
        let reconnect = try reader.bool("reconnect") == true
        if reconnect, version != .v3 {
            throw .invalidArgument("Direct Line 1.1 has no reconnect; open without \"reconnect\" and poll")
        }
        if reconnect {
            let issuedAt = Clock.monotonicMs()
            let response = try execute(requests.reconnect(conversationId: id, watermark: watermark, bearer: credential),
                                       reaching: .service)
            let answer = try Responses.json(response, what: "reconnect")
            guard answer.objectValue?["conversationId"]?.stringValue == id else {
                throw Responses.protocolError("the service's answer to reconnect is for another conversation", response)
            }
            return try Conversation(client: self, conversationObject: answer, response: response,
                                    issuedAtMs: issuedAt, fallbackToken: credential, watermark: watermark)
        }
        let refreshable = isRefreshable(credential)
        var tokenState: TokenState
        if let expiresAt {
            tokenState = .expiring(credential, refreshable: refreshable, atEpoch: expiresAt, lifetimeSeconds: lifetime)
        } else {
            tokenState = .issued(credential, refreshable: refreshable, expiresIn: expiresIn.map { Int($0) },
                                 issuedAtMs: Clock.monotonicMs())
            if let lifetime { tokenState.lifetimeMs = lifetime * 1000 }
        }
        return Conversation(client: self, state: ConversationState(
            id: id, token: tokenState, watermark: watermark, streamUrl: streamUrl))
    }
}
