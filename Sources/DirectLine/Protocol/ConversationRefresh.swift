/// Keeping a conversation's token fresh: on request and on schedule.
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
            guard !isClosed, !state.ended, let due = override ?? state.token.refreshDueMs(now: now) else { return }
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

    private static func mayPass(_ status: Status) -> Bool {
        switch status {
        case .network, .timeout, .throttled, .service, .bot, .http,
             .protocolViolation, .internalError: true
        default: false
        }
    }
}
