/// One page of a conversation's activities as the service wrote it, read
/// in place (`RawJSON`): its memory is its own bytes, whatever its shape.
struct ActivityPage {
    /// The whole ActivitySet or MessageSet.
    let document: RawJSON
    /// Its `activities` or `messages` array.
    let list: RawJSON
    /// Its watermark; nil when null or missing.
    let watermark: String?

    var byteCount: Int { document.byteCount }
    var isEmpty: Bool {
        var empty = true
        list.forEachElement { _ in
            empty = false
            return false
        }
        return empty
    }
}

extension Conversation {
    /// `dl_get_activities`: the activities after the stored watermark; the
    /// watermark advances unless the service answers a null or missing one.
    /// The page goes back as the service wrote it.
    func receive() throws(DirectLineError) -> JSONValue {
        // One reader per conversation: the listener's GETs and these would
        // each move the watermark past what the other has not handed out.
        guard !listener.isListening else {
            throw .invalidArgument("the conversation is listening: take its activities with dl_conversation_next (or wait), or unlisten first")
        }
        let current = readPosition
        let page = try page(after: current.watermark, id: current.id, token: current.token)
        if let watermark = page.watermark { state.withLock { $0.watermark = watermark } }
        return .raw(page.document)
    }

    /// One GET of the activities after `watermark`. Stores nothing.
    /// `deadlineMs` bounds the request by the call's time left; freeing the
    /// handle aborts it.
    func page(after watermark: String?, id: String, token: String,
              deadlineMs: Int? = nil) throws(DirectLineError) -> ActivityPage {
        var request = client.requests.receive(conversationId: id, watermark: watermark, bearer: token)
        request.deadlineMs = deadlineMs
        request.cancellation = freed
        return try activityPage(client.execute(request, reaching: .service))
    }

    /// The service's answer to a GET of activities, checked and read in place.
    func activityPage(_ response: HTTPResponse) throws(DirectLineError) -> ActivityPage {
        let document = try Responses.checkedJSON(response, what: "get activities")
        guard document.isObject else { throw Responses.protocolError("the service's answer is not a JSON object", response) }
        let list: RawJSON
        switch document.lookup(listKey) {
        case .found(let value) where value.isArray: list = value
        case .repeated: throw Responses.protocolError("the service's answer has \"\(listKey)\" twice", response)
        default: throw Responses.protocolError("the service's answer has no \"\(listKey)\" array", response)
        }
        let mark: String?
        switch document.lookup("watermark") {
        case .found(let value): mark = value.stringValue
        case .repeated: throw Responses.protocolError("the service's answer has \"watermark\" twice", response)
        case .absent: mark = nil
        }
        return ActivityPage(document: document, list: list, watermark: mark)
    }

    /// By default, the most page bytes one wait holds activities from
    /// before it returns them (with `"more": true`); the rest waits for the
    /// next call, nothing lost. One page may be larger (up to the 64 MiB
    /// answer limit): a wait returns at least the page it read.
    static let defaultMaximumHeldBytes = 16 << 20

    /// `dl_conversation_wait`: polls until an activity arrives that is not
    /// from the caller's users, or the timeout passes.
    ///
    /// What the polls read is stored (the watermark, the ids returned) only
    /// when the wait returns it: a wait that fails part-way leaves the
    /// handle where it was, and the next one reads those activities again,
    /// so every reply is returned exactly once.
    func wait(_ options: WaitOptions) throws(DirectLineError) -> JSONValue {
        // While listening, the listener reads and this takes from its queue.
        if let taken = try listener.wait(options, conversation: self) { return taken }
        let start = Clock.monotonicMs()
        let deadline = start + options.timeoutMs
        let last = lastSendMs.load(ordering: .relaxed)
        let lastSend = last == 0 ? nil : last
        // A handle that never sent has nothing to give the bot time for.
        var nextPoll = max(start, lastSend.map { $0 + options.afterSendMs } ?? start)
        var cursor = ReadCursor(watermark: readPosition.watermark)
        var found: [JSONValue] = []
        // Bytes of the pages `found` holds activities from.
        var heldBytes = 0
        while true {
            try sleep(until: min(nextPoll, deadline))
            var replied = false
            // Each poll may take until the wait's deadline, and at least a
            // second, so that a short (or zero) timeout still reads once.
            let pollDeadline = max(deadline, Clock.monotonicMs() + Self.minimumPollMs)
            do {
                try receiveNew(into: &cursor, deadlineMs: pollDeadline) { activity in
                    let mine = isOwn(activity, userIds: options.userIds)
                    if !mine { replied = true }
                    guard !mine || options.includeOwn else { return false }
                    found.append(.raw(activity))
                    return true
                } held: { bytes in
                    heldBytes += bytes
                    return heldBytes < options.maxBytes
                }
            } catch where error.status == .timeout && Clock.monotonicMs() >= pollDeadline {
                // The wait's own time ran out during a poll: that is a
                // timeout of the wait, not a failure.
            }
            let now = Clock.monotonicMs()
            let full = heldBytes >= options.maxBytes
            if replied || now >= deadline || full {
                let watermark = commit(cursor)
                var result = JSONObject()
                result[listKey] = .array(found)
                result["watermark"] = watermark.map(JSONValue.string) ?? .null
                result["timedOut"] = .bool(!replied && !full)
                if full { result["more"] = .bool(true) }
                return .object(result)
            }
            nextPoll = now + options.intervalMs
        }
    }

    /// The least time one poll of a wait is given.
    static let minimumPollMs = 1000

    /// Where a wait has read to, not yet stored in the handle.
    struct ReadCursor {
        var watermark: String?
        /// Ids of the activities read since the stored watermark.
        var read: [String] = []
        var readSet: Set<String> = []
    }

    /// Stores what a wait read; returns the handle's watermark after it.
    private func commit(_ cursor: ReadCursor) -> String? {
        state.withLock { state in
            // A null or missing watermark never overwrites the stored one.
            if let watermark = cursor.watermark { state.watermark = watermark }
            for id in cursor.read { _ = state.returnedIDs.insert(id) }
            return state.watermark
        }
    }

    /// Pages from `watermark` until the service has nothing more (a page
    /// that is empty, or leaves the watermark missing or where it was), or
    /// `onPage` returns false; returns the last watermark reached.
    /// Each page carries the handle's token of the moment, so a long read
    /// goes on with the refreshed one when a refresh lands meanwhile.
    func drain(after watermark: String?, id: String, maxPages: Int = 10_000, deadlineMs: Int? = nil,
               onPage: (ActivityPage) -> Bool) throws(DirectLineError) -> String? {
        var watermark = watermark
        for _ in 0..<maxPages {
            let page = try page(after: watermark, id: id, token: currentToken, deadlineMs: deadlineMs)
            guard onPage(page) else { break }
            guard !page.isEmpty, let next = page.watermark, next != watermark else { break }
            watermark = next
        }
        return watermark
    }

    var listKey: String { client.version == .v3 ? "activities" : "messages" }

    /// Sleeps in short slices so that freeing the handle stops a wait.
    func sleep(until deadline: Int) throws(DirectLineError) {
        while true {
            if isClosed { throw DirectLineError(.cancelled, "the conversation handle was freed during the wait") }
            let left = deadline - Clock.monotonicMs()
            if left <= 0 { return }
            sleepMilliseconds(min(left, 50))
        }
    }

    /// Pages on from the cursor until the service has nothing more, and
    /// hands `take` the activities neither an earlier call nor this wait
    /// returned (it answers whether it kept one); `held` is told the bytes
    /// of each page something was kept from, and stops the paging by
    /// answering false. The cursor moves past what was read, the handle
    /// does not.
    private func receiveNew(into cursor: inout ReadCursor, deadlineMs: Int, take: (RawJSON) -> Bool,
                            held: (Int) -> Bool) throws(DirectLineError) {
        let current = readPosition
        var next = cursor
        defer { cursor = next }
        _ = try drain(after: cursor.watermark, id: current.id, maxPages: 64,
                      deadlineMs: deadlineMs) { page in
            if let watermark = page.watermark { next.watermark = watermark }
            var kept = false
            page.list.forEachElement { activity in
                // An activity without an id is always new.
                if let id = Self.id(of: activity) {
                    let returned = state.withLock { $0.returnedIDs.contains(id) }
                    guard !returned, next.readSet.insert(id).inserted else { return true }
                    next.read.append(id)
                }
                if take(activity) { kept = true }
                return true
            }
            return kept ? held(page.byteCount) : true
        }
    }

    static func id(of activity: RawJSON) -> String? {
        activity.member("id")?.stringValue
    }

    /// Whether the caller sent `activity`. With `userIds` given: it comes
    /// from one of them. Otherwise: it comes from a user this handle sent
    /// as, or carries a clientActivityID this handle generated; the latter
    /// also teaches the handle the id the service put in `from` (a token
    /// with an embedded user overrides the one sent), so that its later
    /// uploads count as its own too.
    func isOwn(_ activity: RawJSON, userIds: [String]?) -> Bool {
        let from = sender(of: activity)
        if let userIds { return from.map(userIds.contains) ?? false }
        let correlation = Self.clientActivityID(of: activity)
        return state.withLock { state in
            if let correlation, state.sentClientActivityIDs.contains(correlation) {
                if let from, !state.senders.contains(from) { state.noteSender(from) }
                return true
            }
            return from.map(state.senders.contains) ?? false
        }
    }

    /// 3.0 `from.id`; 1.1 `from` (a string).
    private func sender(of activity: RawJSON) -> String? {
        let from = activity.member("from")
        return client.version == .v3 ? from?.member("id")?.stringValue : from?.stringValue
    }

    /// 3.0 `channelData.clientActivityID`.
    static func clientActivityID(of activity: RawJSON) -> String? {
        activity.member("channelData")?.member("clientActivityID")?.stringValue
    }
}
