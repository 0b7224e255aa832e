import Synchronization

/// The credential a conversation handle sends, and when it expires.
struct TokenState: Sendable {
    var value: String
    /// False when the handle uses the client's secret, which never expires
    /// and must never be handed out by `dl_conversation_state`.
    var refreshable: Bool
    /// The lifetime the service gave the token (`expires_in`), in ms.
    var lifetimeMs: Int?
    /// The lifetime is the library's estimate, not the service's word: it
    /// schedules refreshes but is not saved in `dl_conversation_state`, so a
    /// saved state reopens to the same saved state.
    var lifetimeIsEstimate = false
    /// When it expires, on the monotonic clock (ms), and on the wall clock
    /// (seconds since the epoch) for info and saved state.
    var expiresAtMs: Int?
    var expiresAtEpoch: Int?

    /// A token the service issued at `issuedAtMs` valid for `expiresIn` seconds.
    static func issued(_ value: String, refreshable: Bool, expiresIn: Int?, issuedAtMs: Int) -> TokenState {
        let seconds = expiresIn.map { max(0, min($0, 1 << 31)) }
        return TokenState(value: value, refreshable: refreshable, lifetimeMs: seconds.map { $0 * 1000 },
                          expiresAtMs: seconds.map { issuedAtMs + $0 * 1000 },
                          expiresAtEpoch: seconds.map { Clock.now() + $0 })
    }

    /// A token known to expire at `epoch` (from saved state). Without its
    /// lifetime, the time it has left stands in for it: a 1.1 renewal, which
    /// does not say how long the new token lives, then errs on the early side.
    static func expiring(_ value: String, refreshable: Bool, atEpoch epoch: Int, lifetimeSeconds: Int?) -> TokenState {
        let remainingMs = max(0, epoch - Clock.now()) * 1000
        var state = TokenState(value: value, refreshable: refreshable,
                               lifetimeMs: lifetimeSeconds.map { $0 * 1000 } ?? min(max(remainingMs, 1000), (1 << 31) * 1000),
                               expiresAtMs: Clock.monotonicMs() + remainingMs, expiresAtEpoch: epoch)
        state.lifetimeIsEstimate = lifetimeSeconds == nil
        return state
    }

    /// When the handle should refresh it on its own: at half its remaining
    /// life, or nil when it never expires or cannot be refreshed.
    func refreshDueMs(now: Int) -> Int? {
        guard refreshable, let expiresAtMs, expiresAtMs > now else { return nil }
        return now + (expiresAtMs - now) / 2
    }
}

/// The answer to a token refresh: the new token and, when the service says,
/// its lifetime in seconds.
struct RenewedToken {
    var token: String
    var expiresIn: Int?
    /// 3.0: the service's Conversation object.
    var serviceObject: JSONValue?
}

extension DirectLineClient {
    /// `dl_token_generate`: 3.0 `tokens/generate` (the service's Conversation
    /// object); 1.1 `tokens/conversation` (`{"token": "..."}`).
    func generateToken(_ requestJSON: JSONValue?) throws(DirectLineError) -> JSONValue {
        let body = try Self.startOptions(requestJSON, version: version, call: "issues tokens")
        let response = try execute(requests.generateToken(body: body, bearer: config.credential.value),
                                   operation: .other)
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
    /// token requests; 1.1 takes no body.
    static func startOptions(_ value: JSONValue?, version: ProtocolVersion, call: String) throws(DirectLineError) -> JSONObject? {
        guard let value else { return nil }
        let reader = try JSONReader(value, context: "request")
        try reader.rejectUnknownKeys(["user", "trustedOrigins"])
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
              (try? Validation.headerValue(token, name: "token")) != nil else {
            throw Responses.protocolError(what, response)
        }
        return token
    }

    /// `dl_token_refresh`: 3.0 `tokens/refresh` with the token; 1.1 renews
    /// the token of a conversation this client started or opened (the 1.1
    /// path needs its id), updating that conversation's handle too.
    func refreshToken(_ token: String) throws(DirectLineError) -> JSONValue {
        try Validation.headerValue(token, name: "token")
        guard !token.isEmpty else { throw .invalidArgument("token must not be empty") }
        switch version {
        case .v3:
            return try renew(token: token, conversationId: nil).serviceObject ?? .null
        case .v1:
            guard let conversation = conversation(usingToken: token) else {
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
            let response = try execute(requests.refreshToken(bearer: token), operation: .other)
            let answer = try Responses.json(response, what: "refresh token")
            let fresh = try Self.usableToken(answer.objectValue?["token"], response,
                                             what: "the service's answer to refresh token has no usable \"token\"")
            let expiresIn = answer.objectValue?["expires_in"]?.int64Value.flatMap { Int(exactly: $0) }
            return RenewedToken(token: fresh, expiresIn: expiresIn, serviceObject: answer)
        case .v1:
            guard let conversationId else { throw .internal("a 1.1 renewal needs the conversation id") }
            var response: HTTPResponse
            do {
                response = try execute(requests.renewToken(conversationId: conversationId, method: .get, bearer: token),
                                       operation: .other)
            } catch where error.httpStatus == 405 {
                // The 1.1 pages disagree on the method: the Swagger says GET,
                // the authentication page POST.
                response = try execute(requests.renewToken(conversationId: conversationId, method: .post, bearer: token),
                                       operation: .other)
            }
            let answer = try Responses.json(response, what: "renew token")
            return RenewedToken(token: try Self.bareToken(answer, response), expiresIn: nil, serviceObject: nil)
        }
    }
}

/// The conversations a client has handed out, so that a 1.1 token can be
/// renewed through its conversation id. Holds them weakly.
final class ConversationRegistry: Sendable {
    private final class Entry: @unchecked Sendable {
        weak var conversation: Conversation?
        init(_ conversation: Conversation) { self.conversation = conversation }
    }

    private let entries = Locked<[ObjectIdentifier: Entry]>([:])

    func add(_ conversation: Conversation) {
        entries.withLock { $0[ObjectIdentifier(conversation)] = Entry(conversation) }
    }

    func remove(_ id: ObjectIdentifier) {
        _ = entries.withLock { $0.removeValue(forKey: id) }
    }

    func all() -> [Conversation] {
        entries.withLock { $0.values.compactMap(\.conversation) }
    }
}

extension DirectLineClient {
    fileprivate func conversation(usingToken token: String) -> Conversation? {
        conversations.all().first { $0.currentToken == token }
    }
}

#if canImport(Glibc)
import Glibc
#endif

extension ISO8601 {
    /// Parses exactly the "YYYY-MM-DDTHH:MM:SSZ" that `format` writes.
    static func parse(_ text: String) -> Int? {
        let bytes = Array(text.utf8)
        guard bytes.count == 20, bytes[4] == UInt8(ascii: "-"), bytes[7] == UInt8(ascii: "-"),
              bytes[10] == UInt8(ascii: "T"), bytes[13] == UInt8(ascii: ":"), bytes[16] == UInt8(ascii: ":"),
              bytes[19] == UInt8(ascii: "Z") else { return nil }
        func number(_ range: Range<Int>) -> Int32? {
            var value: Int32 = 0
            for byte in bytes[range] {
                guard (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(byte) else { return nil }
                value = value * 10 + Int32(byte - UInt8(ascii: "0"))
            }
            return value
        }
        guard let year = number(0..<4), let month = number(5..<7), let day = number(8..<10),
              let hour = number(11..<13), let minute = number(14..<16), let second = number(17..<19),
              year >= 1970, (1...12).contains(month), (1...31).contains(day), hour < 24, minute < 60, second < 60
        else { return nil }
        var parts = tm()
        parts.tm_year = year - 1900
        parts.tm_mon = month - 1
        parts.tm_mday = day
        parts.tm_hour = hour
        parts.tm_min = minute
        parts.tm_sec = second
        let seconds = timegm(&parts)
        // timegm normalises 31 February into March: refuse such dates.
        guard seconds >= 0, format(Int(seconds)) == text else { return nil }
        return Int(seconds)
    }
}
