import Synchronization

/// One conversation: its id, its token and the watermark of what was read.
/// Thread-safe: state is read under a lock, requests run without it.
final class Conversation: Sendable {
    let client: DirectLineClient
    let state: Locked<ConversationState>
    private let progress = CallbackSlot<ProgressReporter>()
    /// Receiving as it happens (`dl_conversation_listen`): the queue, its
    /// descriptor and the source that fills it.
    let listener = Listener()

    /// Where sends go: the id never changes, so the path is built once.
    let sendPath: String
    /// The conversation id (it never changes).
    let conversationID: String

    init(client: DirectLineClient, state: ConversationState) {
        self.client = client
        sendPath = client.requests.sendPath(conversationId: state.id)
        conversationID = state.id
        self.state = Locked(state)
        client.conversations.add(self)
        scheduleRefresh()
    }

    deinit {
        client.conversations.remove(ObjectIdentifier(self))
    }

    /// `dl_conversation_free`: stops waits and automatic refreshes. Calls
    /// already running on other threads finish normally.
    func close() {
        freed.raise()
        // Polling stops, and blocked nexts and waits end.
        listener.close()
        // After the free returns, the caller's progress callback is never
        // called again, by transfers still running either.
        progress.replace(with: nil)
        // Cancelled under the lock after `freed` is raised, so a refresh
        // being scheduled now either sees it raised or is cancelled here.
        state.withLock { _ in TokenRefresher.shared.cancel(ObjectIdentifier(self)) }
    }

    /// Raised by `close`: waits stop, and reads in flight are aborted.
    var isClosed: Bool { freed.isRaised }

    /// The token requests on this conversation carry now.
    var currentToken: String { state.withLock { $0.token.value } }

    /// `dl_conversation_set_progress`: told as the body of each send or
    /// upload on this conversation goes out; nil stops it.
    ///
    /// Returns once no call of the previous callback is in progress; every
    /// later report, of transfers already running too, goes to the new one
    /// (or nowhere), so the caller may release the old userdata right after.
    func setProgress(_ reporter: ProgressReporter?) {
        progress.replace(with: reporter)
    }

    /// Sends a POST on this conversation with the progress callback attached;
    /// a failure carries the activity's clientActivityID.
    func post(_ request: consuming HTTPRequest, clientActivityID: String?) throws(DirectLineError) -> HTTPResponse {
        if progress.isInstalled {
            // Each report pins the callback only for the call itself, so a
            // replacement (or a free) never waits for a whole transfer.
            request.progress = ProgressReporter { [progress] done, total in
                guard let pinned = progress.pin() else { return true }
                defer { pinned.unpin() }
                return pinned.callback.report(done, total)
            }
        }
        do {
            return try client.execute(request, reaching: .bot)
        } catch {
            var error = error
            error.clientActivityID = clientActivityID
            throw error
        }
    }

    /// From the service's answer to "start conversation" or "reconnect",
    /// received at `issuedAtMs`.
    convenience init(client: DirectLineClient, conversationObject: JSONValue, response: HTTPResponse,
                     issuedAtMs: Int, fallbackToken: String? = nil, watermark: String? = nil) throws(DirectLineError) {
        guard let object = conversationObject.objectValue,
              let id = object["conversationId"]?.stringValue, !id.isEmpty else {
            throw Responses.protocolError("the service's Conversation object has no conversationId", response)
        }
        let token = object["token"]?.stringValue ?? fallbackToken ?? client.config.credential.value
        do {
            try Validation.identifier(id, name: "conversationId")
            try Validation.singleLine(token, name: "token")
        } catch {
            throw Responses.protocolError("the service returned an unusable conversation id or token", response)
        }
        let expiresIn = object["expires_in"]?.int64Value.flatMap { Int(exactly: $0) }
        self.init(client: client, state: ConversationState(
            id: id,
            token: .issued(token, refreshable: client.isRefreshable(token), expiresIn: expiresIn, issuedAtMs: issuedAtMs),
            watermark: watermark, streamUrl: object["streamUrl"]?.stringValue))
    }

    var snapshot: ConversationState { state.withLock { $0 } }

    /// Where reading goes on from: the id, token and watermark a GET needs,
    /// read under the lock without copying the rest of the state.
    var readPosition: (id: String, token: String, watermark: String?) {
        state.withLock { ($0.id, $0.token.value, $0.watermark) }
    }

    /// Before a send or upload leaves, in one critical section: records who
    /// sends it and its correlation id (so that a `wait` on another thread
    /// already knows it as the caller's), and returns the token the request
    /// carries.
    func tokenForSend(recordingSender userId: String?, clientActivityID: String?) -> String {
        state.withLock { state in
            if let userId { state.noteSender(userId) }
            if let clientActivityID { state.sentClientActivityIDs.record(clientActivityID) }
            return state.token.value
        }
    }

    /// After it: when, from which `wait` times its first poll (0: never).
    /// Raised when the handle is freed.
    let freed = Cancellation()

    let lastSendMs = Atomic(0)

    func noteSent() {
        // Stored only when it changed, so threads sending on one
        // conversation mostly read the cache line instead of fighting for it.
        let now = Clock.monotonicMs()
        if lastSendMs.load(ordering: .relaxed) != now { lastSendMs.store(now, ordering: .relaxed) }
    }

    /// `dl_conversation_info`: never includes the token.
    func info() -> JSONValue {
        let current = snapshot
        var object = JSONObject()
        object["conversationId"] = .string(current.id)
        object["protocol"] = .string(client.version.rawValue)
        object["watermark"] = current.watermark.map(JSONValue.string) ?? .null
        object["streamUrl"] = current.streamUrl.map { .string(Self.withoutToken($0)) } ?? .null
        object["tokenExpiresAt"] = current.token.expiresAtEpoch.map { .string(ISO8601.format($0)) } ?? .null
        object["autoRefresh"] = .bool(TokenRefresher.shared.isActive(ObjectIdentifier(self)))
        object["tokenRefreshError"] = current.refreshError.map(JSONValue.string) ?? .null
        object["ended"] = .bool(current.ended)
        return .object(object)
    }

    /// `dl_conversation_state`: what `dl_conversation_open` needs to resume,
    /// including the conversation's token (never the client's secret).
    func savedState() -> JSONValue {
        let current = snapshot
        var object = JSONObject()
        object["conversationId"] = .string(current.id)
        object["token"] = current.token.refreshable ? .string(current.token.value) : .null
        object["watermark"] = current.watermark.map(JSONValue.string) ?? .null
        object["streamUrl"] = current.streamUrl.map(JSONValue.string) ?? .null
        object["tokenExpiresAt"] = current.token.expiresAtEpoch.map { .string(ISO8601.format($0)) } ?? .null
        // Only a lifetime the service gave, and one dl_conversation_open
        // takes back (1 s to 2^31 s): a saved state reopens to itself.
        let lifetime = current.token.lifetimeIsEstimate ? nil
            : current.token.lifetimeMs.map { $0 / 1000 }.flatMap { (1...(1 << 31)).contains($0) ? $0 : nil }
        object["tokenLifetime"] = lifetime.map { .number(String($0)) } ?? .null
        return .object(object)
    }

    /// The stream URL carries the token in `t=`: never hand it out in info.
    static func withoutToken(_ url: String) -> String {
        guard let query = url.firstIndex(of: "?") else { return url }
        return String(url[..<query])
    }


    /// `dl_conversation_end`: 3.0 sends an endOfConversation activity from
    /// `userId`; 1.1 has no such message and sends nothing. Either way the
    /// handle stops refreshing its token, so the conversation lapses.
    func end(userId: String) throws(DirectLineError) -> SendResult {
        var result = SendResult.empty
        if client.version == .v3 {
            let activity = JSONObject([("type", .string("endOfConversation")),
                                       ("from", .object(JSONObject([("id", .string(userId))])))])
            result = try send(.object(activity))
        }
        state.withLock { state in
            state.ended = true
            TokenRefresher.shared.cancel(ObjectIdentifier(self))
        }
        // A listener reads what is left (the end included), then reports `ended`.
        listener.conversationEnded()
        return result
    }
}
