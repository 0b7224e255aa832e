extension Conversation {
    /// `dl_get_activities`: the activities after the stored watermark; the
    /// watermark advances unless the service answers a null or missing one.
    func receive() throws(DirectLineError) -> JSONValue {
        let current = readPosition
        let (answer, watermark) = try page(after: current.watermark, id: current.id, token: current.token)
        if let watermark { state.withLock { $0.watermark = watermark } }
        return answer
    }

    /// One GET of the activities after `watermark`: the service's answer and
    /// the watermark it gave (nil when null or missing). Stores nothing.
    /// `deadlineMs` bounds the request by the call's time left; freeing the
    /// handle aborts it.
    func page(after watermark: String?, id: String, token: String,
              deadlineMs: Int? = nil) throws(DirectLineError) -> (JSONValue, String?) {
        var request = client.requests.receive(conversationId: id, watermark: watermark, bearer: token)
        request.deadlineMs = deadlineMs
        request.cancellation = freed
        let response = try client.execute(request, reaching: .service)
        let answer = try Responses.json(response, what: "get activities")
        guard let object = answer.objectValue, object[listKey]?.arrayValue != nil else {
            throw Responses.protocolError("the service's answer has no \"\(listKey)\" array", response)
        }
        return (answer, object["watermark"]?.stringValue)
    }


    /// `dl_conversation_wait`: polls until an activity arrives that is not
    /// from the caller's users, or the timeout passes.
    ///
    /// What the polls read is stored (the watermark, the ids returned) only
    /// when the wait returns it: a wait that fails part-way leaves the
    /// handle where it was, and the next one reads those activities again,
    /// so every reply is returned exactly once.
    func wait(_ options: WaitOptions) throws(DirectLineError) -> JSONValue {
        let start = Clock.monotonicMs()
        let deadline = start + options.timeoutMs
        let last = lastSendMs.load(ordering: .relaxed)
        let lastSend = last == 0 ? nil : last
        // A handle that never sent has nothing to give the bot time for.
        var nextPoll = max(start, lastSend.map { $0 + options.afterSendMs } ?? start)
        var cursor = ReadCursor(watermark: readPosition.watermark)
        var found: [JSONValue] = []
        while true {
            try sleep(until: min(nextPoll, deadline))
            var replied = false
            // Each poll may take until the wait's deadline, and at least a
            // second, so that a short (or zero) timeout still reads once.
            let pollDeadline = max(deadline, Clock.monotonicMs() + Self.minimumPollMs)
            let fresh: [JSONValue]
            do {
                fresh = try receiveNew(into: &cursor, deadlineMs: pollDeadline)
            } catch where error.status == .timeout && Clock.monotonicMs() >= pollDeadline {
                // The wait's own time ran out during a poll: that is a
                // timeout of the wait, not a failure.
                fresh = []
            }
            for activity in fresh {
                let mine = isOwn(activity, userIds: options.userIds)
                if !mine { replied = true }
                if !mine || options.includeOwn { found.append(activity) }
            }
            let now = Clock.monotonicMs()
            if replied || now >= deadline {
                let watermark = commit(cursor)
                var result = JSONObject()
                result[listKey] = .array(found)
                result["watermark"] = watermark.map(JSONValue.string) ?? .null
                result["timedOut"] = .bool(!replied)
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
               onPage: ([JSONValue], String?) -> Bool) throws(DirectLineError) -> String? {
        var watermark = watermark
        for _ in 0..<maxPages {
            let (answer, next) = try page(after: watermark, id: id, token: currentToken, deadlineMs: deadlineMs)
            let activities = answer.objectValue?[listKey]?.arrayValue ?? []
            guard onPage(activities, next) else { break }
            guard !activities.isEmpty, let next, next != watermark else { break }
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
    /// returns the activities neither an earlier call nor this wait
    /// returned; the cursor moves, the handle does not.
    private func receiveNew(into cursor: inout ReadCursor, deadlineMs: Int) throws(DirectLineError) -> [JSONValue] {
        let current = readPosition
        var fresh: [JSONValue] = []
        var next = cursor
        _ = try drain(after: cursor.watermark, id: current.id, maxPages: 64,
                      deadlineMs: deadlineMs) { page, watermark in
            if let watermark { next.watermark = watermark }
            let ids = page.map(Self.id(of:))
            let returned = state.withLock { state in ids.map { $0.map(state.returnedIDs.contains) ?? false } }
            for (index, activity) in page.enumerated() {
                // An activity without an id is always new.
                guard let id = ids[index] else {
                    fresh.append(activity)
                    continue
                }
                guard !returned[index], next.readSet.insert(id).inserted else { continue }
                next.read.append(id)
                fresh.append(activity)
            }
            return true
        }
        cursor = next
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
            if let correlation, state.sentClientActivityIDs.contains(correlation) {
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
