import Synchronization

/// What a conversation handle remembers; guarded by the conversation's lock.
struct ConversationState: Sendable {
    var id: String
    /// The conversation's own token (the one the service issued for it), or
    /// the client's credential when the service issued none.
    var token: TokenState
    var watermark: String?
    var streamUrl: String?
    /// `dl_conversation_end` was called: the token is no longer refreshed.
    var ended = false
    /// The handle was freed: waits stop, the token is no longer refreshed.
    var closed = false
    /// Why the last automatic refresh failed, if it did.
    var refreshError: String?
    /// The user ids this handle sent as, most recent last (for `wait`).
    var senders: [String] = []
    /// Ids of the activities `wait` has returned, to drop repeats.
    var seen = RecentIDs()

    init(id: String, token: TokenState, watermark: String? = nil, streamUrl: String? = nil) {
        self.id = id
        self.token = token
        self.watermark = watermark
        self.streamUrl = streamUrl
    }

    /// The clientActivityIDs of the last activities sent (for `wait`).
    var sentActivityIDs = SentIDs()

    /// Records a user this handle sends as (the 32 most recent).
    mutating func noteSender(_ userId: String) {
        guard senders.last != userId else { return }
        senders.removeAll { $0 == userId }
        senders.append(userId)
        if senders.count > 32 { senders.removeFirst() }
    }
}

/// One conversation: its id, its token and the watermark of what was read.
/// Thread-safe: state is read under a lock, requests run without it.
final class Conversation: Sendable {
    let client: DirectLineClient
    let state: Locked<ConversationState>
    private let progress = CallbackSlot<ProgressReporter>()

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
        state.withLock { state in
            state.closed = true
            TokenRefresher.shared.cancel(ObjectIdentifier(self))
        }
    }

    var isClosed: Bool { state.withLock { $0.closed } }

    /// The token requests on this conversation carry now.
    var currentToken: String { state.withLock { $0.token.value } }

    /// `dl_conversation_set_progress`: told as the body of each send or
    /// upload on this conversation goes out; nil stops it.
    ///
    /// Returns once no transfer uses the previous callback any more, so the
    /// caller may release that callback's userdata right after.
    func setProgress(_ reporter: ProgressReporter?) {
        progress.replace(with: reporter)
    }

    /// The current progress callback, pinned: a replacement waits for the
    /// caller's `unpin()` before returning; nil when there is no callback.
    func pinProgress() -> CallbackSlot<ProgressReporter>.Pin? {
        progress.pin()
    }

    /// Sends a POST on this conversation with the progress callback attached;
    /// a failure carries the activity's clientActivityID.
    private func post(_ request: consuming HTTPRequest, clientActivityID: String?) throws(DirectLineError) -> HTTPResponse {
        let pinned = pinProgress()
        defer { pinned?.unpin() }
        request.progress = pinned?.callback
        do {
            return try client.execute(request, operation: .send)
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
            try Validation.headerValue(token, name: "token")
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

    /// What a request needs, read under the lock without copying the rest.
    var target: (id: String, token: String, watermark: String?) {
        state.withLock { ($0.id, $0.token.value, $0.watermark) }
    }

    /// Before a send or upload leaves, in one critical section: records who
    /// sends it and its correlation id (so that a `wait` on another thread
    /// already knows it as the caller's), and reads the conversation id and
    /// token the request needs.
    private func targetForSending(by userId: String?, clientActivityID: String?) -> String {
        state.withLock { state in
            if let userId { state.noteSender(userId) }
            if let clientActivityID { state.sentActivityIDs.record(clientActivityID) }
            return state.token.value
        }
    }

    /// After it: when, from which `wait` times its first poll (0: never).
    let lastSendMs = Atomic(0)

    private func noteSent() {
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

    /// `dl_send_activity`.
    func send(_ activityJSON: JSONValue) throws(DirectLineError) -> JSONValue {
        let outgoing = try OutgoingActivity(activityJSON, version: client.version)
        let response = try post(body: outgoing.serializedBody(), clientActivityID: outgoing.clientActivityID,
                                sender: outgoing.sender)
        return try result(of: response, what: "send activity", clientActivityID: outgoing.clientActivityID)
    }

    /// `dl_send_activity` with the caller's JSON text (`name` is the
    /// argument, for errors): an activity the scanner accepts goes out as
    /// it is, with its clientActivityID spliced in, and the result is
    /// written without building a tree; any other text is parsed and
    /// written out again.
    func send(activityBytes bytes: UnsafeBufferPointer<UInt8>, name: String) throws(DirectLineError) -> SerializedJSON {
        guard let scanned = OutgoingActivity.scannedBody(bytes, version: client.version) else {
            let text = try Boundary.text(bytes, name: name)
            return .bytes(try send(Boundary.parse(text, name: name)).serializedBytes)
        }
        let response = try post(body: scanned.body, clientActivityID: scanned.clientActivityID, sender: scanned.sender)
        if let clientActivityID = scanned.clientActivityID,
           let written = Self.scannedResult(response, clientActivityID, generated: scanned.generated) {
            return .cString(written)
        }
        return .bytes(try result(of: response, what: "send activity", clientActivityID: scanned.clientActivityID).serializedBytes)
    }

    private func post(body: [UInt8], clientActivityID: String?, sender: String?) throws(DirectLineError) -> HTTPResponse {
        let token = targetForSending(by: sender, clientActivityID: clientActivityID)
        defer { noteSent() }
        return try post(client.requests.send(path: sendPath, payload: body, bearer: token),
                        clientActivityID: clientActivityID)
    }

    /// The 3.0 send result `{"id": ..., "clientActivityID": ...}` written
    /// straight from the service's answer, as a malloc'd C string, when the
    /// scanner accepts the answer and its id is a plain ASCII string or
    /// null: the bytes `result(of:)` would give. nil sends the answer down
    /// that path instead (and when malloc fails, which that path reports).
    /// `generated`: the id is known to come from `ClientActivityID.generate()`.
    static func scannedResult(_ response: HTTPResponse, _ clientActivityID: String,
                              generated: Bool = false) -> UnsafeMutablePointer<CChar>? {
        response.body.withUnsafeBufferPointer { body -> UnsafeMutablePointer<CChar>? in
            var id: UnsafeBufferPointer<UInt8>?
            if response.status != 204 && !body.isEmpty {
                // nil: declined, no "id", or an id that needs decoding.
                let plainID = JSONScanner.withObject(in: body, range: 0..<body.count) { members, _ -> UnsafeBufferPointer<UInt8>? in
                    guard let member = members.named("id") else { return nil }
                    let value = UnsafeBufferPointer(rebasing: body[member.value])
                    let plain = value.first == UInt8(ascii: "n")
                        || (value.first == UInt8(ascii: "\"") && !value.contains { $0 >= 0x80 || $0 == UInt8(ascii: "\\") })
                    return plain ? value : nil
                }
                guard let plainID else { return nil }
                id = plainID
            }
            var correlation = clientActivityID
            return correlation.withUTF8 { correlationBytes -> UnsafeMutablePointer<CChar>? in
                // A generated id (dlc- and hex digits) needs no escaping.
                let escaped: [UInt8]? = generated || ClientActivityID.isGenerated(clientActivityID) ? nil : {
                    var output: [UInt8] = []
                    JSONValue.writeString(clientActivityID, to: &output)
                    return output
                }()
                let head: StaticString = #"{"id":"#
                let middle: StaticString = #","clientActivityID":"#
                let null: StaticString = "null"
                let idCount = id?.count ?? null.utf8CodeUnitCount
                let correlationCount = escaped?.count ?? correlationBytes.count + 2
                let count = head.utf8CodeUnitCount + idCount + middle.utf8CodeUnitCount + correlationCount + 1
                guard let output = malloc(count + 1)?.assumingMemoryBound(to: UInt8.self) else { return nil }
                var writer = ByteWriter(at: output)
                head.withUTF8Buffer { writer.put($0) }
                if let id { writer.put(id) } else { null.withUTF8Buffer { writer.put($0) } }
                middle.withUTF8Buffer { writer.put($0) }
                if let escaped {
                    escaped.withUnsafeBufferPointer { writer.put($0) }
                } else {
                    writer.put(UInt8(ascii: "\""))
                    writer.put(correlationBytes)
                    writer.put(UInt8(ascii: "\""))
                }
                writer.put(UInt8(ascii: "}"))
                writer.put(0)
                return UnsafeMutableRawPointer(output).assumingMemoryBound(to: CChar.self)
            }
        }
    }

    /// 3.0 answers `{"id"}` (or 204); 1.1 answers 204. The result adds the
    /// activity's clientActivityID on 3.0.
    private func result(of response: HTTPResponse, what: String, clientActivityID: String?) throws(DirectLineError) -> JSONValue {
        do {
            return try checkedResult(of: response, what: what, clientActivityID: clientActivityID)
        } catch {
            // An answer that is not what the protocol says leaves the
            // outcome unknown: the caller needs the id to reconcile.
            var error = error
            error.clientActivityID = clientActivityID
            throw error
        }
    }

    private func checkedResult(of response: HTTPResponse, what: String, clientActivityID: String?) throws(DirectLineError) -> JSONValue {
        var result = JSONObject()
        guard client.version == .v3 else {
            // 1.1 answers 204. A body that is not JSON (an HTML page from a
            // proxy, say) means the service may never have seen the message.
            if !response.body.isEmpty { _ = try Responses.json(response, what: what) }
            return .object(result)
        }
        if response.status != 204, !response.body.isEmpty {
            let answer = try Responses.json(response, what: what)
            guard let id = answer.objectValue?["id"], id.stringValue != nil || id.isNull else {
                throw Responses.protocolError("the service's answer to \(what) has no string \"id\"", response)
            }
            result["id"] = id
        } else {
            result["id"] = .null
        }
        if let clientActivityID { result["clientActivityID"] = .string(clientActivityID) }
        return .object(result)
    }

    /// `dl_upload_file` and `dl_upload_bytes`: one raw attachment.
    func upload(userId: String, file: Uploads.File) throws(DirectLineError) -> JSONValue {
        let (body, contentType, disposition) = Uploads.raw(file)
        return try upload(userId: userId, body: body, contentType: contentType, disposition: disposition,
                          clientActivityID: nil)
    }

    /// `dl_upload_multipart`: `{"activity": {...}?, "files": [{"path" | "dataBase64", "contentType"?, "filename"?}]}`.
    func uploadMultipart(userId: String, manifest: JSONValue) throws(DirectLineError) -> JSONValue {
        let reader = try JSONReader(manifest, context: "upload")
        try reader.rejectUnknownKeys(["activity", "files"])
        guard let fileValues = reader.object["files"]?.arrayValue, !fileValues.isEmpty else {
            throw .invalidArgument("upload needs a non-empty \"files\" array")
        }
        var files: [Uploads.File] = []
        for (index, value) in fileValues.enumerated() {
            files.append(try Self.manifestFile(value, context: "upload.files[\(index)]"))
        }
        var activityBytes: [UInt8]?
        var clientActivityID: String?
        if let activity = try reader.object("activity") {
            let outgoing = try OutgoingActivity(Self.completed(activity.object, userId: userId, version: client.version),
                                                version: client.version)
            activityBytes = try outgoing.serializedBody()
            clientActivityID = outgoing.clientActivityID
        }
        let partType = client.version == .v3 ? "application/vnd.microsoft.activity" : "application/vnd.microsoft.bot.message"
        let (body, contentType) = Uploads.multipart(files: files, activity: activityBytes, activityType: partType)
        return try upload(userId: userId, body: body, contentType: contentType, disposition: nil,
                          clientActivityID: clientActivityID)
    }

    /// An upload's activity may leave out what the upload already says:
    /// `from` defaults to the uploading user, and a 3.0 `type` to "message".
    private static func completed(_ activity: JSONObject, userId: String, version: ProtocolVersion) -> JSONValue {
        var activity = activity
        switch version {
        case .v3:
            if activity["type"] == nil { activity["type"] = .string("message") }
            if activity["from"] == nil { activity["from"] = .object(JSONObject([("id", .string(userId))])) }
        case .v1:
            if activity["from"] == nil { activity["from"] = .string(userId) }
        }
        return .object(activity)
    }

    private static func manifestFile(_ value: JSONValue, context: String) throws(DirectLineError) -> Uploads.File {
        let reader = try JSONReader(value, context: context)
        try reader.rejectUnknownKeys(["path", "dataBase64", "contentType", "filename"])
        let contentType = try reader.string("contentType")
        let filename = try reader.string("filename")
        switch (try reader.string("path"), try reader.string("dataBase64")) {
        case let (path?, nil):
            guard !path.isEmpty else { throw .invalidArgument("\(context).path must not be empty") }
            return try Uploads.File(content: .file(OpenFile(path: path)), contentType: contentType,
                                    filename: filename, defaultName: Uploads.lastComponent(of: path))
        case let (nil, data?):
            guard let bytes = Base64.decode(data) else { throw .invalidArgument("\(context).dataBase64 is not valid base64") }
            return try Uploads.File(content: .bytes(bytes), contentType: contentType, filename: filename, defaultName: "file")
        default:
            throw .invalidArgument("\(context) needs exactly one of \"path\" and \"dataBase64\"")
        }
    }

    /// Refuses an upload body over the client's `maxUploadBytes`.
    func checkUploadSize(_ length: Int64) throws(DirectLineError) {
        let limit = client.config.maxUploadBytes
        guard length <= limit else {
            throw DirectLineError(.DL_ERR_TOO_LARGE,
                                  "the upload is \(length) bytes; the limit is \(limit) (config maxUploadBytes; the service accepts about 4 MB)")
        }
    }

    private func upload(userId: String, body: RequestBody, contentType: String, disposition: String?,
                        clientActivityID: String?) throws(DirectLineError) -> JSONValue {
        try checkUploadSize(body.length)
        let token = targetForSending(by: userId, clientActivityID: clientActivityID)
        defer { noteSent() }
        let response = try post(client.requests.upload(conversationId: conversationID, userId: userId, body: body,
                                                       contentType: contentType, disposition: disposition,
                                                       bearer: token),
                                clientActivityID: clientActivityID)
        return try result(of: response, what: "upload", clientActivityID: clientActivityID)
    }

    /// `dl_get_activities`: the activities after the stored watermark; the
    /// watermark advances unless the service answers a null or missing one.
    func receive() throws(DirectLineError) -> JSONValue {
        let current = target
        let (answer, watermark) = try page(after: current.watermark, id: current.id, token: current.token)
        if let watermark { state.withLock { $0.watermark = watermark } }
        return answer
    }

    /// One GET of the activities after `watermark`: the service's answer and
    /// the watermark it gave (nil when null or missing). Stores nothing.
    func page(after watermark: String?, id: String, token: String) throws(DirectLineError) -> (JSONValue, String?) {
        let response = try client.execute(
            client.requests.receive(conversationId: id, watermark: watermark, bearer: token), operation: .other)
        let answer = try Responses.json(response, what: "get activities")
        guard let object = answer.objectValue, object[listKey]?.arrayValue != nil else {
            throw Responses.protocolError("the service's answer has no \"\(listKey)\" array", response)
        }
        return (answer, object["watermark"]?.stringValue)
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
