/// `dl_conversation_listen`, `next`, `fd` and `unlisten` on a conversation
/// (the queue and its states are `Listener`'s; the polling source is
/// `PollingSource`).
extension Conversation {
    /// `dl_conversation_listen`: starts receiving in the background, or
    /// reports the listening that runs.
    func listen(_ options: ListenOptions) throws(DirectLineError) -> JSONValue {
        switch options.mode {
        case .websocket:
            // Refused before anything starts, whatever runs now.
            let why = client.version == .v1
                ? "Direct Line 1.1 has no WebSocket stream"
                : "this build of libdirectline has no WebSocket stream yet"
            throw DirectLineError(.unsupported, "\(why): listen with \"mode\": \"polling\" or \"auto\"")
        case .auto, .polling:
            break
        }
        let result = try listener.listen(mode: .polling, options: options, conversation: self) { session in
            PollingSource(conversation: self, session: session)
        }
        // A handle already ended reads what is left and reports `ended`.
        if state.withLock({ $0.ended }) { listener.conversationEnded() }
        return result
    }

    /// `dl_conversation_next`.
    func next(timeoutMs: Int) throws(DirectLineError) -> JSONValue {
        try listener.next(timeoutMs: timeoutMs, conversation: self)
    }

    /// `dl_conversation_unlisten`.
    func unlisten() -> JSONValue {
        listener.unlisten(conversation: self)
    }
}
