import Synchronization

/// What a conversation handle remembers; guarded by the conversation's lock.
struct ConversationState: Sendable {
    var id: String
    /// The conversation's own token (the one the service issued for it), or
    /// the client's credential when the service issued none.
    var token: TokenState
    var watermark: String?
    var streamUrl: String?
    /// `dl_conversation_end` was called: the token is no longer refreshed.
    var ended = false
    /// Why the last automatic refresh failed, if it did.
    var refreshError: String?
    /// The user ids this handle sent as, most recent last (for `wait`).
    var senders: [String] = []
    /// Ids of the activities `wait` has returned, to drop repeats.
    var returnedIDs = ReturnedActivityIDs()

    init(id: String, token: TokenState, watermark: String? = nil, streamUrl: String? = nil) {
        self.id = id
        self.token = token
        self.watermark = watermark
        self.streamUrl = streamUrl
    }

    /// The clientActivityIDs of the last activities sent (for `wait`).
    var sentClientActivityIDs = SentClientActivityIDs()

    /// Records a user this handle sends as (the 32 most recent).
    mutating func noteSender(_ userId: String) {
        guard senders.last != userId else { return }
        senders.removeAll { $0 == userId }
        senders.append(userId)
        if senders.count > 32 { senders.removeFirst() }
    }
}
