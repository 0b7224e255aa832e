/// The Direct Line requests, for both protocol versions. Pure functions:
/// they build `HTTPRequest`s and never touch the network.
struct DirectLineRequests: Sendable {
    let version: ProtocolVersion

    /// The service's limit on one serialized activity or message.
    static let maxActivityBytes = 262_144

    private var root: String { version == .v3 ? "/v3/directline" : "/api" }

    /// The path sends to a conversation go to; a conversation computes it once.
    func sendPath(conversationId: String) -> String {
        "\(conversationPath(conversationId))/\(version == .v3 ? "activities" : "messages")"
    }

    private func conversationPath(_ id: String) -> String {
        "\(root)/conversations/\(id.percentEncoded)"
    }

    /// 3.0 `POST conversations` with an optional body; 1.1 `POST conversations`.
    func startConversation(body: JSONObject?, bearer: String) -> HTTPRequest {
        post("\(root)/conversations", jsonBody: version == .v3 ? body : nil, bearer: bearer)
    }

    /// 3.0 `POST tokens/generate` with an optional body; 1.1 `POST tokens/conversation`.
    func generateToken(body: JSONObject?, bearer: String) -> HTTPRequest {
        let leaf = version == .v3 ? "generate" : "conversation"
        return post("\(root)/tokens/\(leaf)", jsonBody: version == .v3 ? body : nil, bearer: bearer)
    }

    /// Every POST: it may change something at the service, so only the
    /// service's own refusal lets the transport send it again.
    private func post(_ path: String, jsonBody: JSONObject? = nil, bearer: String) -> HTTPRequest {
        var request = HTTPRequest(method: .post, path: path, bearer: bearer, isRefusal: Responses.isServiceRefusal)
        if let jsonBody, !jsonBody.isEmpty {
            request.contentType = "application/json"
            request.body = RequestBody(JSONValue.object(jsonBody).serializedBytes)
        }
        return request
    }

    /// 3.0 `POST tokens/refresh`, authorized by the token itself.
    func refreshToken(bearer: String) -> HTTPRequest {
        post("\(root)/tokens/refresh", bearer: bearer)
    }

    /// 1.1 `tokens/{id}/renew`: GET in the Swagger, POST in the
    /// authentication page, so the caller falls back from one to the other.
    func renewToken(conversationId: String, method: HTTPRequest.Method, bearer: String) -> HTTPRequest {
        let path = "\(root)/tokens/\(conversationId.percentEncoded)/renew"
        return method == .post ? post(path, bearer: bearer) : HTTPRequest(method: .get, path: path, bearer: bearer)
    }

    /// 3.0 `GET conversations/{id}?watermark=`: a new stream URL (and token).
    func reconnect(conversationId: String, watermark: String?, bearer: String) -> HTTPRequest {
        var request = HTTPRequest(method: .get, path: conversationPath(conversationId), bearer: bearer)
        if let watermark { request.query = [("watermark", watermark)] }
        return request
    }

    /// 3.0 `POST conversations/{id}/activities`; 1.1 `POST conversations/{id}/messages`.
    func send(conversationId: String, payload: [UInt8], bearer: String) -> HTTPRequest {
        send(path: sendPath(conversationId: conversationId), payload: payload, bearer: bearer)
    }

    func send(path: String, payload: [UInt8], bearer: String) -> HTTPRequest {
        // Built in one initializer call: assigning fields of a `var`
        // afterwards would copy the whole request again.
        HTTPRequest(method: .post, path: path, contentType: "application/json", body: RequestBody(payload), bearer: bearer,
                    isRefusal: Responses.isServiceRefusal)
    }

    /// `POST conversations/{id}/upload?userId=` (both versions).
    func upload(conversationId: String, userId: String, body: RequestBody, contentType: String,
                disposition: String?, bearer: String) -> HTTPRequest {
        var request = post("\(conversationPath(conversationId))/upload", bearer: bearer)
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
