/// A configured Direct Line client: endpoint, credential and transport.
/// Immutable after creation, so any number of threads may share it.
final class DirectLineClient: Sendable {
    let config: ClientConfig
    let requests: DirectLineRequests
    let transport: CurlTransport

    init(config: ClientConfig) {
        self.config = config
        requests = DirectLineRequests(version: config.protocolVersion)
        transport = CurlTransport(config: TransportConfig(
            baseURL: config.endpoint.baseURL,
            timeoutMs: config.timeoutMs,
            connectTimeoutMs: config.connectTimeoutMs,
            retry: config.retry,
            userAgent: config.userAgent,
            caFile: config.caFile,
            proxy: config.proxy,
            insecureSkipTlsVerify: config.insecureSkipTlsVerify))
    }

    var version: ProtocolVersion { config.protocolVersion }

    /// Sends a request and returns a success response; any other status
    /// becomes the matching error. `secrets` are redacted from service text.
    func execute(_ request: HTTPRequest, operation: Operation) throws(DirectLineError) -> HTTPResponse {
        let secrets = [config.credential.value, request.bearer]
        let response: HTTPResponse
        do {
            response = try transport.send(request)
        } catch {
            var error = error
            error.message = Responses.redact(error.message, secrets)
            throw error
        }
        guard response.isSuccess else {
            throw Responses.failure(response, operation: operation, version: version, secrets: secrets)
        }
        return response
    }

    /// `dl_conversation_start`: starts a conversation and returns its handle
    /// object and the service's Conversation object.
    func startConversation(_ requestJSON: JSONValue?) throws(DirectLineError) -> (Conversation, JSONValue) {
        var body: JSONObject?
        if let requestJSON {
            let reader = try JSONReader(requestJSON, context: "request")
            try reader.rejectUnknownKeys(["user", "trustedOrigins"])
            if let user = try reader.object("user") {
                try user.rejectUnknownKeys(["id", "name"])
                if let id = try user.string("id") { try Validation.identifier(id, name: "request.user.id") }
                _ = try user.string("name")
            }
            if version == .v1, !reader.object.isEmpty {
                throw .invalidArgument("Direct Line 1.1 starts conversations without a request body; pass NULL or {}")
            }
            body = reader.object
        }
        let response = try execute(requests.startConversation(body: body, bearer: config.credential.value),
                                   operation: .other)
        let result = try Responses.json(response, what: "start conversation")
        let conversation = try Conversation(client: self, conversationObject: result, response: response)
        return (conversation, result)
    }

    /// `dl_conversation_open`: a handle for a conversation started elsewhere.
    func openConversation(_ stateJSON: JSONValue) throws(DirectLineError) -> Conversation {
        let reader = try JSONReader(stateJSON, context: "state")
        try reader.rejectUnknownKeys(["conversationId", "token", "watermark", "streamUrl", "expires_in"])
        guard let id = try reader.string("conversationId") else {
            throw .invalidArgument("state needs a string \"conversationId\"")
        }
        try Validation.identifier(id, name: "state.conversationId")
        let token = try reader.string("token")
        if let token { try Validation.headerValue(token, name: "state.token") }
        let watermark = try reader.string("watermark")
        let expiresIn = try reader.integer("expires_in", in: 0...(Int64(1) << 31))
        return Conversation(client: self, state: ConversationState(
            id: id, token: token ?? config.credential.value, watermark: watermark,
            streamUrl: try reader.string("streamUrl"),
            tokenExpiresAt: expiresIn.map { Clock.now() + Int($0) }))
    }
}

enum Clock {
    /// Seconds since the epoch.
    static func now() -> Int { Int(time(nil)) }
}

#if canImport(Glibc)
import Glibc
#endif
