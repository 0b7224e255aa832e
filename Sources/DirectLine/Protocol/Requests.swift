/// The Direct Line requests, for both protocol versions. Pure functions:
/// they build `HTTPRequest`s and never touch the network.
struct DirectLineRequests: Sendable {
    let version: ProtocolVersion

    /// The service's limit on one serialized activity or message.
    static let maxActivityBytes = 262_144

    private var root: String { version == .v3 ? "/v3/directline" : "/api" }

    private func conversationPath(_ id: String) -> String {
        "\(root)/conversations/\(Validation.percentEncoded(id))"
    }

    /// 3.0 `POST conversations` with an optional body; 1.1 `POST conversations`.
    func startConversation(body: JSONObject?, bearer: String) -> HTTPRequest {
        var request = HTTPRequest(method: .post, path: "\(root)/conversations", bearer: bearer)
        if version == .v3, let body, !body.isEmpty {
            request.contentType = "application/json"
            request.body = RequestBody(JSONValue.object(body).serializedBytes)
        }
        return request
    }

    /// 3.0 `POST tokens/generate` with an optional body; 1.1 `POST tokens/conversation`.
    func generateToken(body: JSONObject?, bearer: String) -> HTTPRequest {
        let leaf = version == .v3 ? "generate" : "conversation"
        var request = HTTPRequest(method: .post, path: "\(root)/tokens/\(leaf)", bearer: bearer)
        if version == .v3, let body, !body.isEmpty {
            request.contentType = "application/json"
            request.body = RequestBody(JSONValue.object(body).serializedBytes)
        }
        return request
    }

    /// 3.0 `POST tokens/refresh`, authorized by the token itself.
    func refreshToken(bearer: String) -> HTTPRequest {
        HTTPRequest(method: .post, path: "\(root)/tokens/refresh", bearer: bearer)
    }

    /// 1.1 `tokens/{id}/renew`: GET in the Swagger, POST in the
    /// authentication page, so the caller falls back from one to the other.
    func renewToken(conversationId: String, method: HTTPRequest.Method, bearer: String) -> HTTPRequest {
        HTTPRequest(method: method, path: "\(root)/tokens/\(Validation.percentEncoded(conversationId))/renew",
                    bearer: bearer)
    }

    /// 3.0 `GET conversations/{id}?watermark=`: a new stream URL (and token).
    func reconnect(conversationId: String, watermark: String?, bearer: String) -> HTTPRequest {
        var request = HTTPRequest(method: .get, path: conversationPath(conversationId), bearer: bearer)
        if let watermark { request.query = [("watermark", watermark)] }
        return request
    }

    /// 3.0 `POST conversations/{id}/activities`; 1.1 `POST conversations/{id}/messages`.
    func send(conversationId: String, payload: [UInt8], bearer: String) -> HTTPRequest {
        let leaf = version == .v3 ? "activities" : "messages"
        var request = HTTPRequest(method: .post, path: "\(conversationPath(conversationId))/\(leaf)", bearer: bearer)
        request.contentType = "application/json"
        request.body = RequestBody(payload)
        return request
    }

    /// `POST conversations/{id}/upload?userId=` (both versions).
    func upload(conversationId: String, userId: String, body: RequestBody, contentType: String,
                disposition: String?, bearer: String) -> HTTPRequest {
        var request = HTTPRequest(method: .post, path: "\(conversationPath(conversationId))/upload", bearer: bearer)
        request.query = [("userId", userId)]
        request.contentType = contentType
        request.body = body
        if let disposition { request.headers = [("Content-Disposition", disposition)] }
        return request
    }

    /// 3.0 `GET conversations/{id}/activities?watermark=`; 1.1 `.../messages?watermark=`.
    func receive(conversationId: String, watermark: String?, bearer: String) -> HTTPRequest {
        let leaf = version == .v3 ? "activities" : "messages"
        var request = HTTPRequest(method: .get, path: "\(conversationPath(conversationId))/\(leaf)", bearer: bearer)
        if let watermark { request.query = [("watermark", watermark)] }
        return request
    }
}

/// The caller's activity (3.0) or message (1.1), checked and completed.
struct OutgoingActivity {
    var payload: JSONObject
    /// 3.0: the `channelData.clientActivityID` the activity carries.
    var clientActivityID: String?
    /// The user it is sent as, when it names one.
    var sender: String?

    /// Validates the shape the service requires and, on 3.0, makes sure the
    /// activity carries a `channelData.clientActivityID` for reconciliation.
    init(_ value: JSONValue, version: ProtocolVersion) throws(DirectLineError) {
        let noun = version == .v3 ? "activity" : "message"
        guard var object = value.objectValue else {
            throw .invalidArgument("the \(noun) must be a JSON object, not \(value.typeName)")
        }
        let reader = try JSONReader(value, context: noun)
        switch version {
        case .v3:
            guard try reader.string("type") != nil else { throw .invalidArgument("the activity needs a string \"type\"") }
            guard let from = try reader.object("from"), let fromId = try from.string("id") else {
                throw .invalidArgument("the activity needs \"from\": {\"id\": \"...\"}")
            }
            try Validation.identifier(fromId, name: "activity.from.id")
            sender = fromId
            var channelData = try reader.object("channelData")?.object ?? JSONObject()
            let channelReader = try JSONReader(.object(channelData), context: "activity.channelData")
            if let existing = try channelReader.string("clientActivityID") {
                clientActivityID = existing
            } else {
                let generated = ClientActivityID.generate()
                channelData["clientActivityID"] = .string(generated)
                object["channelData"] = .object(channelData)
                clientActivityID = generated
            }
        case .v1:
            if let from = try reader.string("from") {
                try Validation.identifier(from, name: "message.from")
                sender = from
            }
            _ = try reader.object("channelData")
        }
        payload = object
    }

    /// The serialized body, refused when over the service's limit.
    func serializedBody() throws(DirectLineError) -> [UInt8] {
        let body = JSONValue.object(payload).serializedBytes
        guard body.count <= DirectLineRequests.maxActivityBytes else {
            throw DirectLineError(.DL_ERR_TOO_LARGE,
                                  "the activity is \(body.count) bytes serialized; the service accepts at most \(DirectLineRequests.maxActivityBytes)")
        }
        return body
    }

    /// The simple text message of `dl_send_text`, in the version's shape.
    static func text(_ text: String, from userId: String, version: ProtocolVersion) -> JSONValue {
        switch version {
        case .v3:
            .object(JSONObject([("type", .string("message")),
                                ("from", .object(JSONObject([("id", .string(userId))]))),
                                ("text", .string(text))]))
        case .v1:
            .object(JSONObject([("from", .string(userId)), ("text", .string(text))]))
        }
    }
}

enum ClientActivityID {
    private static let digits = Array("0123456789abcdef".utf8)

    /// A fresh correlation id with 128 random bits from the system's secure generator.
    static func generate() -> String {
        var generator = SystemRandomNumberGenerator()
        return "dlc-" + hex(generator.next()) + hex(generator.next())
    }

    /// 16 lowercase hex digits.
    static func hex(_ value: UInt64) -> String {
        String(unsafeUninitializedCapacity: 16) { output in
            for index in 0..<16 {
                output[index] = digits[Int((value >> UInt64(60 - 4 * index)) & 0xF)]
            }
            return 16
        }
    }
}
