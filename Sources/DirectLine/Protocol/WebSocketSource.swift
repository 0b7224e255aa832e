import CCurl
#if canImport(Glibc)
import Glibc
#endif

/// A listener's source that reads the conversation's WebSocket stream (3.0),
/// on the transfer loop's one thread like every other transfer: a thousand
/// listening conversations are a thousand sockets, not a thousand threads.
///
/// - **Connecting.** Each connection starts with `GET conversations/{id}
///   ?watermark=` (the watermark this source has read to) for a fresh
///   stream URL, which the service replays from that watermark. When
///   nothing has been read yet (no watermark), `GET activities` first reads
///   what is there, so the stream's replay starts after it.
/// - **Reading.** Each text message is an ActivitySet for the listener
///   (repeats are dropped there by id); an empty one is a keep-alive. A
///   stream silent for `silenceLimitMs` counts as dropped.
/// - **Backpressure.** Once the queue is full, the next message is not
///   taken: the stream is closed (normally) and connected again when `next`
///   has made room (`resume`), from the watermark of what was queued, so
///   what was not taken is replayed and nothing is lost; only typing
///   activities sent meanwhile are (the service never replays them).
///   libcurl's own pause is not used: it would buffer decoded frames
///   whose frame information (`curl_ws_meta`) is no longer theirs.
/// - **Reconnecting** (state `reconnecting`) after a drop, a close other
///   than for a collision, a refused upgrade, or a stream gone silent: at
///   once the first time, then with the client's backoff (or
///   `Retry-After`), until a connection brings a message again.
/// - **Failing** (state `failed`, for good): a `collision` close (another
///   client holds the stream: fighting it would only close theirs; status
///   CONFLICT), a refusal of the reconnect request (401, 403, 404, an
///   expired token that was not replaced meanwhile), a TLS failure, or
///   `maxRefusals` upgrades in a row refused with 401, 403 or 404.
/// - **Ending**: endOfConversation read, or `finish` (dl_conversation_end)
///   after reading what is left with a GET: no reconnect.
/// - **Stopping** (unlisten, free): a close frame (1000), and nothing more
///   is delivered. In a forked child the parent's connection and requests
///   are gone: `afterFork` connects again.
final class WebSocketSource: ListenerSource, RestartsAfterFork, @unchecked Sendable {
    private weak var conversation: Conversation?
    private weak var session: ListenSession?
    private let api: WebSocketAPI
    /// A stream that brings nothing, not even a keep-alive, for this long is
    /// taken for dropped.
    let silenceLimitMs: Int
    /// Upgrades refused with 401, 403 or 404 in a row before giving up.
    static let maxRefusals = 3
    /// Raised by `stop`: a request in flight is aborted.
    private let abort = Cancellation()

    private enum Phase {
        /// Nothing in flight: waiting for `timer` (or stopped).
        case idle
        /// A GET in flight (catch-up or reconnect).
        case requesting
        /// A connection attached to the loop.
        case connected(WebSocketConnection)
    }

    private struct Run {
        var phase = Phase.idle
        /// What the next connection asks to replay from.
        var watermark: String?
        var timer: TransferLoop.Timer?
        var silenceTimer: TransferLoop.Timer?
        var started = false
        var stopped = false
        var finishing = false
        /// Connections or requests in a row that failed (for the backoff).
        var failures = 0
        var refusals = 0
        /// Bumped by each connection, so a stale connection's reports are dropped.
        var generation = 0
        /// The stream was closed (or the catch-up stopped) because the queue
        /// was full: `resume` connects, or the end of the closing does when
        /// room was made meanwhile. Whether the queue is full is the
        /// listener's to say (`Listener.isPaused`), so no resume is missed.
        var closedForSpace = false
    }

    private let run: Locked<Run>

    init(conversation: Conversation, session: ListenSession, api: WebSocketAPI) {
        self.conversation = conversation
        self.session = session
        self.api = api
        silenceLimitMs = session.options.silenceLimitMs
        run = Locked(Run(watermark: conversation.readPosition.watermark))
    }

    // MARK: ListenerSource

    func start() {
        let started = run.withLock { run -> Bool in
            guard !run.started, !run.stopped else { return false }
            run.started = true
            schedule(&run, atMs: Clock.monotonicMs()) { source in source.begin() }
            return true
        }
        if started { SourceRegistry.shared.add(self) }
    }

    func stop() {
        stopForGood()
    }

    func resume() {
        onLoop { source in
            let connect = source.run.withLock { run -> Bool in
                guard !run.stopped, run.closedForSpace, case .idle = run.phase else { return false }
                run.closedForSpace = false
                run.failures = 0
                return true
            }
            if connect { source.begin() }
        }
    }

    func finish() {
        run.withLock { run in
            guard !run.stopped, !run.finishing else { return }
            run.finishing = true
        }
        // What the stream has not brought yet is read with a GET.
        onLoop { source in source.catchUp(thenConnect: false) }
    }

    /// In a forked child: the connection and any request in flight were the
    /// parent's. A second stream of the conversation would collide with the
    /// parent's at the service (one stream per conversation) and end one of
    /// them with `collision`; so the child's listener fails instead, with a
    /// status and message that say what to do, from the child's loop thread.
    func afterFork() {
        run.withLock { run in
            guard !run.stopped else { return }
            run.phase = .idle
            run.silenceTimer = nil
            schedule(&run, atMs: Clock.monotonicMs()) { source in
                guard let session = source.session else { return }
                source.fail(DirectLineError(.unsupported, "a forked child does not take over its parent's WebSocket stream (the service holds one per conversation): unlisten, and listen with \"mode\": \"polling\" in the child"),
                            session: session)
            }
        }
    }

    // MARK: the steps, on the loop's thread

    /// Runs `step` on the loop's thread soon.
    private func onLoop(_ step: @escaping @Sendable (WebSocketSource) -> Void) {
        _ = TransferLoop.shared.schedule(atMs: Clock.monotonicMs()) { [self] _ in step(self) }
    }

    private func schedule(_ run: inout Run, atMs dueMs: Int, _ step: @escaping @Sendable (WebSocketSource) -> Void) {
        if let old = run.timer { TransferLoop.shared.cancel(old) }
        run.timer = TransferLoop.shared.schedule(atMs: dueMs) { [self] timer in
            let current = self.run.withLock { run -> Bool in
                guard run.timer === timer, !run.stopped else { return false }
                run.timer = nil
                return true
            }
            if current { step(self) }
        }
    }

    private func cancelTimers(_ run: inout Run) {
        if let timer = run.timer { TransferLoop.shared.cancel(timer) }
        if let timer = run.silenceTimer { TransferLoop.shared.cancel(timer) }
        run.timer = nil
        run.silenceTimer = nil
    }

    private func begin() {
        let watermark = run.withLock { $0.watermark }
        if watermark == nil {
            catchUp(thenConnect: true)
        } else {
            requestStreamURL()
        }
    }

    /// `GET activities?watermark=`, page after page while they bring
    /// something; then a new stream URL (`thenConnect`) or, after `finish`,
    /// the end.
    private func catchUp(thenConnect: Bool) {
        send(.activities, marking: thenConnect) { [self] outcome, conversation, session, token, watermark in
            let page: ActivityPage
            do throws(DirectLineError) {
                page = try conversation.activityPage(outcome.get())
            } catch {
                failed(error, token: token, session: session, retry: { source in source.catchUp(thenConnect: thenConnect) })
                return
            }
            let verdict = conversation.listener.deliver(page, session: session, conversation: conversation,
                                                        online: false)
            let moved = !page.isEmpty && page.watermark != nil && page.watermark != watermark
            run.withLock { run in
                run.failures = 0
                if let mark = page.watermark { run.watermark = mark }
            }
            switch verdict {
            case .stale, .ended:
                stopForGood()
            case .pause where thenConnect:
                // The queue is full: no more pages until next() makes room;
                // then the stream replays from the watermark read to.
                let waiting = run.withLock { run -> Bool in
                    guard !run.stopped, case .requesting = run.phase else { return false }
                    run.phase = .idle
                    run.closedForSpace = true
                    return true
                }
                // Room made already: `resume` came before this waited for it.
                if waiting, !conversation.listener.isPaused(session) {
                    let connect = run.withLock { run -> Bool in
                        guard run.closedForSpace, case .idle = run.phase else { return false }
                        run.closedForSpace = false
                        return true
                    }
                    if connect { begin() }
                }
            case .pause, .more:
                if moved {
                    catchUp(thenConnect: thenConnect)
                } else if thenConnect {
                    requestStreamURL()
                } else {
                    stopForGood()
                    conversation.listener.sourceEnded(session: session)
                }
            }
        }
    }

    private var isStopped: Bool { run.withLock { $0.stopped } }

    /// `GET conversations/{id}?watermark=`: a stream URL that replays from
    /// the watermark read to.
    private func requestStreamURL() {
        send(.streamURL, marking: true) { [self] outcome, conversation, session, token, _ in
            let url: String
            do throws(DirectLineError) {
                let response = try outcome.get()
                let answer = try Responses.json(response, what: "reconnect")
                guard let stream = answer.objectValue?["streamUrl"]?.stringValue,
                      let webSocketURL = Self.webSocketURL(stream) else {
                    throw Responses.protocolError("the service's answer to reconnect has no usable \"streamUrl\"", response)
                }
                url = webSocketURL
                conversation.state.withLock { $0.streamUrl = stream }
            } catch {
                failed(error, token: token, session: session, retry: { source in source.requestStreamURL() })
                return
            }
            connect(url, session: session, conversation: conversation)
        }
    }

    /// The two requests the source sends.
    private enum Request {
        /// `GET activities?watermark=`: a catch-up.
        case activities
        /// `GET conversations/{id}?watermark=`: a new stream URL.
        case streamURL
    }

    /// Sends `kind` (with the watermark read to and the conversation's
    /// token of the moment) on the loop, abortable by `stop`; `answered`
    /// gets the outcome unless the source stopped or the handle was freed
    /// meanwhile. `marking`: the phase becomes `.requesting` (not for a
    /// catch-up beside an open stream).
    private func send(_ kind: Request, marking: Bool,
                      answered: @escaping @Sendable (Result<HTTPResponse, DirectLineError>, Conversation, ListenSession,
                                                     _ token: String, _ asked: String?) -> Void) {
        guard let conversation, let session, !conversation.isClosed else { return }
        let asked = run.withLock { run -> String?? in
            guard !run.stopped else { return .none }
            if marking { run.phase = .requesting }
            return .some(run.watermark)
        }
        guard case .some(let watermark) = asked else { return }
        let position = conversation.readPosition
        let requests = conversation.client.requests
        var request = switch kind {
        case .activities: requests.receive(conversationId: position.id, watermark: watermark, bearer: position.token)
        case .streamURL: requests.reconnect(conversationId: position.id, watermark: watermark, bearer: position.token)
        }
        request.cancellation = abort
        conversation.client.start(request, reaching: .service) { [self] outcome in
            guard let conversation = self.conversation, !conversation.isClosed, !isStopped,
                  let session = self.session else { return }
            answered(outcome, conversation, session, position.token, watermark)
        }
    }

    /// The stream URL with a WebSocket scheme (the service's documentation
    /// prints `https://`); nil for anything else.
    static func webSocketURL(_ url: String) -> String? {
        for (from, to) in [("wss://", "wss://"), ("ws://", "ws://"), ("https://", "wss://"), ("http://", "ws://")]
            where url.utf8.count > from.utf8.count && url.lowercased().hasPrefix(from) {
            return to + url.dropFirst(from.count)
        }
        return nil
    }

    private func connect(_ url: String, session: ListenSession, conversation: Conversation) {
        let generation = run.withLock { run -> Int in
            run.generation += 1
            return run.generation
        }
        let events = WebSocketConnection.Events(
            opened: { [weak self] in self?.opened(generation: generation) },
            message: { [weak self] bytes in self?.message(bytes, generation: generation) },
            ended: { [weak self] ending in self?.ended(ending, generation: generation) })
        guard let connection = WebSocketConnection(url: url, config: conversation.client.config.transport, api: api,
                                                   events: events) else {
            failed(.internalError("libcurl could not make a handle for the stream"), token: "", session: session,
                   retry: { source in source.begin() })
            return
        }
        let attach = run.withLock { run -> Bool in
            guard !run.stopped else { return false }
            run.phase = .connected(connection)
            return true
        }
        guard attach else { return }
        let shown = Conversation.withoutToken(url)
        Log.emit(.info, "listening: connecting to the stream \(shown)")
        TransferLoop.shared.attachStream { [self] in
            // Stopped before the loop came to it: never attached.
            let live = run.withLock { run -> Bool in
                guard !run.stopped, case .connected(let mine) = run.phase else { return false }
                return mine === connection
            }
            guard live else { return nil }
            return TransferLoop.Transfer(handle: connection, completion: { code in connection.complete(code) },
                                         isStream: true)
        }
        watchSilence(generation: generation)
    }

    /// Checks, every so often, that the stream still brings something.
    private func watchSilence(generation: Int) {
        run.withLock { run in
            guard !run.stopped, run.generation == generation else { return }
            if let old = run.silenceTimer { TransferLoop.shared.cancel(old) }
            let interval = max(50, silenceLimitMs / 4)
            run.silenceTimer = TransferLoop.shared.schedule(atMs: Clock.monotonicMs() + interval) { [weak self] _ in
                self?.checkSilence(generation: generation)
            }
        }
    }

    private func checkSilence(generation: Int) {
        let silent = run.withLock { run -> WebSocketConnection? in
            guard !run.stopped, run.generation == generation, case .connected(let connection) = run.phase else {
                return nil
            }
            run.silenceTimer = nil
            if connection.heard(withinMs: silenceLimitMs) {
                // Alive (keep-alives included): the backoff starts afresh.
                run.failures = 0
                return nil
            }
            run.phase = .idle
            return connection
        }
        guard let silent else {
            watchSilence(generation: generation)
            return
        }
        Log.emit(.warn, "listening: the stream was silent for \(silenceLimitMs) ms; connecting again")
        silent.forceEnd()
        reconnect(after: DirectLineError(.timeout, "the stream was silent for \(silenceLimitMs) ms"))
    }

    private func opened(generation: Int) {
        guard let session, let conversation else { return }
        let current = run.withLock { run -> Bool in
            guard !run.stopped, run.generation == generation else { return false }
            run.refusals = 0
            return true
        }
        guard current else { return }
        Log.emit(.info, "listening: the stream is open")
        conversation.listener.sourceState(.online, session: session)
    }

    /// A whole message from the current connection.
    private func message(_ bytes: [UInt8], generation: Int) {
        guard let session, let conversation, !conversation.isClosed else { return }
        let current = run.withLock { run -> (connection: WebSocketConnection, closedForSpace: Bool)? in
            guard !run.stopped, run.generation == generation, case .connected(let connection) = run.phase else {
                return nil
            }
            run.failures = 0
            return (connection, run.closedForSpace)
        }
        guard let (connection, closedForSpace) = current else { return }
        // A keep-alive.
        if bytes.allSatisfy({ $0 == 0x20 || $0 == 0x0A || $0 == 0x0D || $0 == 0x09 }) { return }
        if closedForSpace || conversation.listener.isPaused(session) {
            if !closedForSpace { run.withLock { $0.closedForSpace = true } }
            // Not taken: the replay brings it again once next() made room.
            Log.emit(.info, "listening: the queue is full; the stream is closed until next() makes room")
            connection.closeGracefully()
            return
        }
        let page: ActivityPage
        do throws(DirectLineError) {
            page = try conversation.activityPage(HTTPResponse(status: 200, body: bytes, attempts: 1))
        } catch {
            // Another shape of message (the service may add some): ignored,
            // as long as it is a JSON object.
            if (try? JSONParser.validate(bytes: bytes))?.isObject == true { return }
            Log.emit(.warn, "listening: the stream sent a message that is not JSON; connecting again")
            connection.closeGracefully()
            return
        }
        let verdict = conversation.listener.deliver(page, session: session, conversation: conversation)
        run.withLock { run in
            if let mark = page.watermark { run.watermark = mark }
        }
        switch verdict {
        case .more, .pause:
            return
        case .stale, .ended:
            stopForGood()
        }
    }

    /// The connection ended: what ended it decides what comes next.
    private func ended(_ ending: WebSocketConnection.Ending, generation: Int) {
        guard let session, let conversation else { return }
        let current = run.withLock { run -> Bool in
            guard run.generation == generation, case .connected = run.phase else { return false }
            run.phase = .idle
            if let timer = run.silenceTimer { TransferLoop.shared.cancel(timer) }
            run.silenceTimer = nil
            return !run.stopped
        }
        // Stopped, or ended by endOfConversation: nothing more.
        guard current else { return }
        // Closed because the queue was full: `resume` connects again, or
        // this does when room was made while the stream closed.
        let paused = conversation.listener.isPaused(session)
        let forSpace = run.withLock { run -> (closed: Bool, roomMade: Bool) in
            guard run.closedForSpace else { return (false, false) }
            if paused { return (true, false) }
            run.closedForSpace = false
            return (true, true)
        }
        if forSpace.closed {
            if forSpace.roomMade { begin() }
            return
        }
        switch ending {
        case .closedByServer(let code, let reason):
            if reason.lowercased().contains("collision") {
                fail(DirectLineError(.conflict, "another client holds this conversation's stream: the service closed this one (\(code.map(String.init) ?? "no code"), \"collision\")"),
                     session: session)
                return
            }
            Log.emit(.info, "listening: the service closed the stream (\(code.map(String.init) ?? "no code")); connecting again")
            reconnect(after: nil)
        case .refused(let status, let retryAfterMs):
            let response = HTTPResponse(status: status, body: [], attempts: 1, retryAfterMs: retryAfterMs)
            let error = Responses.failure(response, reaching: .service, version: conversation.client.version)
            let refusal = [401, 403, 404].contains(status)
            let refusals = run.withLock { run -> Int in
                run.refusals = refusal ? run.refusals + 1 : 0
                return run.refusals
            }
            if refusals >= Self.maxRefusals {
                fail(error, session: session)
                return
            }
            Log.emit(.warn, "listening: the stream's upgrade was refused (\(status)); connecting again")
            reconnect(after: error)
        case .endedByOwner, .tooLarge:
            reconnect(after: DirectLineError(.protocolViolation, "the stream sent a message that could not be read"))
        case .failed(let error):
            if error.status == .tls {
                fail(error, session: session)
                return
            }
            Log.emit(.warn, "listening: the stream dropped (\(error.message)); connecting again")
            reconnect(after: error)
        }
    }

    /// Connects again: at once after a first drop, then with backoff.
    private func reconnect(after error: DirectLineError?) {
        guard let conversation, let session else { return }
        let policy = conversation.client.config.transport.retry
        let scheduled = run.withLock { run -> Bool in
            guard !run.stopped else { return false }
            run.failures += 1
            let delay = run.failures == 1 && error?.retryAfterMs == nil
                ? 0 : max(50, Backoff.delay(attempt: run.failures - 1, retryAfterMs: error?.retryAfterMs, policy: policy))
            schedule(&run, atMs: Clock.monotonicMs() + delay) { source in source.begin() }
            return true
        }
        if scheduled { conversation.listener.sourceState(.reconnecting, session: session) }
    }

    /// A request failed: tried again when the failure may pass, else the end.
    private func failed(_ error: DirectLineError, token: String, session: ListenSession,
                        retry: @escaping @Sendable (WebSocketSource) -> Void) {
        guard let conversation else { return }
        let replaced = error.status == .tokenExpired && !token.isEmpty && conversation.currentToken != token
        guard replaced || PollingSource.mayPass(error.status) else {
            fail(error, session: session)
            return
        }
        let policy = conversation.client.config.transport.retry
        let retrying = run.withLock { run -> (delay: Int, streaming: Bool)? in
            guard !run.stopped else { return nil }
            // A catch-up after finish() runs beside an open stream, which stays.
            var streaming = false
            switch run.phase {
            case .requesting: run.phase = .idle
            case .connected: streaming = true
            case .idle: break
            }
            run.failures += 1
            let delay = replaced ? 0 : max(50, Backoff.delay(attempt: run.failures, retryAfterMs: error.retryAfterMs,
                                                             policy: policy))
            schedule(&run, atMs: Clock.monotonicMs() + delay, retry)
            return (delay, streaming)
        }
        guard let retrying, !replaced else { return }
        Log.emit(.warn, "listening: \(error.message); trying again in \(retrying.delay) ms")
        if !retrying.streaming { conversation.listener.sourceState(.reconnecting, session: session) }
    }

    private func fail(_ error: DirectLineError, session: ListenSession) {
        Log.emit(.error, "listening stopped: \(error.message)")
        stopForGood()
        conversation?.listener.sourceFailed(error, session: session)
    }

    /// Stops for good (unlisten, free, a failure, the end): no timer fires
    /// and nothing more is delivered, a request in flight is aborted, and
    /// an open stream begins its closing handshake on the loop's thread,
    /// which owns the handle. Callable from any thread.
    private func stopForGood() {
        let connection = run.withLock { run -> WebSocketConnection? in
            run.stopped = true
            cancelTimers(&run)
            guard case .connected(let connection) = run.phase else { return nil }
            run.phase = .idle
            return connection
        }
        abort.raise()
        SourceRegistry.shared.remove(self)
        if let connection {
            _ = TransferLoop.shared.schedule(atMs: Clock.monotonicMs()) { _ in connection.closeGracefully() }
        }
    }
}
