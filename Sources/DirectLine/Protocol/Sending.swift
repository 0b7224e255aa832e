extension Conversation {
    /// `dl_send_activity` and `dl_send_text` with an activity (3.0) or
    /// message (1.1) already parsed.
    func send(_ activityJSON: JSONValue) throws(DirectLineError) -> SendResult {
        let outgoing = try OutgoingActivity(activityJSON, version: client.version)
        let response = try post(body: outgoing.serializedBody(), clientActivityID: outgoing.clientActivityID,
                                sender: outgoing.sender)
        return try result(of: response, clientActivityID: outgoing.clientActivityID, generated: outgoing.generated)
    }

    /// `dl_send_activity` with the caller's JSON text (`name` is the
    /// argument, for errors): an activity the scanner accepts goes out as
    /// it is, with its clientActivityID spliced in; any other text is
    /// parsed and written out again, which gives the exact result or error.
    func send(activityJSON bytes: UnsafeBufferPointer<UInt8>, name: String) throws(DirectLineError) -> SendResult {
        guard let scanned = OutgoingActivity.scannedBody(bytes, version: client.version) else {
            return try send(JSONReader.parse(bytes, name: name))
        }
        let response = try post(body: scanned.body, clientActivityID: scanned.clientActivityID, sender: scanned.sender)
        return try result(of: response, clientActivityID: scanned.clientActivityID, generated: scanned.generated)
    }

    private func post(body: [UInt8], clientActivityID: String?, sender: String?) throws(DirectLineError) -> HTTPResponse {
        let token = tokenForSend(recordingSender: sender, clientActivityID: clientActivityID)
        defer { noteSent() }
        return try post(client.requests.send(path: sendPath, payload: body, bearer: token),
                        clientActivityID: clientActivityID)
    }

    /// The service's answer to a send or upload as the caller's result.
    func result(of response: HTTPResponse, clientActivityID: String?, generated: Bool = false,
                what: String = "send activity") throws(DirectLineError) -> SendResult {
        guard client.version == .v3 else { return try .v1(answer: response, what: what) }
        return try SendResult(answer: response, clientActivityID: clientActivityID, generated: generated, what: what)
    }
}
