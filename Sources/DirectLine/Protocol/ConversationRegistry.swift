/// The conversations a client has handed out, so that a 1.1 token can be
/// renewed through its conversation id. Holds them weakly.
final class ConversationRegistry: Sendable {
    private final class Entry: @unchecked Sendable {
        weak var conversation: Conversation?
        init(_ conversation: Conversation) { self.conversation = conversation }
    }

    private let entries = Locked<[ObjectIdentifier: Entry]>([:])

    func add(_ conversation: Conversation) {
        entries.withLock { $0[ObjectIdentifier(conversation)] = Entry(conversation) }
    }

    func remove(_ id: ObjectIdentifier) {
        _ = entries.withLock { $0.removeValue(forKey: id) }
    }

    func all() -> [Conversation] {
        entries.withLock { $0.values.compactMap(\.conversation) }
    }

    /// The live conversation whose current token is `token`.
    func conversation(usingToken token: String) -> Conversation? {
        all().first { $0.currentToken == token }
    }
}
