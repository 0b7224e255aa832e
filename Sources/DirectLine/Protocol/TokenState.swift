/// The credential a conversation handle sends, and when it expires.
struct TokenState: Sendable {
    /// Kept out of core dumps and wiped when released (`SecretText`).
    private var secret: SecretText
    var value: String {
        get { secret.string }
        set { secret = SecretText(newValue) }
    }
    /// False when the handle uses the client's secret, which never expires
    /// and must never be handed out by `dl_conversation_state`.
    var refreshable: Bool
    /// The lifetime the service gave the token (`expires_in`), in ms.
    var lifetimeMs: Int?
    /// The lifetime is the library's estimate, not the service's word: it
    /// schedules refreshes but is not saved in `dl_conversation_state`, so a
    /// saved state reopens to the same saved state.
    var lifetimeIsEstimate = false
    /// When it expires, on the monotonic clock (ms), and on the wall clock
    /// (seconds since the epoch) for info and saved state.
    var expiresAtMs: Int?
    var expiresAtEpoch: Int?

    /// A token the service issued at `issuedAtMs` valid for `expiresIn` seconds.
    static func issued(_ value: String, refreshable: Bool, expiresIn: Int?, issuedAtMs: Int) -> TokenState {
        let seconds = expiresIn.map { max(0, min($0, 1 << 31)) }
        return TokenState(secret: SecretText(value), refreshable: refreshable, lifetimeMs: seconds.map { $0 * 1000 },
                          expiresAtMs: seconds.map { issuedAtMs + $0 * 1000 },
                          expiresAtEpoch: seconds.map { Clock.now() + $0 })
    }

    /// A token known to expire at `epoch` (from saved state). Without its
    /// lifetime, the time it has left stands in for it: a 1.1 renewal, which
    /// does not say how long the new token lives, then errs on the early side.
    static func expiring(_ value: String, refreshable: Bool, atEpoch epoch: Int, lifetimeSeconds: Int?) -> TokenState {
        let remainingMs = max(0, epoch - Clock.now()) * 1000
        var state = TokenState(secret: SecretText(value), refreshable: refreshable,
                               lifetimeMs: lifetimeSeconds.map { $0 * 1000 } ?? min(max(remainingMs, 1000), (1 << 31) * 1000),
                               expiresAtMs: Clock.monotonicMs() + remainingMs, expiresAtEpoch: epoch)
        state.lifetimeIsEstimate = lifetimeSeconds == nil
        return state
    }

    /// When the handle should refresh it on its own: at half its remaining
    /// life, or nil when it never expires or cannot be refreshed.
    func refreshDueMs(now: Int) -> Int? {
        guard refreshable, let expiresAtMs, expiresAtMs > now else { return nil }
        return now + (expiresAtMs - now) / 2
    }
}
