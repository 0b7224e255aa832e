/// `dl_conversation_listen`, `next`, `fd` and `unlisten` on a conversation
/// (the queue and its states are `Listener`'s; the polling source is
/// `PollingSource`).
extension Conversation {
    /// `dl_conversation_listen`: starts receiving in the background, or
    /// reports the listening that runs.
    func listen(_ options: ListenOptions) throws(DirectLineError) -> JSONValue {
        let mode: ListenSession.Mode
        switch options.mode {
        case .websocket:
            // Refused before anything starts, whatever runs now.
            guard client.version == .v3 else {
                throw DirectLineError(.unsupported, "Direct Line 1.1 has no WebSocket stream: listen with \"mode\": \"polling\" or \"auto\"")
            }
            if case .failure(var error) = WebSocketAPI.lookup {
                error.message += ": listen with \"mode\": \"polling\" or \"auto\""
                throw error
            }
            mode = .websocket
        case .auto:
            mode = client.version == .v3 && WebSocketAPI.current != nil ? .websocket : .polling
        case .polling:
            mode = .polling
        }
        let result = try listener.listen(mode: mode, options: options, conversation: self) { session in
            if mode == .websocket, let api = WebSocketAPI.current {
                return WebSocketSource(conversation: self, session: session, api: api)
            }
            return PollingSource(conversation: self, session: session)
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
