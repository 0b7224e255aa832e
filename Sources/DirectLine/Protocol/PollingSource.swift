#if canImport(Glibc)
import Glibc
#endif

/// A listener's source that polls `GET activities?watermark=` on the
/// transfer loop's one thread (`TransferLoop`): no thread per listener.
///
/// - A timer starts each poll with the conversation's token of the moment,
///   after the watermark this source has read to (not the one `next` has
///   handed out: the queue holds what lies between).
/// - The answer (on the loop's thread; it never blocks) goes to the
///   listener; while pages come non-empty with a moving watermark the next
///   one is asked for at once, otherwise after `pollIntervalMs`.
/// - A failure that may pass (network, timeout, 429, 5xx, an unreadable
///   answer) is tried again with the client's backoff or `Retry-After`,
///   state `reconnecting`; a refusal (400, 401, 403, 404, an expired token
///   that was not replaced meanwhile) stops it, state `failed`.
/// - A full queue pauses it (no timer, nothing in flight) until `resume`.
/// - Stopped (unlisten, free), it cancels its timer and abandons a poll in
///   flight, whose answer is then dropped. In a forked child the poll that
///   was in flight is gone: `afterFork` starts it again.
final class PollingSource: ListenerSource, RestartsAfterFork, @unchecked Sendable {
    private weak var conversation: Conversation?
    private weak var session: ListenSession?
    private let intervalMs: Int
    /// Raised by `stop`: a poll in flight is aborted at libcurl's next
    /// progress check.
    private let abort = Cancellation()

    private struct Poll {
        /// What the next GET asks for: the watermark read to.
        var watermark: String?
        var timer: TransferLoop.Timer?
        var inFlight = false
        var started = false
        var stopped = false
        /// `dl_conversation_end` was called: read to the end, then report ended.
        var finishing = false
        /// Failures in a row (for the backoff).
        var failures = 0
    }

    private let poll: Locked<Poll>

    init(conversation: Conversation, session: ListenSession) {
        self.conversation = conversation
        self.session = session
        intervalMs = session.options.pollIntervalMs
        poll = Locked(Poll(watermark: conversation.readPosition.watermark))
    }

    func start() {
        let started = poll.withLock { poll -> Bool in
            guard !poll.started, !poll.stopped else { return false }
            poll.started = true
            schedule(&poll, atMs: Clock.monotonicMs())
            return true
        }
        if started { SourceRegistry.shared.add(self) }
    }

    func stop() {
        poll.withLock { poll in
            poll.stopped = true
            if let timer = poll.timer { TransferLoop.shared.cancel(timer) }
            poll.timer = nil
        }
        abort.raise()
        SourceRegistry.shared.remove(self)
    }

    func resume() {
        poll.withLock { poll in
            guard !poll.stopped, poll.started, poll.timer == nil, !poll.inFlight else { return }
            schedule(&poll, atMs: Clock.monotonicMs())
        }
    }

    func finish() {
        poll.withLock { poll in
            guard !poll.stopped, !poll.finishing else { return }
            poll.finishing = true
            // Waiting for the next poll: poll now. In flight, or paused by
            // a full queue: the answer, or `resume`, goes on from there.
            if let timer = poll.timer {
                TransferLoop.shared.cancel(timer)
                schedule(&poll, atMs: Clock.monotonicMs())
            }
        }
    }

    /// In a forked child: the parent's poll in flight is gone, start again.
    func afterFork() {
        poll.withLock { poll in
            guard poll.inFlight, !poll.stopped else { return }
            poll.inFlight = false
            schedule(&poll, atMs: Clock.monotonicMs())
        }
    }

    /// Under the lock: the next poll at `dueMs`.
    private func schedule(_ poll: inout Poll, atMs dueMs: Int) {
        if let old = poll.timer { TransferLoop.shared.cancel(old) }
        poll.timer = TransferLoop.shared.schedule(atMs: dueMs) { [self] timer in fire(timer) }
    }

    /// On the loop's thread: the timer is due; sends the GET and returns.
    private func fire(_ timer: TransferLoop.Timer) {
        let asked = poll.withLock { poll -> String?? in
            // A timer replaced or cancelled after it was taken from the heap does nothing.
            guard poll.timer === timer, !poll.stopped else { return .none }
            poll.timer = nil
            poll.inFlight = true
            return .some(poll.watermark)
        }
        guard case .some(let watermark) = asked else { return }
        guard let conversation, !conversation.isClosed else {
            poll.withLock { $0.inFlight = false }
            return
        }
        let position = conversation.readPosition
        var request = conversation.client.requests.receive(conversationId: position.id, watermark: watermark,
                                                           bearer: position.token)
        request.cancellation = abort
        let token = position.token
        conversation.client.start(request, reaching: .service) { [self] outcome in
            answered(outcome, asked: watermark, token: token)
        }
    }

    /// On the loop's thread: the poll's answer.
    private func answered(_ outcome: Result<HTTPResponse, DirectLineError>, asked: String?, token: String) {
        let live = poll.withLock { poll -> Bool in
            poll.inFlight = false
            return !poll.stopped
        }
        guard live, let conversation, let session, !conversation.isClosed else { return }
        let page: ActivityPage
        do throws(DirectLineError) {
            page = try conversation.activityPage(outcome.get())
        } catch {
            failed(error, token: token, conversation: conversation, session: session)
            return
        }
        let verdict = conversation.listener.deliver(page, session: session, conversation: conversation)
        // More waits while the page had something and the watermark moved.
        let moved = !page.isEmpty && page.watermark != nil && page.watermark != asked
        var ended = false
        poll.withLock { poll in
            poll.failures = 0
            if let watermark = page.watermark { poll.watermark = watermark }
            guard !poll.stopped else { return }
            switch verdict {
            case .stale:
                poll.stopped = true
            case .ended:
                poll.stopped = true
            case .pause:
                // `resume` goes on when `next` drains the queue.
                break
            case .more:
                if moved {
                    schedule(&poll, atMs: Clock.monotonicMs())
                } else if poll.finishing {
                    poll.stopped = true
                    ended = true
                } else {
                    schedule(&poll, atMs: Clock.monotonicMs() + intervalMs)
                }
            }
        }
        if ended {
            conversation.listener.sourceEnded(session: session)
            SourceRegistry.shared.remove(self)
        }
    }

    private func failed(_ error: DirectLineError, token: String, conversation: Conversation, session: ListenSession) {
        // An expired token that a refresh has replaced meanwhile: at once
        // with the new one.
        let replaced = error.status == .tokenExpired && conversation.currentToken != token
        guard replaced || Self.mayPass(error.status) else {
            Log.emit(.error, "listening stopped: \(error.message)")
            poll.withLock { $0.stopped = true }
            conversation.listener.sourceFailed(error, session: session)
            SourceRegistry.shared.remove(self)
            return
        }
        let policy = conversation.client.config.transport.retry
        let delay = poll.withLock { poll -> Int? in
            guard !poll.stopped else { return nil }
            poll.failures += 1
            let delay = replaced ? 0 : max(50, Backoff.delay(attempt: poll.failures, retryAfterMs: error.retryAfterMs,
                                                             policy: policy))
            schedule(&poll, atMs: Clock.monotonicMs() + delay)
            return delay
        }
        guard let delay else { return }
        if !replaced {
            Log.emit(.warn, "listening: a poll failed (\(error.message)); the next in \(delay) ms")
            conversation.listener.sourceState(.reconnecting, session: session)
        }
    }

    /// Failures that may pass; any other stops the source.
    static func mayPass(_ status: Status) -> Bool {
        switch status {
        case .network, .timeout, .throttled, .service, .bot, .http,
             .protocolViolation, .internalError: true
        default: false
        }
    }
}

/// A listener's source that has something to start again in a forked child.
protocol RestartsAfterFork: AnyObject {
    /// In the child, once the loop is ready: what was in flight is gone.
    func afterFork()
}

/// Every listener's source that has started and not stopped, held weakly,
/// so that a forked child can start again the reads that were in flight.
final class SourceRegistry: @unchecked Sendable {
    static let shared = SourceRegistry()

    private final class Entry: @unchecked Sendable {
        weak var source: (any RestartsAfterFork)?
        init(_ source: any RestartsAfterFork) { self.source = source }
    }

    // Guarded by `mutex`, which a fork() waits for and the child makes
    // afresh. Taken before a source's lock and the loop's, never inside them.
    private let mutex: UnsafeMutablePointer<pthread_mutex_t>
    private var entries: [ObjectIdentifier: Entry] = [:]

    private init() {
        // The loop first: its fork handlers then run before these in a child.
        _ = TransferLoop.shared
        mutex = ForkSafety.newMutex()
        ForkSafety.guardAcrossFork(mutex) { [self] in
            for entry in entries.values { entry.source?.afterFork() }
        }
    }

    func add(_ source: any RestartsAfterFork) {
        pthread_mutex_lock(mutex)
        entries[ObjectIdentifier(source)] = Entry(source)
        pthread_mutex_unlock(mutex)
    }

    func remove(_ source: any RestartsAfterFork) {
        pthread_mutex_lock(mutex)
        entries[ObjectIdentifier(source)] = nil
        pthread_mutex_unlock(mutex)
    }
}
