import Synchronization

/// What a conversation handle remembers; guarded by the conversation's lock.
struct ConversationState: Sendable {
    var id: String
    /// The conversation's own token (the one the service issued for it), or
    /// the client's credential when the service issued none.
    var token: String
    var watermark: String?
    var streamUrl: String?
    /// Seconds since the epoch, when known.
    var tokenExpiresAt: Int?
}

/// One conversation: its id, its token and the watermark of what was read.
/// Thread-safe: state is read under a lock, requests run without it.
final class Conversation: Sendable {
    let client: DirectLineClient
    private let state: Mutex<ConversationState>

    init(client: DirectLineClient, state: ConversationState) {
        self.client = client
        self.state = Mutex(state)
    }

    /// From the service's answer to "start conversation".
    convenience init(client: DirectLineClient, conversationObject: JSONValue, response: HTTPResponse) throws(DirectLineError) {
        guard let object = conversationObject.objectValue,
              let id = object["conversationId"]?.stringValue, !id.isEmpty else {
            throw Responses.protocolError("the service's Conversation object has no conversationId", response)
        }
        let token = object["token"]?.stringValue ?? client.config.credential.value
        do {
            try Validation.identifier(id, name: "conversationId")
            try Validation.headerValue(token, name: "token")
        } catch {
            throw Responses.protocolError("the service returned an unusable conversation id or token", response)
        }
        let expiresIn = object["expires_in"]?.int64Value.flatMap { Int(exactly: $0) }
        self.init(client: client, state: ConversationState(
            id: id, token: token, watermark: nil, streamUrl: object["streamUrl"]?.stringValue,
            tokenExpiresAt: expiresIn.map { Clock.now() + max(0, min($0, 1 << 31)) }))
    }

    private var snapshot: ConversationState { state.withLock { $0 } }

    /// `dl_conversation_info`: never includes the token.
    func info() -> JSONValue {
        let current = snapshot
        var object = JSONObject()
        object["conversationId"] = .string(current.id)
        object["protocol"] = .string(client.version.rawValue)
        object["watermark"] = current.watermark.map(JSONValue.string) ?? .null
        object["streamUrl"] = current.streamUrl.map { .string(Self.withoutToken($0)) } ?? .null
        object["tokenExpiresAt"] = current.tokenExpiresAt.map { .string(ISO8601.format($0)) } ?? .null
        return .object(object)
    }

    /// The stream URL carries the token in `t=`: never hand it out in info.
    static func withoutToken(_ url: String) -> String {
        guard let query = url.firstIndex(of: "?") else { return url }
        return String(url[..<query])
    }

    /// `dl_send_activity`.
    func send(_ activityJSON: JSONValue) throws(DirectLineError) -> JSONValue {
        let outgoing = try OutgoingActivity(activityJSON, version: client.version)
        let body = try outgoing.serializedBody()
        let current = snapshot
        let response = try client.execute(
            client.requests.send(conversationId: current.id, payload: body, bearer: current.token), operation: .send)
        var result = JSONObject()
        guard client.version == .v3 else {
            // 1.1 answers 204. A body that is not JSON (an HTML page from a
            // proxy, say) means the service may never have seen the message.
            if !response.body.isEmpty { _ = try Responses.json(response, what: "send message") }
            return .object(result)
        }
        if response.status != 204, !response.body.isEmpty {
            let answer = try Responses.json(response, what: "send activity")
            guard let id = answer.objectValue?["id"], id.stringValue != nil || id.isNull else {
                throw Responses.protocolError("the service's answer to send activity has no string \"id\"", response)
            }
            result["id"] = id
        } else {
            result["id"] = .null
        }
        result["clientActivityID"] = outgoing.clientActivityID.map(JSONValue.string) ?? .null
        return .object(result)
    }

    /// `dl_get_activities`: the activities after the stored watermark; the
    /// watermark advances unless the service answers a null or missing one.
    func receive() throws(DirectLineError) -> JSONValue {
        let current = snapshot
        let response = try client.execute(
            client.requests.receive(conversationId: current.id, watermark: current.watermark, bearer: current.token),
            operation: .other)
        let answer = try Responses.json(response, what: "get activities")
        let listKey = client.version == .v3 ? "activities" : "messages"
        guard let object = answer.objectValue, object[listKey]?.arrayValue != nil else {
            throw Responses.protocolError("the service's answer has no \"\(listKey)\" array", response)
        }
        if let watermark = object["watermark"]?.stringValue {
            state.withLock { $0.watermark = watermark }
        }
        return answer
    }
}

#if canImport(Glibc)
import Glibc
#endif

enum ISO8601 {
    /// "2026-11-21T02:30:00Z" for seconds since the epoch.
    static func format(_ seconds: Int) -> String {
        var time = time_t(seconds)
        var parts = tm()
        guard gmtime_r(&time, &parts) != nil else { return "" }
        func two(_ value: Int32) -> String { value < 10 ? "0\(value)" : "\(value)" }
        return "\(parts.tm_year + 1900)-\(two(parts.tm_mon + 1))-\(two(parts.tm_mday))T\(two(parts.tm_hour)):\(two(parts.tm_min)):\(two(parts.tm_sec))Z"
    }
}
