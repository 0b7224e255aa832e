/// Keeping a conversation's token fresh: on request (blocking, on the
/// caller's thread) and on schedule (on the transfer loop's thread).
extension Conversation {

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
        adopt(renewed, replacing: current.token, issuedAtMs: issuedAt)
        scheduleRefresh(latencyMs: Clock.monotonicMs() - issuedAt)
        return renewed
    }

    /// Keeps a renewed token, issued at `issuedAtMs` in place of `previous`.
    private func adopt(_ renewed: RenewedToken, replacing previous: TokenState, issuedAtMs: Int) {
        // 1.1 answers the bare token: assume it lives as long as the last one.
        let expiresIn = renewed.expiresIn ?? previous.lifetimeMs.map { $0 / 1000 } ?? 1800
        var fresh = TokenState.issued(renewed.token, refreshable: true, expiresIn: expiresIn, issuedAtMs: issuedAtMs)
        fresh.lifetimeIsEstimate = renewed.expiresIn == nil
            && (previous.lifetimeIsEstimate || previous.lifetimeMs == nil)
        state.withLock { state in
            // Two refreshes may race; keep the token that lives longest.
            if (fresh.expiresAtMs ?? .max) >= (state.token.expiresAtMs ?? .min) || state.token.value == previous.value {
                state.token = fresh
            }
            state.refreshError = nil
        }
    }

    /// Schedules the next automatic refresh: at `override` (a retry), else
    /// at half the token's remaining life, earlier when the service is slow
    /// (`TokenRefresher.schedule`). None when the token never expires, or
    /// the handle ended or was freed. Scheduled under the conversation's
    /// lock, so that `end` and `close` (which cancel under it) cannot be
    /// overtaken by a refresh finishing.
    func scheduleRefresh(atMs override: Int? = nil, failures: Int = 0, latencyMs: Int? = nil) {
        let now = Clock.monotonicMs()
        let id = ObjectIdentifier(self)
        state.withLock { state in
            guard !isClosed, !state.ended else { return }
            if let override {
                TokenRefresher.shared.schedule(self, atMs: override, failures: failures)
            } else if let due = state.token.refreshDueMs(now: now) {
                TokenRefresher.shared.schedule(self, atMs: due, before: state.token.expiresAtMs, latencyMs: latencyMs)
            } else if state.token.refreshable {
                // Expired: nothing left to refresh.
                TokenRefresher.shared.cancel(id)
            }
        }
    }

    /// On the loop's thread, when the refresher's timer is due: sends the
    /// refresh and returns at once; `scheduledRefreshEnded` gets the answer
    /// there. `failures`: the automatic refresh's failures in a row so far.
    func startScheduledRefresh(failures: Int) {
        // A handle freed or ended meanwhile had its entry cancelled.
        let (token, ended) = state.withLock { ($0.token, $0.ended) }
        guard !isClosed, !ended else { return }
        let startedAt = Clock.monotonicMs()
        client.renewInBackground(token: token.value, conversationId: conversationID) { [weak self] outcome in
            self?.scheduledRefreshEnded(outcome, previous: token, startedAtMs: startedAt, failures: failures)
        }
    }

    /// The answer to an automatic refresh, on the loop's thread. A failure
    /// that may pass (network, timeout, 5xx, throttling) is tried again
    /// with backoff (after Retry-After when the service gave one), always
    /// before the token expires and for as long as it has not; one that
    /// will not (refused, expired) stops for good, and info says why. A
    /// freed handle does nothing more.
    private func scheduledRefreshEnded(_ outcome: Result<RenewedToken, DirectLineError>, previous: TokenState,
                                       startedAtMs: Int, failures: Int) {
        guard !isClosed else { return }
        let error: DirectLineError
        switch outcome {
        case .success(let renewed):
            adopt(renewed, replacing: previous, issuedAtMs: startedAtMs)
            scheduleRefresh(latencyMs: Clock.monotonicMs() - startedAtMs)
            return
        case .failure(let failure):
            error = failure
        }
        enum Next {
            case retry(atMs: Int)
            case reschedule
            case stop(String)
        }
        let policy = client.config.transport.retry
        let next = state.withLock { state -> Next in
            // Another refresh replaced the token meanwhile: this failure is
            // about one the handle no longer uses.
            guard state.token.value == previous.value else { return .reschedule }
            let now = Clock.monotonicMs()
            guard Self.mayPass(error.status) else {
                state.refreshError = error.message
                return .stop(error.message)
            }
            guard let expires = state.token.expiresAtMs, expires > now else {
                let why = "the token expired before it could be refreshed (\(error.message))"
                state.refreshError = why
                return .stop(why)
            }
            state.refreshError = error.message
            let backoff = Backoff.delay(attempt: failures + 1, retryAfterMs: error.retryAfterMs, policy: policy)
            // Never later than half the time left: the token is tried again
            // while it is valid, however long Retry-After or the backoff.
            return .retry(atMs: now + min(max(backoff, 50), (expires - now) / 2))
        }
        switch next {
        case .retry(let atMs):
            Log.emit(.warn, "automatic token refresh failed (\(error.message)); it will be tried again in \(max(0, atMs - Clock.monotonicMs())) ms")
            scheduleRefresh(atMs: atMs, failures: failures + 1)
        case .reschedule:
            scheduleRefresh()
        case .stop(let why):
            Log.emit(.error, "automatic token refresh stopped: \(why)")
            let id = ObjectIdentifier(self)
            state.withLock { _ in TokenRefresher.shared.cancel(id) }
        }
    }

    private static func mayPass(_ status: Status) -> Bool {
        switch status {
        case .network, .timeout, .throttled, .service, .bot, .http,
             .protocolViolation, .internalError: true
        default: false
        }
    }
}
