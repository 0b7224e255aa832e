/// The answer to a token refresh: the new token and, when the service says,
/// its lifetime in seconds.
struct RenewedToken: Sendable {
    var token: String
    var expiresIn: Int?
    /// 3.0: the service's Conversation object.
    var serviceObject: JSONValue?
}

extension DirectLineClient {
    /// `dl_token_generate`: 3.0 `tokens/generate` (the service's Conversation
    /// object); 1.1 `tokens/conversation` (`{"token": "..."}`).
    func generateToken(_ requestJSON: JSONValue?) throws(DirectLineError) -> JSONValue {
        let body = try Self.startOptions(requestJSON, version: version, call: "issues tokens", takesLocale: false)
        if config.credential.kind == .tokenEndpoint {
            guard body?.isEmpty ?? true else {
                throw .invalidArgument("a client with a tokenEndpoint takes its tokens as the endpoint issues them: "
                                       + "pass NULL or {} (the endpoint decides the user and origins)")
            }
            return try fetchEndpointToken().json
        }
        let response = try execute(requests.generateToken(body: body, bearer: config.credential.value),
                                   reaching: .service)
        let answer = try Responses.json(response, what: "generate token")
        if version == .v1 {
            return .object(JSONObject([("token", .string(try Self.bareToken(answer, response)))]))
        }
        guard let token = answer.objectValue?["token"]?.stringValue, !token.isEmpty else {
            throw Responses.protocolError("the service's answer to generate token has no \"token\"", response)
        }
        return answer
    }

    /// The optional `{"user": {...}, "trustedOrigins": [...]}` of start and
    /// token requests, with `"locale"` for a start (`takesLocale`); 1.1
    /// takes no body.
    static func startOptions(_ value: JSONValue?, version: ProtocolVersion, call: String,
                             takesLocale: Bool) throws(DirectLineError) -> JSONObject? {
        guard let value else { return nil }
        let reader = try JSONReader(value, context: "request")
        try reader.rejectUnknownKeys(takesLocale ? ["user", "trustedOrigins", "locale"] : ["user", "trustedOrigins"])
        if let locale = try reader.string("locale") {
            guard version == .v3 else {
                throw .invalidArgument("request.locale: Direct Line 1.1 starts conversations without a body, so it "
                                       + "cannot send a locale; use protocol 3.0")
            }
            if let problem = LanguageTag.problem(locale) {
                throw .invalidArgument("request.locale \(problem): it must be a BCP 47 language tag such as \"fr-FR\"")
            }
        }
        if let user = try reader.object("user") {
            try user.rejectUnknownKeys(["id", "name"])
            if let id = try user.string("id") { try Validation.identifier(id, name: "request.user.id") }
            _ = try user.string("name")
        }
        if let origins = reader.object["trustedOrigins"], !origins.isNull {
            guard let list = origins.arrayValue, list.allSatisfy({ $0.stringValue != nil }) else {
                throw .invalidArgument("request.trustedOrigins must be an array of strings")
            }
        }
        if version == .v1, !reader.object.isEmpty {
            throw .invalidArgument("Direct Line 1.1 \(call) without a request body; pass NULL or {}")
        }
        return reader.object
    }

    /// 1.1 token calls answer the token as a bare JSON string.
    static func bareToken(_ answer: JSONValue, _ response: HTTPResponse) throws(DirectLineError) -> String {
        try usableToken(answer, response, what: "the service's token answer is not a usable token string")
    }

    /// A token the service issued, refused unless it is a non-empty string
    /// that can go into an Authorization header.
    static func usableToken(_ value: JSONValue?, _ response: HTTPResponse, what: String) throws(DirectLineError) -> String {
        guard let token = value?.stringValue, !token.isEmpty,
              (try? Validation.singleLine(token, name: "token")) != nil else {
            throw Responses.protocolError(what, response)
        }
        return token
    }

    /// `dl_token_refresh`: 3.0 `tokens/refresh` with the token; 1.1 renews
    /// the token of a conversation this client started or opened (the 1.1
    /// path needs its id), updating that conversation's handle too.
    func refreshToken(_ token: String) throws(DirectLineError) -> JSONValue {
        try Validation.singleLine(token, name: "token")
        guard !token.isEmpty else { throw .invalidArgument("token must not be empty") }
        switch version {
        case .v3:
            return try renew(token: token, conversationId: nil).serviceObject ?? .null
        case .v1:
            guard let conversation = conversations.conversation(usingToken: token) else {
                throw .invalidArgument(
                    "Direct Line 1.1 renews a token through its conversation's id: refresh the token of a " +
                    "conversation this client started or opened, or call dl_conversation_refresh")
            }
            let renewed = try conversation.refreshToken()
            return .object(JSONObject([("token", .string(renewed.token))]))
        }
    }

    /// Asks the service for a fresh token in place of `token`.
    func renew(token: String, conversationId: String?) throws(DirectLineError) -> RenewedToken {
        switch version {
        case .v3:
            return try Self.renewal(try execute(requests.refreshToken(bearer: token), reaching: .service), version: .v3)
        case .v1:
            guard let conversationId else { throw .internalError("a 1.1 renewal needs the conversation id") }
            var response: HTTPResponse
            do {
                response = try execute(requests.renewToken(conversationId: conversationId, method: .get, bearer: token),
                                       reaching: .service)
            } catch where error.httpStatus == 405 {
                // The 1.1 pages disagree on the method: the Swagger says GET,
                // the authentication page POST.
                response = try execute(requests.renewToken(conversationId: conversationId, method: .post, bearer: token),
                                       reaching: .service)
            }
            return try Self.renewal(response, version: .v1)
        }
    }

    /// `renew` on the transfer loop (the automatic refresh): the same
    /// requests and rules, one attempt each; `completion` runs on the loop's
    /// thread and must not block. Nothing waits for it, so a conversation
    /// freed meanwhile does not abort it (which would cost every refresh a
    /// progress callback): its completion finds the handle freed.
    func renewInBackground(token: String, conversationId: String,
                           completion: @escaping @Sendable (Result<RenewedToken, DirectLineError>) -> Void) {
        let version = version
        @Sendable func renewed(_ outcome: Result<HTTPResponse, DirectLineError>) -> Result<RenewedToken, DirectLineError> {
            do throws(DirectLineError) {
                return .success(try Self.renewal(try outcome.get(), version: version))
            } catch {
                return .failure(error)
            }
        }
        let request = switch version {
        case .v3: requests.refreshToken(bearer: token)
        case .v1: requests.renewToken(conversationId: conversationId, method: .get, bearer: token)
        }
        start(request, reaching: .service) { [self] outcome in
            guard version == .v1, case .failure(let error) = outcome, error.httpStatus == 405 else {
                return completion(renewed(outcome))
            }
            // As in `renew`: a 1.1 service that refuses GET gets a POST.
            let post = requests.renewToken(conversationId: conversationId, method: .post, bearer: token)
            start(post, reaching: .service) { completion(renewed($0)) }
        }
    }

    /// The new token in the service's answer to a refresh (3.0: an object
    /// with `token` and `expires_in`; 1.1: the bare token).
    static func renewal(_ response: HTTPResponse, version: ProtocolVersion) throws(DirectLineError) -> RenewedToken {
        switch version {
        case .v3:
            let answer = try Responses.json(response, what: "refresh token")
            let fresh = try usableToken(answer.objectValue?["token"], response,
                                        what: "the service's answer to refresh token has no usable \"token\"")
            let expiresIn = answer.objectValue?["expires_in"]?.int64Value.flatMap { Int(exactly: $0) }
            return RenewedToken(token: fresh, expiresIn: expiresIn, serviceObject: answer)
        case .v1:
            let answer = try Responses.json(response, what: "renew token")
            return RenewedToken(token: try bareToken(answer, response), expiresIn: nil, serviceObject: nil)
        }
    }
}
