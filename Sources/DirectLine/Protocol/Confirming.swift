extension Conversation {
    /// `dl_conversation_confirm`: after a send whose outcome is unknown,
    /// looks for its clientActivityID in the conversation, from the start,
    /// without moving the handle's watermark. Polls until found or the
    /// timeout passes (the service may still be processing it).
    ///
    /// The whole call ends within `timeoutMs` plus one request timeout (the
    /// last look must finish). A look that cannot finish in that time is
    /// `DL_ERR_TIMEOUT`, never "not delivered": that answer is given only
    /// after the conversation was read to its end.
    func confirm(clientActivityID: String, options: ConfirmOptions) throws(DirectLineError) -> JSONValue {
        guard client.version == .v3 else {
            throw .invalidArgument("Direct Line 1.1 messages carry no clientActivityID: there is nothing to look up")
        }
        let start = Clock.monotonicMs()
        let deadline = start + options.timeoutMs
        let callDeadline = deadline + client.config.transport.timeoutMs
        let current = readPosition
        var watermark: String?
        var found: RawJSON?
        while true {
            // Page on from where the last look ended: an activity stored
            // later still appears after that watermark.
            watermark = try drain(after: watermark, id: current.id,
                                  deadlineMs: callDeadline) { page in
                page.list.forEachElement { activity in
                    if Self.clientActivityID(of: activity) == clientActivityID { found = activity }
                    return found == nil
                }
                return found == nil
            }
            if found != nil || Clock.monotonicMs() >= deadline { break }
            try sleep(until: min(deadline, Clock.monotonicMs() + 500))
        }
        var result = JSONObject()
        result["delivered"] = .bool(found != nil)
        if let found { result["id"] = found.member("id").map(JSONValue.raw) ?? .null }
        result["clientActivityID"] = .string(clientActivityID)
        return .object(result)
    }
}
