#if canImport(Glibc)
import Glibc
#endif

// The C ABI. Every function here is a thin shell: it decodes its arguments,
// calls into the protocol layer, and goes through `Boundary.call` so that
// no Swift error or trap can reach the caller. The doc comments below are
// copied into include/directline.h by scripts/generate_header.py.

private nonisolated(unsafe) let versionCString: UnsafeMutablePointer<CChar>? = strdup(LibraryVersion.string)
private nonisolated(unsafe) let statusNames: [UnsafeMutablePointer<CChar>?] = Status.allCases.map { strdup($0.name) }
private nonisolated(unsafe) let unknownStatusName: UnsafeMutablePointer<CChar>? = strdup("DL_ERR_UNKNOWN")

/// The library's version as "MAJOR.MINOR.PATCH".
///
/// Returns a static string: never free it.
@c public func dl_version() -> UnsafePointer<CChar>? {
    UnsafePointer(versionCString)
}

/// The library's version as MAJOR*10000 + MINOR*100 + PATCH.
///
/// Equals DL_VERSION_NUMBER when the header matches the loaded library.
@c public func dl_version_number() -> UInt32 {
    LibraryVersion.number
}

/// The name of a status code, e.g. "DL_ERR_BOT"; "DL_ERR_UNKNOWN" for a
/// value this version does not know.
///
/// Returns a static string: never free it.
@c public func dl_status_name(_ status: Int32) -> UnsafePointer<CChar>? {
    guard let known = Status(rawValue: status) else { return UnsafePointer(unknownStatusName) }
    return UnsafePointer(statusNames[Int(known.rawValue)])
}

/// Frees a string this library returned through an `out_json` slot.
///
/// NULL is a no-op. Never pass a string from anywhere else, and never free
/// the static strings of dl_version() and dl_status_name().
@c public func dl_string_free(_ string: UnsafeMutablePointer<CChar>?) {
    free(string)
}

/// Creates a client from a JSON configuration (see docs/json.md):
/// `{"endpoint": "...", "protocol": "3.0" | "1.1", "secret": "..." or
/// "token": "..." or "tokenEndpoint": "https://...", "regionalSettingsEndpoint",
/// "timeoutMs", "connectTimeoutMs", "retry": {...}, "userAgent", "botAgent",
/// "headers": {"Name": "value"}, "caFile", "proxy", "insecureSkipTlsVerify",
/// "allowInsecureHttp", "maxUploadBytes"}`. Unknown keys are refused.
///
/// Every request carries `x-ms-bot-agent: DirectLine/3.0 (libdirectline
/// VERSION[; botAgent])`; `headers` go with every Direct Line request and
/// the stream's upgrade (not to a proxy, nor to another origin). A client
/// with a `tokenEndpoint` holds no credential: it `GET`s a token there for
/// each dl_conversation_start() and dl_token_generate() (Copilot Studio:
/// see docs/copilot-studio.md). With `regionalSettingsEndpoint` (or a
/// Copilot Studio token endpoint and no `endpoint`), the Direct Line host
/// is read from the regional settings on first use.
///
/// Constructor. On DL_OK, `*out_client` receives a handle the caller frees
/// with dl_client_free(); on error it is set to NULL. `out_json` receives
/// `{}` or the error JSON; free it with dl_string_free(). Sends nothing.
///
/// Returns DL_OK or DL_ERR_INVALID_ARGUMENT.
@c public func dl_client_new(_ config_json: UnsafePointer<CChar>?,
                             _ out_client: UnsafeMutablePointer<OpaquePointer?>?,
                             _ out_json: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> Int32 {
    out_client?.pointee = nil
    return Boundary.call(out_json) { () throws(DirectLineError) -> JSONValue in
        guard let out_client else { throw .invalidArgument("out_client must not be NULL") }
        let config = try ClientConfig(json: Boundary.requiredJSON(config_json, name: "config_json"))
        guard let handle = handles.insert(DirectLineClient(config: config)) else {
            throw .internalError("too many live handles")
        }
        out_client.pointee = handle
        return .object(JSONObject())
    }
}

/// Frees a client. Conversations started from it stay usable until they
/// are freed themselves (they keep the client's transport alive).
///
/// Destructor. NULL is a no-op returning DL_OK; a handle already freed
/// returns DL_ERR_INVALID_HANDLE.
@c public func dl_client_free(_ client: OpaquePointer?) -> Int32 {
    guard client != nil else { return Status.ok.rawValue }
    return Boundary.call(nil) { () throws(DirectLineError) -> JSONValue in
        try handles.remove(client, as: DirectLineClient.self)
        return .null
    }
}

/// Exchanges the client's secret for a token, without starting a
/// conversation or contacting the bot. With a `tokenEndpoint` client:
/// `GET` that endpoint (`request_json` NULL or `{}`), and `out_json`
/// receives `{"token", "expires_in"?, "conversationId"?}`. 3.0: `POST tokens/generate`;
/// `request_json` may be NULL, `{}` or `{"user": {"id": "dl_...", "name":
/// "..."}, "trustedOrigins": [...]}`, and `out_json` receives the service's
/// Conversation object (`conversationId`, `token`, `expires_in`). 1.1:
/// `POST /api/tokens/conversation` (no body: `request_json` must be NULL or
/// `{}`), and `out_json` receives `{"token": "..."}`.
///
/// A client configured with that token (`"token"` in its config) can then
/// start the conversation and use it. `out_json` contains the token: treat
/// it as a secret.
///
/// Returns DL_OK, DL_ERR_INVALID_ARGUMENT, DL_ERR_INVALID_HANDLE, or a
/// network or service status (DL_ERR_FORBIDDEN when the client holds a
/// token rather than the secret).
@c public func dl_token_generate(_ client: OpaquePointer?, _ request_json: UnsafePointer<CChar>?,
                                 _ out_json: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> Int32 {
    Boundary.call(out_json) { () throws(DirectLineError) -> JSONValue in
        let owner = try handles.lookup(client, as: DirectLineClient.self)
        return try owner.generateToken(Boundary.json(request_json, name: "request_json"))
    }
}

/// Refreshes a token before it expires; the old one stays valid until its
/// own expiry. 3.0: `POST tokens/refresh` with `token`, and `out_json`
/// receives the service's Conversation object with the new `token` and
/// `expires_in`. 1.1: the renew path needs the conversation id, so `token`
/// must be the current token of a conversation handle from this client;
/// that handle keeps the new token too, and `out_json` receives
/// `{"token": "..."}`. Handles refresh their own tokens automatically: this
/// is for tokens the application hands to others.
///
/// Returns DL_OK, DL_ERR_INVALID_ARGUMENT, DL_ERR_INVALID_HANDLE,
/// DL_ERR_TOKEN_EXPIRED (too late to refresh), or a network or service status.
@c public func dl_token_refresh(_ client: OpaquePointer?, _ token: UnsafePointer<CChar>?,
                                _ out_json: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> Int32 {
    Boundary.call(out_json) { () throws(DirectLineError) -> JSONValue in
        let owner = try handles.lookup(client, as: DirectLineClient.self)
        return try owner.refreshToken(Boundary.requiredString(token, name: "token"))
    }
}

/// Starts a conversation: 3.0 `POST /v3/directline/conversations`, 1.1
/// `POST /api/conversations`. `request_json` may be NULL or `{}`; on 3.0 it
/// may carry `{"user": {"id": "dl_...", "name": "..."}, "trustedOrigins": [...],
/// "locale": "fr-FR"}`. `locale` is a BCP 47 language tag (checked; the
/// bot's welcome can then be in that language) and is refused on 1.1,
/// whose start has no body. A `tokenEndpoint` client first `GET`s a fresh
/// token there and starts with it (joining the conversation the token is
/// bound to, when it is).
///
/// Constructor. On DL_OK, `*out_conversation` receives a handle (free it with
/// dl_conversation_free()) that holds the conversation id and the token the
/// service issued for it, and `out_json` the service's Conversation object
/// (it contains that token: treat it as a secret). The handle refreshes
/// that token on its own at half its remaining life (`expires_in`), on a
/// background thread shared by all handles, until the handle is freed or
/// the conversation ended.
///
/// Returns DL_OK, DL_ERR_INVALID_ARGUMENT, DL_ERR_INVALID_HANDLE, or a
/// network or service status (DL_ERR_NETWORK ... DL_ERR_PROTOCOL).
@c public func dl_conversation_start(_ client: OpaquePointer?, _ request_json: UnsafePointer<CChar>?,
                                     _ out_conversation: UnsafeMutablePointer<OpaquePointer?>?,
                                     _ out_json: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> Int32 {
    out_conversation?.pointee = nil
    return Boundary.call(out_json) { () throws(DirectLineError) -> JSONValue in
        let owner = try handles.lookup(client, as: DirectLineClient.self)
        guard let out_conversation else { throw .invalidArgument("out_conversation must not be NULL") }
        let request = try Boundary.json(request_json, name: "request_json")
        let (conversation, result) = try owner.startConversation(request)
        guard let handle = handles.insert(conversation) else { throw .internalError("too many live handles") }
        out_conversation.pointee = handle
        return result
    }
}

/// Attaches to a conversation started elsewhere, for example one saved
/// earlier with dl_conversation_state(): `state_json` is
/// `{"conversationId": "...", "token": "...", "watermark": "...",
/// "streamUrl": "...", "tokenExpiresAt": "2026-11-21T02:30:00Z" or
/// "expires_in": N, "tokenLifetime": N, "reconnect": false}`; only
/// `conversationId` is required
/// (without `token`, the client's credential is used; a `tokenEndpoint`
/// client has none, so it needs `token`). A token whose expiry
/// is known is refreshed automatically, as for dl_conversation_start().
///
/// Without `reconnect` nothing is sent. With `"reconnect": true` (3.0 only)
/// the library first calls `GET /v3/directline/conversations/{id}?watermark=`
/// and keeps the token, expiry and stream URL the service answers; reading
/// then resumes from the saved watermark, so no reply is lost or repeated.
///
/// Constructor. On DL_OK, `*out_conversation` receives a handle to free with
/// dl_conversation_free(), and `out_json` the same as dl_conversation_info().
///
/// Returns DL_OK, DL_ERR_INVALID_ARGUMENT or DL_ERR_INVALID_HANDLE; with
/// `reconnect`, also a network or service status (DL_ERR_TOKEN_EXPIRED when
/// the saved token has expired).
@c public func dl_conversation_open(_ client: OpaquePointer?, _ state_json: UnsafePointer<CChar>?,
                                    _ out_conversation: UnsafeMutablePointer<OpaquePointer?>?,
                                    _ out_json: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> Int32 {
    out_conversation?.pointee = nil
    return Boundary.call(out_json) { () throws(DirectLineError) -> JSONValue in
        let owner = try handles.lookup(client, as: DirectLineClient.self)
        guard let out_conversation else { throw .invalidArgument("out_conversation must not be NULL") }
        let conversation = try owner.openConversation(Boundary.requiredJSON(state_json, name: "state_json"))
        guard let handle = handles.insert(conversation) else { throw .internalError("too many live handles") }
        out_conversation.pointee = handle
        return conversation.info()
    }
}

/// Describes a conversation: `{"conversationId", "protocol", "watermark",
/// "streamUrl" (without its token), "tokenExpiresAt" (ISO-8601 UTC or null),
/// "autoRefresh" (true while the library will refresh the token on its own),
/// "tokenRefreshError" (why the last automatic refresh failed, or null),
/// "ended"}`. Never contains the token (see dl_conversation_state()). Sends
/// nothing.
///
/// Returns DL_OK or DL_ERR_INVALID_HANDLE.
@c public func dl_conversation_info(_ conversation: OpaquePointer?, _ out_json: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> Int32 {
    Boundary.call(out_json) { () throws(DirectLineError) -> JSONValue in
        try handles.lookup(conversation, as: Conversation.self).info()
    }
}

/// The conversation's state to save and resume later with
/// dl_conversation_open(): `{"conversationId", "token", "watermark",
/// "streamUrl", "tokenExpiresAt", "tokenLifetime"}` (`tokenLifetime`: the
/// seconds the service gave the token, or null). It contains the conversation's token,
/// so store it as a secret; `token` is null when the handle uses the
/// client's secret (which is never handed out). Sends nothing.
///
/// While listening, `watermark` is that of the last page dl_conversation_next()
/// (or dl_conversation_wait()) handed out in full: resuming from it repeats
/// nothing taken and loses nothing queued.
///
/// Returns DL_OK or DL_ERR_INVALID_HANDLE.
@c public func dl_conversation_state(_ conversation: OpaquePointer?, _ out_json: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> Int32 {
    Boundary.call(out_json) { () throws(DirectLineError) -> JSONValue in
        try handles.lookup(conversation, as: Conversation.self).savedState()
    }
}

/// Renews the conversation's token now and keeps the new one in the handle
/// (3.0 `POST tokens/refresh`; 1.1 `GET tokens/{id}/renew`, then POST if
/// the service refuses GET with 405). Not needed in normal use: a handle
/// whose token expires refreshes it on its own at half its remaining life,
/// on a background thread, without blocking other calls. The old token stays
/// valid until its own expiry. 1.1 does not say how long the new token
/// lives; the handle assumes as long as the previous one.
///
/// `out_json` receives the same as dl_conversation_info().
///
/// Returns DL_OK, DL_ERR_INVALID_HANDLE, DL_ERR_INVALID_ARGUMENT (the handle
/// uses the client's secret, which never expires), DL_ERR_TOKEN_EXPIRED (too
/// late: start a new conversation), or a network or service status.
@c public func dl_conversation_refresh(_ conversation: OpaquePointer?, _ out_json: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> Int32 {
    Boundary.call(out_json) { () throws(DirectLineError) -> JSONValue in
        let conversationHandle = try handles.lookup(conversation, as: Conversation.self)
        try conversationHandle.refreshToken()
        return conversationHandle.info()
    }
}

/// Frees a conversation handle (the conversation itself goes on at the
/// service; see dl_conversation_end to end it). Its token is no longer
/// refreshed, and a dl_conversation_wait(), dl_conversation_confirm() or
/// dl_get_activities() running on another thread returns DL_ERR_CANCELLED
/// within about 50 ms (a request in flight is aborted at once); other calls
/// already running finish, and the progress callback is never called after
/// this returns. Listening stops (a dl_conversation_next() blocked on another
/// thread returns DL_ERR_CANCELLED at once), and the descriptor of
/// dl_conversation_fd() is closed once no call on the handle is running.
///
/// Destructor. NULL is a no-op returning DL_OK; a handle already freed
/// returns DL_ERR_INVALID_HANDLE.
@c public func dl_conversation_free(_ conversation: OpaquePointer?) -> Int32 {
    guard conversation != nil else { return Status.ok.rawValue }
    return Boundary.call(nil) { () throws(DirectLineError) -> JSONValue in
        try handles.remove(conversation, as: Conversation.self).close()
        return .null
    }
}

/// Sends one activity (3.0) or message (1.1) given as JSON.
///
/// 3.0: an Activity with a string `type` and `from.id`; the library adds
/// `channelData.clientActivityID` (a random id) unless the caller set one,
/// and `out_json` receives `{"id": "...", "clientActivityID": "..."}`.
/// 1.1: a Message (`from` is a string); `out_json` receives `{}`.
/// More than 262,144 bytes serialized is refused with DL_ERR_TOO_LARGE.
///
/// On failure the error JSON's `delivery` says whether the activity may
/// have reached the bot ("unknown") or provably did not ("not_sent"), and
/// on 3.0 it carries the activity's `clientActivityID`: after "unknown",
/// dl_conversation_confirm() tells whether it arrived.
///
/// Returns DL_OK, DL_ERR_INVALID_ARGUMENT, DL_ERR_INVALID_HANDLE,
/// DL_ERR_TOO_LARGE, or a network or service status.
@c public func dl_send_activity(_ conversation: OpaquePointer?, _ activity_json: UnsafePointer<CChar>?,
                                _ out_json: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> Int32 {
    Boundary.call(out_json) { () throws(DirectLineError) -> SendResult in
        let conversationHandle = try handles.lookup(conversation, as: Conversation.self)
        return try conversationHandle.send(activityJSON: Boundary.requiredBytes(activity_json, name: "activity_json"),
                                           name: "activity_json")
    }
}

/// Sends a plain text message from `user_id`: the 3.0 activity
/// `{"type": "message", "from": {"id": user_id}, "text": text}` or the 1.1
/// message `{"from": user_id, "text": text}`. Results and statuses as
/// dl_send_activity().
@c public func dl_send_text(_ conversation: OpaquePointer?, _ user_id: UnsafePointer<CChar>?,
                            _ text: UnsafePointer<CChar>?, _ out_json: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> Int32 {
    Boundary.call(out_json) { () throws(DirectLineError) -> SendResult in
        let conversationHandle = try handles.lookup(conversation, as: Conversation.self)
        let user = try Boundary.identifier(user_id, name: "user_id")
        let message = try Boundary.requiredString(text, name: "text")
        return try conversationHandle.send(OutgoingActivity.text(message, from: user, version: conversationHandle.client.version))
    }
}

/// Reads the activities (3.0) or messages (1.1) that arrived after the
/// handle's watermark: `out_json` receives the service's ActivitySet
/// `{"activities": [...], "watermark": "..."}` or MessageSet
/// `{"messages": [...], "watermark": "..."}`, as the service wrote it
/// (checked to be JSON of that shape, not rewritten). The handle's
/// watermark advances to the one returned; a null or missing watermark
/// never overwrites it. Call again until the list is empty to page.
///
/// Freeing the handle from another thread aborts the read (DL_ERR_CANCELLED).
/// While the conversation listens (dl_conversation_listen()) it is refused
/// with DL_ERR_INVALID_ARGUMENT: the listener is the one reader.
///
/// Returns DL_OK, DL_ERR_INVALID_ARGUMENT, DL_ERR_INVALID_HANDLE,
/// DL_ERR_CANCELLED, or a network or service status.
@c public func dl_get_activities(_ conversation: OpaquePointer?, _ out_json: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> Int32 {
    Boundary.call(out_json) { () throws(DirectLineError) -> JSONValue in
        try handles.lookup(conversation, as: Conversation.self).receive()
    }
}

/// Waits for the bot's replies, so callers need no polling loop of their
/// own. Polls the activities after the handle's watermark (first
/// `afterSendMs` after the handle's last send, then every `intervalMs`)
/// until an activity arrives that is not from the caller's users, or
/// `timeoutMs` passes. `options_json` may be NULL or
/// `{"timeoutMs": 10000, "intervalMs": 1000, "afterSendMs": 300,
/// "userId": "...", "includeOwn": false, "maxBytes": 16777216}`; the
/// caller's users are `userId` or, by default, every user this handle has
/// sent or uploaded as.
///
/// `out_json` receives `{"activities": [...], "watermark": "...",
/// "timedOut": bool}` (1.1: `"messages"`): the new activities from others
/// (and the caller's own too with `includeOwn`), in order, each at most once
/// even if the service delivers it twice. A timeout is not an error:
/// `timedOut` is true and the list holds what arrived. The watermark
/// advances as with dl_get_activities(), so the next wait returns only newer
/// replies; a wait that fails part-way moves nothing, so the next one
/// returns what it had read. Once the pages the list holds activities from
/// reach `maxBytes` (1 to 64 MiB, default 16 MiB), the wait returns at once
/// with `"more": true` (and `timedOut` false); the next wait returns the
/// rest, nothing lost.
///
/// Blocks the calling thread for at most `timeoutMs`, or one second when
/// `timeoutMs` is shorter (so that a zero timeout still reads once), also
/// when the service does not answer: each request gets the time left.
/// Freeing the handle from another thread ends the wait with
/// DL_ERR_CANCELLED within about 50 ms, aborting a request in flight.
///
/// While the conversation listens (dl_conversation_listen()) the wait sends
/// nothing: it takes from the listener's queue (with the same result, and
/// `afterSendMs` and `intervalMs` unused) until a reply from others is
/// among what it took or `timeoutMs` passes; typing activities (which the
/// stream brings) are taken and left out, being no reply. Unlistening or
/// freeing ends it with DL_ERR_CANCELLED at once, and a listener in state
/// "failed" gives its failure once the queue is empty.
///
/// Returns DL_OK, DL_ERR_INVALID_ARGUMENT, DL_ERR_INVALID_HANDLE,
/// DL_ERR_CANCELLED, or a network or service status.
@c public func dl_conversation_wait(_ conversation: OpaquePointer?, _ options_json: UnsafePointer<CChar>?,
                                    _ out_json: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> Int32 {
    Boundary.call(out_json) { () throws(DirectLineError) -> JSONValue in
        let conversationHandle = try handles.lookup(conversation, as: Conversation.self)
        return try conversationHandle.wait(WaitOptions(json: Boundary.json(options_json, name: "options_json")))
    }
}

/// Reconciles a send whose outcome is unknown (its error said `"delivery":
/// "unknown"`, e.g. a timeout or a 502): looks for the activity's
/// `clientActivityID` (in the result of dl_send_activity() and, on 3.0, in
/// the error JSON of a failed send or upload) in the conversation's
/// activities, from the start, without moving the handle's watermark.
/// `options_json` may be NULL or `{"timeoutMs": 0}`: how long to keep
/// looking (polling every 500 ms) in case the service is still processing it.
/// The call ends within `timeoutMs` plus the client's `timeoutMs` (the last
/// look must finish); a look that cannot read the conversation to its end
/// in that time fails with DL_ERR_TIMEOUT, never `"delivered": false`.
///
/// `out_json` receives `{"delivered": true, "id": "...", "clientActivityID":
/// "..."}` or `{"delivered": false, "clientActivityID": "..."}`. Delivered:
/// do not send it again. Not delivered after the service had time to store
/// it: sending it again (with the same clientActivityID) is safe. 3.0 only:
/// 1.1 messages carry no correlation id (DL_ERR_INVALID_ARGUMENT).
///
/// Returns DL_OK, DL_ERR_INVALID_ARGUMENT, DL_ERR_INVALID_HANDLE,
/// DL_ERR_CANCELLED (the handle was freed meanwhile), or a network or
/// service status.
@c public func dl_conversation_confirm(_ conversation: OpaquePointer?, _ client_activity_id: UnsafePointer<CChar>?,
                                       _ options_json: UnsafePointer<CChar>?,
                                       _ out_json: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> Int32 {
    Boundary.call(out_json) { () throws(DirectLineError) -> JSONValue in
        let conversationHandle = try handles.lookup(conversation, as: Conversation.self)
        let id = try Boundary.identifier(client_activity_id, name: "client_activity_id")
        return try conversationHandle.confirm(clientActivityID: id,
                                              options: ConfirmOptions(json: Boundary.json(options_json, name: "options_json")))
    }
}

/// Ends the conversation for `user_id`. 3.0: sends the activity
/// `{"type": "endOfConversation", "from": {"id": user_id}}` and `out_json`
/// receives `{"id": "...", "clientActivityID": "..."}` as dl_send_activity().
/// 1.1 has no end-of-conversation message: nothing is sent and `out_json`
/// receives `{}`. Either way the handle stops refreshing its token, so the
/// conversation lapses when the token expires; the handle must still be
/// freed with dl_conversation_free(). A listener reads to the end, then
/// stops in state "ended".
///
/// Returns as dl_send_activity().
@c public func dl_conversation_end(_ conversation: OpaquePointer?, _ user_id: UnsafePointer<CChar>?,
                                   _ out_json: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> Int32 {
    Boundary.call(out_json) { () throws(DirectLineError) -> SendResult in
        let conversationHandle = try handles.lookup(conversation, as: Conversation.self)
        return try conversationHandle.end(userId: Boundary.identifier(user_id, name: "user_id"))
    }
}

/// Starts receiving the conversation's activities in the background, to
/// take with dl_conversation_next() (or dl_conversation_wait()) and to
/// watch with dl_conversation_fd(). `options_json` may be NULL or
/// `{"mode": "auto" | "polling" | "websocket", "pollIntervalMs": 1000,
/// "includeOwn": false, "maxQueued": 10000, "streamSilenceMs": 90000}`
/// (`pollIntervalMs` 50 to 3600000, `maxQueued` 1 to 1000000,
/// `streamSilenceMs` 200 to 3600000; unknown keys are refused).
///
/// Modes: "websocket" reads the conversation's WebSocket stream (3.0 only;
/// it needs libcurl 8.11 or later built with ws and wss, looked up at run
/// time); "polling" sends `GET activities?watermark=` at once while pages
/// come with new activities, else every `pollIntervalMs`; "auto" (the
/// default) streams on 3.0 when the libcurl in use can, and polls
/// otherwise (always on 1.1). "websocket" where that is impossible returns
/// DL_ERR_UNSUPPORTED and starts nothing. Typing activities come only over
/// the stream.
///
/// Both run on the library's one transfer thread, shared by every
/// conversation (no thread per listener), with the conversation's current
/// token. The stream connects with a fresh URL from `GET conversations/{id}
/// ?watermark=` (after `GET activities` when nothing was read yet), which
/// the service replays from that watermark; its keep-alives are ignored.
/// A dropped or closed stream, a refused upgrade, or one silent for
/// `streamSilenceMs` is connected again (state "reconnecting": at once the
/// first time, then with backoff, honouring Retry-After). Every activity
/// after the handle's watermark reaches next() once, in the service's
/// order, across drops, reconnects, failed polls and token refreshes;
/// activities the service repeats are dropped by id, and the caller's own
/// (its users, its clientActivityIDs) are skipped unless `includeOwn`
/// (dl_conversation_confirm() still finds them). When `maxQueued`
/// activities wait unread, reading stops (the stream's socket is paused,
/// polling stops) until next() drains the queue: nothing is lost. State
/// "failed" (for good) follows a refusal (401, 403, 404, an expired token
/// that was not replaced), a TLS failure, or a stream closed with reason
/// `collision` (another client holds it; DL_ERR_CONFLICT).
/// dl_conversation_end(), or an endOfConversation activity, ends it in
/// state "ended" once what came before is read.
///
/// While listening, dl_get_activities() is refused (DL_ERR_INVALID_ARGUMENT)
/// and dl_conversation_wait() takes from the queue. `out_json` receives
/// `{"mode": "websocket" | "polling", "state": "connecting"}`; listening again while a
/// listener runs (failed or ended included; unlisten to start afresh)
/// starts nothing and reports its mode and state.
///
/// Returns DL_OK, DL_ERR_INVALID_ARGUMENT, DL_ERR_INVALID_HANDLE,
/// DL_ERR_UNSUPPORTED, or DL_ERR_IO (no eventfd could be made).
@c public func dl_conversation_listen(_ conversation: OpaquePointer?, _ options_json: UnsafePointer<CChar>?,
                                      _ out_json: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> Int32 {
    Boundary.call(out_json) { () throws(DirectLineError) -> JSONValue in
        let conversationHandle = try handles.lookup(conversation, as: Conversation.self)
        return try conversationHandle.listen(ListenOptions(json: Boundary.json(options_json, name: "options_json")))
    }
}

/// Takes what the listener queued since the last call: `out_json`
/// receives `{"activities": [...], "watermark": "...", "state": "...",
/// "mode": "websocket" | "polling", "timedOut": false}` (`"activities"` on 1.1 too),
/// in the service's order, each activity once. `state` is "connecting",
/// "online", "reconnecting", "ended" or "failed"; a call returns as soon as
/// activities are queued or the state changed since it was last reported.
/// `watermark` is the handle's (what dl_conversation_state() saves): that
/// of the last page handed out in full. Whole pages are handed out, up to
/// 16 MiB of activities a call (at least one page).
///
/// Blocks up to `timeout_ms` (0: never; -1: no limit) while nothing is
/// queued, waiting on the descriptor of dl_conversation_fd(), never holding
/// a lock; a timeout is DL_OK with `"timedOut": true` and no activities.
/// In state "failed" it hands out what is still queued, then returns that
/// failure's status and error JSON on every call. Unlistening or freeing
/// the handle from another thread ends a blocked call with DL_ERR_CANCELLED.
///
/// Returns DL_OK, DL_ERR_INVALID_ARGUMENT (not listening, or `timeout_ms`
/// below -1), DL_ERR_INVALID_HANDLE, DL_ERR_CANCELLED, or the status of the
/// failure that stopped the listener.
@c public func dl_conversation_next(_ conversation: OpaquePointer?, _ timeout_ms: Int32,
                                    _ out_json: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> Int32 {
    Boundary.call(out_json) { () throws(DirectLineError) -> JSONValue in
        let conversationHandle = try handles.lookup(conversation, as: Conversation.self)
        guard timeout_ms >= -1 else {
            throw .invalidArgument("timeout_ms must be -1 (no limit), 0 (do not block) or a number of milliseconds")
        }
        return try conversationHandle.next(timeoutMs: Int(timeout_ms))
    }
}

/// A file descriptor that is readable exactly while dl_conversation_next()
/// with a zero timeout would return something (activities queued, a state
/// not yet reported, or a failure): level-triggered, for poll(), epoll,
/// libuv, GLib or asyncio's add_reader. Only wait for it to be readable;
/// never read, write or close it. `*out_fd` receives it (-1 on error) and
/// `out_json` `{"fd": N}`.
///
/// It is an eventfd, close-on-exec and non-blocking, owned by the handle:
/// made by the first listen or fd call, the same one for the handle's life
/// (across unlisten and listen), and closed when the handle is freed, once
/// no call on it is running (take it out of your poll set first). Not
/// readable while not listening. A forked child inherits it with the
/// handle's other state.
///
/// Returns DL_OK, DL_ERR_INVALID_ARGUMENT (`out_fd` is NULL),
/// DL_ERR_INVALID_HANDLE, or DL_ERR_IO (no eventfd could be made).
@c public func dl_conversation_fd(_ conversation: OpaquePointer?, _ out_fd: UnsafeMutablePointer<Int32>?,
                                  _ out_json: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> Int32 {
    out_fd?.pointee = -1
    return Boundary.call(out_json) { () throws(DirectLineError) -> JSONValue in
        let conversationHandle = try handles.lookup(conversation, as: Conversation.self)
        guard let out_fd else { throw .invalidArgument("out_fd must not be NULL") }
        let descriptor = try conversationHandle.listener.descriptor()
        out_fd.pointee = descriptor
        return .object(JSONObject([("fd", .integer(descriptor))]))
    }
}

/// Stops listening: the stream is closed with a normal close frame, or
/// polling stops (a poll in flight is abandoned); a
/// dl_conversation_next() or dl_conversation_wait() blocked on another
/// thread returns DL_ERR_CANCELLED, and what was queued and not taken is
/// dropped. The handle's watermark (dl_conversation_state()) still points
/// before what was dropped, so a later read or listen gets it again.
/// Harmless when not listening.
///
/// `out_json` receives `{"dropped": N, "watermark": "..."}`: the activities
/// dropped, and the handle's watermark.
///
/// Returns DL_OK or DL_ERR_INVALID_HANDLE.
@c public func dl_conversation_unlisten(_ conversation: OpaquePointer?,
                                        _ out_json: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> Int32 {
    Boundary.call(out_json) { () throws(DirectLineError) -> JSONValue in
        try handles.lookup(conversation, as: Conversation.self).unlisten()
    }
}

/// Uploads one file from disk as a raw attachment:
/// `POST .../upload?userId=` with the file as the body, `Content-Type` and
/// `Content-Disposition: name="file"; filename="..."`. The file is streamed,
/// never read whole into memory (a file that reports no size, such as one
/// under /proc, is read to its end first, up to 64 MiB).
///
/// `content_type` may be NULL (guessed from the file name's extension,
/// `application/octet-stream` otherwise); `filename` may be NULL (the path's
/// last component). In the file name, `"`, CR, LF and `%` are sent as
/// `%22`, `%0D`, `%0A`, `%25`, and `\` as `\\`. A name that is not plain
/// ASCII goes out as RFC 8187 `filename*=UTF-8''...` after an ASCII
/// `filename` fallback (each other character `_`), so that the header
/// stays ASCII. 3.0: `out_json` receives `{"id": "..."}`; 1.1: `{}`.
///
/// `path` is bytes, as the file system holds it: it need not be UTF-8, but
/// the name sent must be, so give `filename` when the path's last component
/// is not.
///
/// Returns DL_OK, DL_ERR_INVALID_ARGUMENT, DL_ERR_INVALID_HANDLE, DL_ERR_IO
/// (missing or unreadable file: nothing is sent), DL_ERR_TOO_LARGE (over the
/// client's maxUploadBytes, default 4 MiB: nothing is sent), DL_ERR_CANCELLED,
/// or a network or service status.
@c public func dl_upload_file(_ conversation: OpaquePointer?, _ user_id: UnsafePointer<CChar>?,
                              _ path: UnsafePointer<CChar>?, _ content_type: UnsafePointer<CChar>?,
                              _ filename: UnsafePointer<CChar>?,
                              _ out_json: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> Int32 {
    Boundary.call(out_json) { () throws(DirectLineError) -> SendResult in
        let conversationHandle = try handles.lookup(conversation, as: Conversation.self)
        let user = try Boundary.identifier(user_id, name: "user_id")
        let file = try Uploads.File.onDisk(pathBytes: Array(Boundary.requiredBytes(path, name: "path")),
                                           contentType: Boundary.string(content_type, name: "content_type"),
                                           filename: Boundary.string(filename, name: "filename"))
        return try conversationHandle.upload(userId: user, file: file)
    }
}

/// Uploads `length` bytes from memory as a raw attachment; as
/// dl_upload_file() otherwise. `data` may be NULL only when `length` is 0;
/// `filename` defaults to "file". The bytes are copied before sending.
@c public func dl_upload_bytes(_ conversation: OpaquePointer?, _ user_id: UnsafePointer<CChar>?,
                               _ data: UnsafeRawPointer?, _ length: UInt, _ content_type: UnsafePointer<CChar>?,
                               _ filename: UnsafePointer<CChar>?,
                               _ out_json: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> Int32 {
    Boundary.call(out_json) { () throws(DirectLineError) -> SendResult in
        let conversationHandle = try handles.lookup(conversation, as: Conversation.self)
        let user = try Boundary.identifier(user_id, name: "user_id")
        guard data != nil || length == 0 else { throw .invalidArgument("data must not be NULL when length is not 0") }
        // Checked before the bytes are copied.
        try conversationHandle.checkUploadSize(Int64(exactly: length) ?? Int64.max)
        let bytes = data.map { Array(UnsafeRawBufferPointer(start: $0, count: Int(length))) } ?? []
        let file = try Uploads.File.inMemory(bytes, contentType: Boundary.string(content_type, name: "content_type"),
                                             filename: Boundary.string(filename, name: "filename"))
        return try conversationHandle.upload(userId: user, file: file)
    }
}

/// Uploads several attachments, and optionally the activity (3.0) or
/// message (1.1) that carries them, as one multipart/form-data request:
///
///     {"activity": {"type": "message", "text": "see attached"},
///      "files": [{"path": "photos/a.jpg", "contentType": "image/jpeg", "filename": "a.jpg"},
///                {"dataBase64": "aGVsbG8=", "contentType": "text/plain", "filename": "b.txt"}]}
///
/// Each file has exactly one of `path` (streamed from disk) and `dataBase64`;
/// `contentType` and `filename` are optional as in dl_upload_file(). The
/// activity part is sent as `application/vnd.microsoft.activity` (3.0; its
/// `type` defaults to "message", `from` to the user, and it gets a
/// `channelData.clientActivityID`) or `application/vnd.microsoft.bot.message`
/// (1.1; `from` defaults to the user). Without it the 3.0 service wraps the
/// files in an empty activity. 3.0: `out_json` receives `{"id": "..."}` plus
/// `"clientActivityID"` when an activity was given; 1.1: `{}`.
///
/// Statuses as dl_upload_file(); the size limit applies to the whole body.
@c public func dl_upload_multipart(_ conversation: OpaquePointer?, _ user_id: UnsafePointer<CChar>?,
                                   _ upload_json: UnsafePointer<CChar>?,
                                   _ out_json: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> Int32 {
    Boundary.call(out_json) { () throws(DirectLineError) -> SendResult in
        let conversationHandle = try handles.lookup(conversation, as: Conversation.self)
        let user = try Boundary.identifier(user_id, name: "user_id")
        return try conversationHandle.upload(userId: user,
                                             multipart: MultipartUpload(json: Boundary.requiredJSON(upload_json, name: "upload_json")))
    }
}

/// Sets the progress callback of a conversation: for every send and upload
/// on it, `progress(userdata, done, total)` is called on the calling thread
/// as body bytes go out (`done` rises to `total`, the body's size). Returning
/// nonzero cancels the transfer, which then fails with DL_ERR_CANCELLED
/// (delivery "not_sent" while the body was incomplete). NULL removes it.
///
/// The callback applies to transfers on every thread using this
/// conversation, and is called on the thread running the transfer. It must
/// not call into the library: such calls return DL_ERR_REENTRANT.
/// Replacing or removing it waits only for a call of the previous one in
/// progress on another thread; every later report, of transfers already
/// running too, goes to the new callback (or none), so the old `userdata`
/// may be released as soon as this returns. dl_conversation_free() removes
/// it the same way: after the free returns it is never called.
///
/// Returns DL_OK or DL_ERR_INVALID_HANDLE.
@c public func dl_conversation_set_progress(
    _ conversation: OpaquePointer?,
    _ progress: (@convention(c) (UnsafeMutableRawPointer?, UInt64, UInt64) -> Int32)?,
    _ userdata: UnsafeMutableRawPointer?
) -> Int32 {
    Boundary.call(nil) { () throws(DirectLineError) -> JSONValue in
        let conversationHandle = try handles.lookup(conversation, as: Conversation.self)
        conversationHandle.setProgress(progress.map { function in
            ProgressReporter { done, total in CallbackGuard.run { function(userdata, done, total) } == 0 }
        })
        return .null
    }
}

/// Sets the process-wide log callback: `log(userdata, level, message)` is
/// called for every event at `level` or more severe (DL_LOG_ERROR is the
/// most severe; see dl_log_level). `message` is one line of UTF-8 without a
/// newline, valid only during the call. Levels: DL_LOG_ERROR for failed
/// transfers and refreshes that stopped, DL_LOG_WARN for retries,
/// DL_LOG_INFO for one line per HTTP request, DL_LOG_DEBUG adds libcurl's
/// trace (connections, request and response headers; never bodies).
///
/// No secret or token is ever logged: `Authorization` header values and
/// `t=` query values appear as `[redacted]`.
///
/// The callback may be called from any thread, including several at once
/// and the library's token refresh thread, so it must be thread-safe. It
/// must not call into the library: such calls return DL_ERR_REENTRANT.
/// `log` NULL (or `level` DL_LOG_OFF) turns logging off. Replacing or
/// removing the callback waits until no thread is still inside the
/// previous one, so its `userdata` may be released as soon as this returns.
///
/// Returns DL_OK, or DL_ERR_INVALID_ARGUMENT for an unknown level (the
/// previous callback stays).
@c public func dl_set_log_callback(
    _ log: (@convention(c) (UnsafeMutableRawPointer?, Int32, UnsafePointer<CChar>?) -> Void)?,
    _ userdata: UnsafeMutableRawPointer?,
    _ level: Int32,
    _ out_json: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?
) -> Int32 {
    Boundary.call(out_json) { () throws(DirectLineError) -> JSONValue in
        guard let known = LogLevel(rawValue: level) else {
            throw .invalidArgument("level must be DL_LOG_OFF (0) to DL_LOG_DEBUG (4), not \(level)")
        }
        Log.install(known == .off ? nil : log.map { function in
            Log.Sink(write: { level, line in line.withCString { function(userdata, level.rawValue, $0) } }, level: known)
        })
        return .object(JSONObject())
    }
}

/// Overrides the client's timeouts for the calls the calling thread makes
/// from now on, on every client and conversation, until it is called again.
/// `options_json`: `{"timeoutMs": N, "connectTimeoutMs": N}` (each optional,
/// 1 to 86400000 ms; a missing or null member means the client's own
/// value). NULL or `{}` removes the override. Other threads are not affected.
///
/// To bound one call, set the override before it and remove it after. Each
/// HTTP request of the call (including each automatic retry) gets these
/// limits; the library's token refresh thread keeps the client's.
///
/// `out_json` receives the thread's override now in effect, e.g.
/// `{"timeoutMs": 2000, "connectTimeoutMs": null}`.
/// Returns DL_OK or DL_ERR_INVALID_ARGUMENT (the previous override stays).
@c public func dl_set_thread_timeouts(
    _ options_json: UnsafePointer<CChar>?,
    _ out_json: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?
) -> Int32 {
    Boundary.call(out_json) { () throws(DirectLineError) -> JSONValue in
        let options = try ThreadTimeoutOptions(json: Boundary.json(options_json, name: "options_json"))
        try options.apply()
        return options.json
    }
}
