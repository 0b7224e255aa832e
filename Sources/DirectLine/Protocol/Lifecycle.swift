/// Token refresh, waiting for replies and ending: the parts of a
/// conversation's life after it started.
extension Conversation {
    // MARK: tokens

    /// `dl_conversation_refresh`: renews the conversation's token now and
    /// keeps the new one. The old token stays valid until its own expiry, so
    /// calls already running with it are not disturbed.
    @discardableResult
    func refreshToken() throws(DirectLineError) -> RenewedToken {
        let current = snapshot
        guard current.token.refreshable else {
            throw .invalidArgument("this conversation uses the client's secret, which does not expire: there is no token to refresh")
        }
        let issuedAt = Clock.monotonicMs()
        let renewed = try client.renew(token: current.token.value, conversationId: current.id)
        // 1.1 answers the bare token: assume it lives as long as the last one.
        let expiresIn = renewed.expiresIn ?? current.token.lifetimeMs.map { $0 / 1000 } ?? 1800
        var fresh = TokenState.issued(renewed.token, refreshable: true, expiresIn: expiresIn, issuedAtMs: issuedAt)
        fresh.lifetimeIsEstimate = renewed.expiresIn == nil
            && (current.token.lifetimeIsEstimate || current.token.lifetimeMs == nil)
        state.withLock { state in
            // Two refreshes may race; keep the token that lives longest.
            if (fresh.expiresAtMs ?? .max) >= (state.token.expiresAtMs ?? .min) || state.token.value == current.token.value {
                state.token = fresh
            }
            state.refreshError = nil
        }
        scheduleRefresh()
        return renewed
    }

    /// Schedules the next automatic refresh at half the token's remaining
    /// life; nothing when it never expires, or the handle ended or was freed.
    /// Scheduled under the conversation's lock, so that `end` and `close`
    /// (which cancel under it) cannot be overtaken by a refresh finishing.
    func scheduleRefresh(atMs override: Int? = nil) {
        let now = Clock.monotonicMs()
        state.withLock { state in
            guard !state.closed, !state.ended, let due = override ?? state.token.refreshDueMs(now: now) else { return }
            TokenRefresher.shared.schedule(self, atMs: due)
        }
    }

    /// Called by the refresher thread when a refresh is due. A failure that
    /// may pass (network, 5xx, throttling) is tried again at half the time
    /// left; one that will not (expired, refused) stops, and info says why.
    func refreshOnSchedule() {
        do {
            try refreshToken()
        } catch {
            let retryAt: Int? = state.withLock { state in
                state.refreshError = error.message
                let now = Clock.monotonicMs()
                guard Self.mayPass(error.status), let expires = state.token.expiresAtMs, expires - now > 200 else { return nil }
                return now + max(100, (expires - now) / 2)
            }
            if let retryAt {
                Log.emit(.warn, "automatic token refresh failed (\(error.message)); it will be tried again in \(retryAt - Clock.monotonicMs()) ms")
                scheduleRefresh(atMs: retryAt)
            } else {
                Log.emit(.error, "automatic token refresh stopped: \(error.message)")
            }
        }
    }

    private static func mayPass(_ status: dl_status) -> Bool {
        switch status {
        case .DL_ERR_NETWORK, .DL_ERR_TIMEOUT, .DL_ERR_THROTTLED, .DL_ERR_SERVICE, .DL_ERR_BOT, .DL_ERR_HTTP,
             .DL_ERR_PROTOCOL, .DL_ERR_INTERNAL: true
        default: false
        }
    }

    // MARK: ending

    /// `dl_conversation_end`: 3.0 sends an endOfConversation activity from
    /// `userId`; 1.1 has no such message and sends nothing. Either way the
    /// handle stops refreshing its token, so the conversation lapses.
    func end(userId: String) throws(DirectLineError) -> JSONValue {
        var result = JSONValue.object(JSONObject())
        if client.version == .v3 {
            let activity = JSONObject([("type", .string("endOfConversation")),
                                       ("from", .object(JSONObject([("id", .string(userId))])))])
            result = try send(.object(activity))
        }
        state.withLock { state in
            state.ended = true
            TokenRefresher.shared.cancel(ObjectIdentifier(self))
        }
        return result
    }

    // MARK: waiting for replies

    /// `dl_conversation_wait`: polls until an activity arrives that is not
    /// from the caller's users, or the timeout passes.
    func wait(_ options: WaitOptions) throws(DirectLineError) -> JSONValue {
        let start = Clock.monotonicMs()
        let deadline = start + options.timeoutMs
        let last = lastSendMs.load(ordering: .relaxed)
        let lastSend = last == 0 ? nil : last
        // A handle that never sent has nothing to give the bot time for.
        var nextPoll = max(start, lastSend.map { $0 + options.afterSendMs } ?? start)
        var found: [JSONValue] = []
        while true {
            try sleep(until: min(nextPoll, deadline))
            var replied = false
            for activity in try receiveNew() {
                let mine = isOwn(activity, userIds: options.userIds)
                if !mine { replied = true }
                if !mine || options.includeOwn { found.append(activity) }
            }
            let now = Clock.monotonicMs()
            if replied || now >= deadline {
                var result = JSONObject()
                result[listKey] = .array(found)
                result["watermark"] = target.watermark.map(JSONValue.string) ?? .null
                result["timedOut"] = .bool(!replied)
                return .object(result)
            }
            nextPoll = now + options.intervalMs
        }
    }

    // MARK: reconciling an unknown outcome

    /// `dl_conversation_confirm`: after a send whose outcome is unknown,
    /// looks for its clientActivityID in the conversation, from the start,
    /// without moving the handle's watermark. Polls until found or the
    /// timeout passes (the service may still be processing it).
    func confirm(clientActivityID: String, timeoutMs: Int) throws(DirectLineError) -> JSONValue {
        guard client.version == .v3 else {
            throw .invalidArgument("Direct Line 1.1 messages carry no clientActivityID: there is nothing to look up")
        }
        let deadline = Clock.monotonicMs() + timeoutMs
        let current = target
        var watermark: String?
        var found: JSONValue?
        while true {
            // Page on from where the last look ended: an activity stored
            // later still appears after that watermark.
            watermark = try drain(after: watermark, id: current.id, token: current.token) { activities, _ in
                found = activities.first {
                    $0.objectValue?["channelData"]?.objectValue?["clientActivityID"]?.stringValue == clientActivityID
                }
                return found == nil
            }
            if found != nil || Clock.monotonicMs() >= deadline { break }
            try sleep(until: min(deadline, Clock.monotonicMs() + 500))
        }
        var result = JSONObject()
        result["delivered"] = .bool(found != nil)
        if let found { result["id"] = found.objectValue?["id"] ?? .null }
        result["clientActivityID"] = .string(clientActivityID)
        return .object(result)
    }

    /// Pages from `watermark` until the service has nothing more (a page
    /// that is empty, or leaves the watermark missing or where it was), or
    /// `onPage` returns false; returns the last watermark reached.
    private func drain(after watermark: String?, id: String, token: String, maxPages: Int = 10_000,
                       onPage: ([JSONValue], String?) -> Bool) throws(DirectLineError) -> String? {
        var watermark = watermark
        for _ in 0..<maxPages {
            let (answer, next) = try page(after: watermark, id: id, token: token)
            let activities = answer.objectValue?[listKey]?.arrayValue ?? []
            guard onPage(activities, next) else { break }
            guard !activities.isEmpty, let next, next != watermark else { break }
            watermark = next
        }
        return watermark
    }

    var listKey: String { client.version == .v3 ? "activities" : "messages" }

    /// Sleeps in short slices so that freeing the handle stops a wait.
    private func sleep(until deadline: Int) throws(DirectLineError) {
        while true {
            if isClosed { throw DirectLineError(.DL_ERR_CANCELLED, "the conversation handle was freed during the wait") }
            let left = deadline - Clock.monotonicMs()
            if left <= 0 { return }
            sleepMilliseconds(min(left, 50))
        }
    }

    /// Pages from the stored watermark until the service has nothing more,
    /// storing each new watermark, and returns the activities not returned
    /// by an earlier wait.
    private func receiveNew() throws(DirectLineError) -> [JSONValue] {
        let current = target
        var fresh: [JSONValue] = []
        _ = try drain(after: current.watermark, id: current.id, token: current.token, maxPages: 64) { page, watermark in
            // A null or missing watermark never overwrites the stored one.
            state.withLock { state in
                if let watermark { state.watermark = watermark }
                fresh += page.filter { state.seen.insert(Self.id(of: $0)) }
            }
            return true
        }
        return fresh
    }

    private static func id(of activity: JSONValue) -> String? {
        activity.objectValue?["id"]?.stringValue
    }

    /// Whether the caller sent `activity`. With `userIds` given: it comes
    /// from one of them. Otherwise: it comes from a user this handle sent
    /// as, or carries a clientActivityID this handle generated; the latter
    /// also teaches the handle the id the service put in `from` (a token
    /// with an embedded user overrides the one sent), so that its later
    /// uploads count as its own too.
    private func isOwn(_ activity: JSONValue, userIds: [String]?) -> Bool {
        let from = sender(of: activity)
        if let userIds { return from.map(userIds.contains) ?? false }
        let correlation = activity.objectValue?["channelData"]?.objectValue?["clientActivityID"]?.stringValue
        return state.withLock { state in
            if let correlation, state.sentActivityIDs.contains(correlation) {
                if let from, !state.senders.contains(from) { state.noteSender(from) }
                return true
            }
            return from.map(state.senders.contains) ?? false
        }
    }

    /// 3.0 `from.id`; 1.1 `from` (a string).
    private func sender(of activity: JSONValue) -> String? {
        let from = activity.objectValue?["from"]
        return client.version == .v3 ? from?.objectValue?["id"]?.stringValue : from?.stringValue
    }
}

/// `options_json` of `dl_conversation_wait`.
struct WaitOptions {
    var timeoutMs = 10_000
    var intervalMs = 1_000
    var afterSendMs = 300
    /// Whose activities do not end the wait; nil: the users this handle sent as.
    var userIds: [String]?
    var includeOwn = false

    init(json: JSONValue?) throws(DirectLineError) {
        guard let json else { return }
        let reader = try JSONReader(json, context: "options")
        try reader.rejectUnknownKeys(["timeoutMs", "intervalMs", "afterSendMs", "userId", "includeOwn"])
        if let value = try reader.integer("timeoutMs", in: 0...86_400_000) { timeoutMs = Int(value) }
        if let value = try reader.integer("intervalMs", in: 50...3_600_000) { intervalMs = Int(value) }
        if let value = try reader.integer("afterSendMs", in: 0...60_000) { afterSendMs = Int(value) }
        if let value = try reader.string("userId") {
            try Validation.identifier(value, name: "options.userId")
            userIds = [value]
        }
        includeOwn = try reader.bool("includeOwn") ?? false
    }
}

/// The last `capacity` ids seen, to drop an activity the service delivers
/// twice, or to recognise the caller's own activities.
/// The correlation ids of a handle's most recent sends, as fingerprints
/// (see `RecentIDs.fingerprint`) in a ring. Every send records one, so
/// recording is a single store; `contains`, asked only for the activities
/// a `wait` reads, scans the ring.
struct SentIDs: Sendable {
    static let defaultCapacity = 256
    private var ring: [UInt64]
    private var count = 0
    private var next = 0

    init(capacity: Int = defaultCapacity) { ring = Array(repeating: 0, count: max(1, capacity)) }

    /// Remembers `id`, forgetting the oldest one when the ring is full.
    mutating func record(_ id: String) {
        ring[next] = RecentIDs.fingerprint(id)
        next = next + 1 == ring.count ? 0 : next + 1
        count = min(count + 1, ring.count)
    }

    func contains(_ id: String) -> Bool {
        let print = RecentIDs.fingerprint(id)
        return ring[..<count].contains(print)
    }
}

struct RecentIDs: Sendable {
    static let defaultCapacity = 4096
    let capacity: Int
    /// 64-bit fingerprints of the ids, not the ids: a send records one per
    /// activity, and hashing 8 bytes is far cheaper than a 36-byte string.
    /// Two ids share a fingerprint with odds of about 2^-52 among 4096.
    private var members: Set<UInt64> = []
    private var order: [UInt64] = []
    private var oldest = 0

    init(capacity: Int = defaultCapacity) { self.capacity = max(1, capacity) }

    func contains(_ id: String) -> Bool { members.contains(Self.fingerprint(id)) }

    /// False when `id` was seen already; an activity without an id is always new.
    mutating func insert(_ id: String?) -> Bool {
        guard let id else { return true }
        let print = Self.fingerprint(id)
        guard members.insert(print).inserted else { return false }
        if order.count < capacity {
            order.append(print)
        } else {
            members.remove(order[oldest])
            order[oldest] = print
            oldest = (oldest + 1) % capacity
        }
        return true
    }

    /// FNV-1a over the UTF-8 bytes, finished with a bit mixer.
    static func fingerprint(_ id: String) -> UInt64 {
        var hash: UInt64 = 0xCBF2_9CE4_8422_2325
        var text = id
        text.withUTF8 { bytes in
            for byte in bytes { hash = (hash ^ UInt64(byte)) &* 0x0000_0100_0000_01B3 }
        }
        return ClientActivityID.mix(hash)
    }
}
