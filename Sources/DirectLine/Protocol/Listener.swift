/// Receiving as it happens (`dl_conversation_listen`, `next`, `fd`,
/// `unlisten`): a conversation's queue of activities, filled in the
/// background by a source and emptied by `next` (or `wait`).
///
/// - One `Listener` per conversation, made with it; it holds no descriptor
///   until the first listen or `dl_conversation_fd`. Its eventfd (`ready`)
///   is raised exactly while `next(…, 0, …)` would return something:
///   activities queued, a state not yet reported, or a failure.
/// - A listen starts a `ListenSession` and its `ListenerSource` (polling
///   now; the WebSocket stream is meant to be another source feeding the
///   same session). A source reports through `deliver`, `sourceState`,
///   `sourceFailed` and `sourceEnded`, naming its session, so whatever a
///   stopped source still reports is dropped.
/// - The queue holds whole pages (ActivitySets), each with its watermark;
///   `next` hands out whole pages, and once a page is handed out its
///   watermark becomes the conversation's (what `dl_conversation_state`
///   saves), so a saved state repeats nothing taken and loses nothing not.
/// - Locks: the listener's lock may be held while the conversation's is
///   taken, never the other way round; no source method is called with it
///   held, and no blocking wait happens under it.
final class Listener: @unchecked Sendable {
    private struct Core {
        /// The descriptor `dl_conversation_fd` hands out; made at the first
        /// listen or fd call, closed when the conversation is released.
        var ready: EventFD?
        /// Whether `ready` is raised now.
        var raised = false
        var session: ListenSession?
        /// The handle was freed: no listening any more.
        var closed = false
    }

    private let core = Locked(Core())

    /// The most activity bytes one `next` hands out; whole pages, at least one.
    static let maximumHandedBytes = 16 << 20

    // MARK: the calls

    /// `dl_conversation_fd`: the ready descriptor, made now if needed.
    func descriptor() throws(DirectLineError) -> Int32 {
        try core.withLock { core throws(DirectLineError) -> Int32 in
            try Self.readyFD(&core).descriptor
        }
    }

    private static func readyFD(_ core: inout Core) throws(DirectLineError) -> EventFD {
        if let ready = core.ready { return ready }
        let made = try EventFD.make().get()
        core.ready = made
        return made
    }

    /// Whether a session runs (stopped or not yet, failed or ended included).
    var isListening: Bool { core.withLock { $0.session != nil } }

    /// `dl_conversation_listen` with `mode` decided: starts a session with
    /// the source `makeSource` gives, or reports the one running.
    func listen(mode: ListenSession.Mode, options: ListenOptions, conversation: Conversation,
                makeSource: (ListenSession) -> any ListenerSource) throws(DirectLineError) -> JSONValue {
        let started = try core.withLock { core throws(DirectLineError) -> (ListenSession, started: Bool) in
            guard !core.closed else { throw DirectLineError(.cancelled, "the conversation handle was freed") }
            if let running = core.session { return (running, false) }
            _ = try Self.readyFD(&core)
            let session = ListenSession(mode: mode, options: options)
            session.source = makeSource(session)
            core.session = session
            return (session, true)
        }
        let session = started.0
        if started.started {
            session.source?.start()
        }
        return core.withLock { _ in
            .object(JSONObject([("mode", .string(session.mode.rawValue)), ("state", .string(session.state.rawValue))]))
        }
    }

    /// `dl_conversation_unlisten`: stops the session; what it queued is
    /// dropped, and blocked `next` and `wait` calls end with
    /// DL_ERR_CANCELLED. Harmless when not listening.
    func unlisten(conversation: Conversation) -> JSONValue {
        let (stopped, dropped) = core.withLock { core -> (ListenSession?, Int) in
            let stopped = Self.stop(&core)
            return (stopped, stopped?.queuedActivities ?? 0)
        }
        stopped?.source?.stop()
        let watermark = conversation.readPosition.watermark
        return .object(JSONObject([("dropped", .integer(dropped)),
                                   ("watermark", watermark.map(JSONValue.string) ?? .null)]))
    }

    /// The handle is freed: as `unlisten`, and no session starts again.
    func close() {
        let stopped = core.withLock { core -> ListenSession? in
            core.closed = true
            return Self.stop(&core)
        }
        stopped?.source?.stop()
    }

    private static func stop(_ core: inout Core) -> ListenSession? {
        guard let session = core.session else { return nil }
        core.session = nil
        session.stopped = true
        session.raiseWake()
        Self.updateSignal(&core)
        return session
    }

    /// `dl_conversation_end` was called: the source reads what is left and
    /// then reports the conversation ended.
    func conversationEnded() {
        let source = core.withLock { $0.session?.source }
        source?.finish()
    }

    /// `dl_conversation_next`: what arrived since the last call, waiting up
    /// to `timeoutMs` (-1: no limit) for something.
    func next(timeoutMs: Int, conversation: Conversation) throws(DirectLineError) -> JSONValue {
        let refusal = DirectLineError.invalidArgument("the conversation is not listening: call dl_conversation_listen first")
        let answer = try waitForQueue(timeoutMs: timeoutMs, notListening: refusal) { core, session throws(DirectLineError) -> Step<JSONValue> in
            if session.queuedActivities > 0 {
                session.reportedState = session.state
                let (taken, resume) = Self.take(&core, session, conversation: conversation,
                                                maxBytes: Self.maximumHandedBytes)
                return .done(Self.nextResult(taken, session, conversation: conversation, timedOut: false), resume)
            }
            if session.state == .failed, let failure = session.failure { throw failure }
            if session.state != session.reportedState {
                session.reportedState = session.state
                Self.updateSignal(&core)
                return .done(Self.nextResult([], session, conversation: conversation, timedOut: false), nil)
            }
            return .nothing(timedOut: { Self.nextResult([], session, conversation: conversation, timedOut: true) })
        }
        // Without a session the loop threw `notListening`.
        guard let answer else { throw .internalError("dl_conversation_next found no session to report") }
        return answer
    }

    /// `dl_conversation_wait` while listening: takes from the queue until
    /// an activity not from the caller's users is among what it took, or
    /// the timeout passes. Typing activities are taken and left out. Nil when no session runs (the caller polls as
    /// usual then).
    func wait(_ options: WaitOptions, conversation: Conversation) throws(DirectLineError) -> JSONValue? {
        let deadline = Clock.monotonicMs() + options.timeoutMs
        var found: [JSONValue] = []
        var heldBytes = 0
        var replied = false
        var full = false
        let listKey = conversation.listKey
        while true {
            let left = max(0, deadline - Clock.monotonicMs())
            let taken: [RawJSON]?
            do throws(DirectLineError) {
                taken = try waitForQueue(timeoutMs: left, notListening: nil) { core, session throws(DirectLineError) -> Step<[RawJSON]> in
                    if session.queuedActivities > 0 {
                        let (taken, resume) = Self.take(&core, session, conversation: conversation,
                                                        maxBytes: max(1, options.maxBytes - heldBytes))
                        return .done(taken, resume)
                    }
                    if session.state == .failed, let failure = session.failure { throw failure }
                    // Nothing more will come: return at once.
                    if session.state == .ended { return .done([], nil) }
                    return .nothing(timedOut: { [] })
                }
            } catch {
                // What this wait took is the caller's (the conversation's
                // watermark is past it already): returned, not lost.
                if found.isEmpty { throw error }
                break
            }
            guard let taken else {
                // Not listening (any more): the caller polls as before.
                if found.isEmpty { return nil }
                break
            }
            for activity in taken {
                heldBytes += activity.byteCount
                // Typing (which only the stream brings) is no reply: a wait
                // returns the replies, next() everything.
                if activity.member("type")?.stringValue == "typing" { continue }
                let mine = conversation.isOwn(activity, userIds: options.userIds)
                if !mine { replied = true }
                if !mine || options.includeOwn { found.append(.raw(activity)) }
            }
            full = heldBytes >= options.maxBytes
            if replied || full || taken.isEmpty || Clock.monotonicMs() >= deadline { break }
        }
        var result = JSONObject()
        result[listKey] = .array(found)
        result["watermark"] = conversation.readPosition.watermark.map(JSONValue.string) ?? .null
        result["timedOut"] = .bool(!replied && !full)
        if full { result["more"] = .bool(true) }
        return .object(result)
    }

    // MARK: waiting on the queue

    /// What one look at the queue decided.
    private enum QueueAnswer<Value> {
        case answer(Value, (any ListenerSource)?)
        case notListening
        case wait(ready: Int32, wake: Int32)
    }

    enum Step<Value> {
        /// The call's answer, and a source to resume once the lock is released.
        case done(Value, (any ListenerSource)?)
        /// Nothing to take: wait, or answer what `timedOut` makes when the time is up.
        case nothing(timedOut: () -> Value)
    }

    /// The loop `next` and `wait` share: `attempt` runs under the lock with
    /// the running session; when it finds nothing, the call waits (without
    /// the lock) on the ready descriptor and the session's wake descriptor,
    /// which unlisten and free raise. Nil when no session ran at the start
    /// and `notListening` is nil.
    private func waitForQueue<Value>(timeoutMs: Int, notListening: DirectLineError?,
                                     _ attempt: (inout Core, ListenSession) throws(DirectLineError) -> Step<Value>)
        throws(DirectLineError) -> Value? {
        let deadline = timeoutMs < 0 ? nil : Clock.monotonicMs() + timeoutMs
        var mine: ListenSession?
        while true {
            let next = try core.withLock { core throws(DirectLineError) -> QueueAnswer<Value> in
                guard !core.closed else {
                    throw DirectLineError(.cancelled, "the conversation handle was freed while waiting for activities")
                }
                guard let session = core.session, !session.stopped, mine == nil || mine === session else {
                    guard mine == nil else {
                        throw DirectLineError(.cancelled, "the conversation stopped listening while waiting for activities")
                    }
                    return .notListening
                }
                mine = session
                switch try attempt(&core, session) {
                case .done(let value, let resume):
                    return .answer(value, resume)
                case .nothing(let timedOut):
                    if let deadline, Clock.monotonicMs() >= deadline { return .answer(timedOut(), nil) }
                    let wake = try session.wakeFD()
                    return .wait(ready: try Self.readyFD(&core).descriptor, wake: wake.descriptor)
                }
            }
            switch next {
            case .answer(let value, let resume):
                resume?.resume()
                return value
            case .notListening:
                if let notListening { throw notListening }
                return nil
            case .wait(let ready, let wake):
                // `mine` keeps the session, and so its wake descriptor, open
                // while this waits; the conversation keeps `ready` open.
                let left = deadline.map { max(0, $0 - Clock.monotonicMs()) } ?? -1
                _ = EventFD.waitReadable([ready, wake], timeoutMs: left)
            }
        }
    }

    /// Takes whole pages from the head of the queue, up to `maxBytes` of
    /// activities (at least one page), makes each page's watermark the
    /// conversation's as its last activity goes, and remembers their ids as
    /// returned. Returns the activities and the source to resume when the
    /// queue fell below `maxQueued` after the source was paused.
    private static func take(_ core: inout Core, _ session: ListenSession, conversation: Conversation,
                             maxBytes: Int) -> ([RawJSON], (any ListenerSource)?) {
        var taken: [RawJSON] = []
        var bytes = 0
        while let page = session.pages.first, taken.isEmpty || bytes < maxBytes {
            _ = session.pages.removeFirst()
            session.queuedActivities -= page.activities.count
            taken += page.activities
            bytes += page.bytes
            conversation.state.withLock { state in
                for activity in page.activities {
                    _ = state.returnedIDs.insert(Conversation.id(of: activity))
                }
                if let watermark = page.watermark { state.watermark = watermark }
            }
        }
        var resume: (any ListenerSource)?
        if session.paused, session.queuedActivities < session.options.maxQueued {
            session.paused = false
            resume = session.source
        }
        updateSignal(&core)
        return (taken, resume)
    }

    private static func nextResult(_ activities: [RawJSON], _ session: ListenSession, conversation: Conversation,
                                   timedOut: Bool) -> JSONValue {
        var result = JSONObject()
        result["activities"] = .array(activities.map(JSONValue.raw))
        result["watermark"] = conversation.state.withLock { $0.watermark }.map(JSONValue.string) ?? .null
        result["state"] = .string(session.state.rawValue)
        result["mode"] = .string(session.mode.rawValue)
        result["timedOut"] = .bool(timedOut)
        return .object(result)
    }

    /// Raises or lowers `ready` so that it is readable exactly while `next`
    /// has something to answer without waiting.
    private static func updateSignal(_ core: inout Core) {
        var pending = false
        if let session = core.session, !session.stopped {
            pending = session.queuedActivities > 0 || session.state != session.reportedState
                || session.state == .failed
        }
        guard pending != core.raised, let ready = core.ready else { return }
        if pending { ready.raise() } else { ready.lower() }
        core.raised = pending
    }

    // MARK: what sources report

    /// What a source does after a delivery.
    enum Verdict {
        /// Its session is over: do nothing more.
        case stale
        /// Go on reading.
        case more
        /// The queue is full: read nothing until `resume`.
        case pause
        /// The conversation ended: stop.
        case ended
    }

    /// A page read by `session`'s source: queues its activities that are
    /// new (by id) and not the caller's own (unless `includeOwn`), in order.
    /// `online`: the page shows the source is online (a poll's answer, a
    /// stream's message; not a catch-up read before the stream opens).
    func deliver(_ page: ActivityPage, session: ListenSession, conversation: Conversation,
                 online: Bool = true) -> Verdict {
        // Who sent each activity is read outside the listener's lock.
        var incoming: [(activity: RawJSON, id: String?, own: Bool, ends: Bool)] = []
        let version = conversation.client.version
        page.list.forEachElement { activity in
            let ends = version == .v3 && activity.member("type")?.stringValue == "endOfConversation"
            incoming.append((activity, Conversation.id(of: activity),
                             conversation.isOwn(activity, userIds: nil), ends))
            return true
        }
        return core.withLock { core -> Verdict in
            guard core.session === session, !session.stopped else { return .stale }
            var kept: [RawJSON] = []
            var bytes = 0
            var ended = false
            var repeats = 0
            for item in incoming {
                if let id = item.id {
                    let returned = conversation.state.withLock { $0.returnedIDs.contains(id) }
                    guard !returned, session.seen.insert(id) else {
                        repeats += 1
                        continue
                    }
                }
                if item.ends { ended = true }
                if item.own && !session.options.includeOwn { continue }
                kept.append(item.activity)
                bytes += item.activity.byteCount
            }
            // A page of nothing but repeats (a stream replaying what a GET
            // or an earlier stream brought) says nothing of where reading
            // stands: its watermark may lie behind, and is not taken.
            let watermark = !incoming.isEmpty && repeats == incoming.count ? nil : page.watermark
            if !kept.isEmpty {
                session.pages.append(QueuedPage(activities: kept, bytes: bytes, watermark: watermark))
                session.queuedActivities += kept.count
            } else if let watermark {
                // Nothing to hand out: the watermark moves on with the last
                // page queued (or at once), so idle polls behind a queue
                // nobody takes from add no entries.
                if session.pages.last != nil {
                    session.pages.last?.watermark = watermark
                } else {
                    conversation.state.withLock { $0.watermark = watermark }
                }
            }
            if ended {
                if session.state != .failed { session.state = .ended }
            } else if online, session.state != .ended, session.state != .failed {
                session.state = .online
            }
            Self.updateSignal(&core)
            if session.state == .ended { return .ended }
            if session.queuedActivities >= session.options.maxQueued {
                session.paused = true
                return .pause
            }
            return .more
        }
    }

    /// Whether `session`'s queue is full: its source was told to pause and
    /// `next` has not made room yet (then `resume` is still to come).
    func isPaused(_ session: ListenSession) -> Bool {
        core.withLock { _ in session.paused }
    }

    /// The source is connecting again (`reconnecting`) or back (`online`).
    func sourceState(_ state: ListenSession.State, session: ListenSession) {
        core.withLock { core in
            guard core.session === session, !session.stopped,
                  session.state != .ended, session.state != .failed else { return }
            session.state = state
            Self.updateSignal(&core)
        }
    }

    /// The source stopped for good on `error`: `next` hands out what is
    /// queued, then answers this error on every call.
    func sourceFailed(_ error: DirectLineError, session: ListenSession) {
        core.withLock { core in
            guard core.session === session, !session.stopped, session.state != .ended else { return }
            session.state = .failed
            session.failure = error
            Self.updateSignal(&core)
        }
    }

    /// The source read to the end after `dl_conversation_end`.
    func sourceEnded(session: ListenSession) {
        core.withLock { core in
            guard core.session === session, !session.stopped, session.state != .failed else { return }
            session.state = .ended
            Self.updateSignal(&core)
        }
    }
}

/// One listen, from `dl_conversation_listen` to `unlisten` or free. Its
/// mutable state is guarded by its listener's lock.
final class ListenSession: @unchecked Sendable {
    enum Mode: String, Sendable {
        case polling
        case websocket
    }

    enum State: String, Sendable {
        case connecting
        case online
        case reconnecting
        case ended
        case failed
    }

    let mode: Mode
    let options: ListenOptions

    var source: (any ListenerSource)?
    var pages = FIFO<QueuedPage>()
    var queuedActivities = 0
    var state = State.connecting
    /// The state `next` (or `listen`) last reported.
    var reportedState = State.connecting
    var failure: DirectLineError?
    /// The source was told to pause (the queue reached `maxQueued`).
    var paused = false
    var stopped = false
    /// Ids of what this session queued or skipped, so a repeat is dropped.
    var seen: ReturnedActivityIDs
    /// Raised by unlisten and free to end blocked calls; made by the first
    /// call that blocks, closed with the session.
    private var wake: EventFD?

    init(mode: Mode, options: ListenOptions) {
        self.mode = mode
        self.options = options
        seen = ReturnedActivityIDs(capacity: ReturnedActivityIDs.defaultCapacity + options.maxQueued)
    }

    /// The wake descriptor, made now if needed (under the listener's lock).
    func wakeFD() throws(DirectLineError) -> EventFD {
        if let wake { return wake }
        let made = try EventFD.make().get()
        if stopped { made.raise() }
        wake = made
        return made
    }

    /// Raised once the session stopped (under the listener's lock).
    func raiseWake() {
        wake?.raise()
    }
}

/// One ActivitySet as queued: the activities to hand out (never none) and
/// the watermark after it (moved on by later pages that held nothing to
/// hand out).
struct QueuedPage {
    var activities: [RawJSON]
    var bytes: Int
    var watermark: String?
}

/// Where a listener's activities come from (see `Listener`). Methods are
/// called without the listener's lock held, from any thread.
protocol ListenerSource: AnyObject, Sendable {
    /// Starts reading; called once, after the session is in place.
    func start()
    /// Stops for good: nothing more is delivered, timers are cancelled, a
    /// read in flight is abandoned.
    func stop()
    /// The queue fell below `maxQueued` after a delivery answered `.pause`.
    func resume()
    /// `dl_conversation_end` was called: read what is left, then report
    /// the conversation ended (`Listener.sourceEnded`).
    func finish()
}
