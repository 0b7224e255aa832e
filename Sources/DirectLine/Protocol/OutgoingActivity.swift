/// The caller's activity (3.0) or message (1.1), checked and completed.
struct OutgoingActivity {
    var payload: JSONObject
    /// 3.0: the `channelData.clientActivityID` the activity carries.
    var clientActivityID: String?
    /// The user it is sent as, when it names one.
    var sender: String?
    /// The clientActivityID was made here, not given by the caller.
    var generated = false

    /// Validates the shape the service requires and, on 3.0, makes sure the
    /// activity carries a `channelData.clientActivityID` for reconciliation.
    init(_ value: JSONValue, version: ProtocolVersion) throws(DirectLineError) {
        let noun = version == .v3 ? "activity" : "message"
        guard var object = value.objectValue else {
            throw .invalidArgument("the \(noun) must be a JSON object, not \(value.typeName)")
        }
        let reader = try JSONReader(value, context: noun)
        switch version {
        case .v3:
            guard try reader.string("type") != nil else { throw .invalidArgument("the activity needs a string \"type\"") }
            guard let from = try reader.object("from"), let fromId = try from.string("id") else {
                throw .invalidArgument("the activity needs \"from\": {\"id\": \"...\"}")
            }
            try Validation.identifier(fromId, name: "activity.from.id")
            sender = fromId
            var channelData = try reader.object("channelData")?.object ?? JSONObject()
            let channelReader = try JSONReader(.object(channelData), context: "activity.channelData")
            if let existing = try channelReader.string("clientActivityID") {
                clientActivityID = existing
            } else {
                let generated = ClientActivityID.generate()
                channelData["clientActivityID"] = .string(generated)
                object["channelData"] = .object(channelData)
                clientActivityID = generated
                self.generated = true
            }
        case .v1:
            if let from = try reader.string("from") {
                try Validation.identifier(from, name: "message.from")
                sender = from
            }
            _ = try reader.object("channelData")
        }
        payload = object
    }

    /// The body for the caller's activity text as it is, with the
    /// clientActivityID spliced in where the tree path would add it, checked
    /// by `JSONScanner` instead of being parsed into a tree and written out
    /// again. nil when the scanner declines the text (which includes text
    /// that is not valid UTF-8) or anything is not plainly valid; the tree
    /// path then gives the exact result or error. `generated`: the
    /// clientActivityID is one `ClientActivityID.generate()` made here.
    static func scannedBody(_ bytes: UnsafeBufferPointer<UInt8>, version: ProtocolVersion)
        -> (body: [UInt8], clientActivityID: String?, sender: String?, generated: Bool)? {
        guard bytes.count <= DirectLineRequests.maxActivityBytes else { return nil }
        return JSONScanner.withObject(in: bytes, range: 0..<bytes.count) { members, close in
            func startsWith(_ range: Range<Int>, _ ascii: Unicode.Scalar) -> Bool { bytes[range.lowerBound] == UInt8(ascii: ascii) }
            /// The bytes inside a string value without escapes.
            func plainInner(_ range: Range<Int>) -> UnsafeBufferPointer<UInt8>? {
                guard startsWith(range, "\"") else { return nil }
                let inner = UnsafeBufferPointer(rebasing: bytes[(range.lowerBound + 1)..<(range.upperBound - 1)])
                return inner.contains(UInt8(ascii: "\\")) ? nil : inner
            }
            func plainString(_ range: Range<Int>) -> String? {
                plainInner(range).map { String(decoding: $0, as: UTF8.self) }
            }
            func identifier(_ range: Range<Int>) -> String? {
                guard let inner = plainInner(range), Validation.identifierProblem(inner) == nil else { return nil }
                return String(decoding: inner, as: UTF8.self)
            }
            let fromMember = members.named("from")
            let channelData = members.named("channelData")
            switch version {
            case .v1:
                var sender: String?
                if let fromMember, !startsWith(fromMember.value, "n") {
                    guard let id = identifier(fromMember.value) else { return nil }
                    sender = id
                }
                if let channelData, !startsWith(channelData.value, "{") && !startsWith(channelData.value, "n") { return nil }
                return (Array(bytes), nil, sender, false)
            case .v3:
                guard let type = members.named("type"), startsWith(type.value, "\""),
                      let fromMember, startsWith(fromMember.value, "{"),
                      let idValue = JSONScanner.value(of: "id", inObject: fromMember.value, of: bytes),
                      let sender = identifier(idValue) else { return nil }
                let insertAt: Int
                let opening: StaticString
                let closing: StaticString
                if let channelData {
                    guard startsWith(channelData.value, "{") else { return nil }
                    if let existing = JSONScanner.value(of: "clientActivityID", inObject: channelData.value, of: bytes) {
                        guard let id = plainString(existing) else { return nil }
                        return (Array(bytes), id, sender, false)
                    }
                    // The last non-blank byte before the closing brace says
                    // whether the object has members.
                    var last = channelData.value.upperBound - 2
                    while last > channelData.value.lowerBound, [0x20, 0x09, 0x0A, 0x0D].contains(bytes[last]) { last -= 1 }
                    let empty = last == channelData.value.lowerBound
                    insertAt = channelData.value.upperBound - 1
                    opening = empty ? "\"clientActivityID\":\"" : ",\"clientActivityID\":\""
                    closing = "\""
                } else {
                    insertAt = close
                    opening = ",\"channelData\":{\"clientActivityID\":\""
                    closing = "\"}"
                }
                var generated = ClientActivityID.generate()
                let count = bytes.count + opening.utf8CodeUnitCount + generated.utf8.count + closing.utf8CodeUnitCount
                guard count <= DirectLineRequests.maxActivityBytes else { return nil }
                // Appending buffers to a reserved array: specialized memcpys
                // (Array(unsafeUninitializedCapacity:) and
                // Array(repeating:count:) are not specialized and look up
                // generic metadata on every call).
                var body: [UInt8] = []
                body.reserveCapacity(count)
                body.append(contentsOf: UnsafeBufferPointer(rebasing: bytes[..<insertAt]))
                opening.withUTF8Buffer { body.append(contentsOf: $0) }
                generated.withUTF8 { body.append(contentsOf: $0) }
                closing.withUTF8Buffer { body.append(contentsOf: $0) }
                body.append(contentsOf: UnsafeBufferPointer(rebasing: bytes[insertAt...]))
                return (body, generated, sender, true)
            }
        }
    }

    /// The serialized body, refused when over the service's limit.
    func serializedBody() throws(DirectLineError) -> [UInt8] {
        let body = JSONValue.object(payload).serializedBytes
        guard body.count <= DirectLineRequests.maxActivityBytes else {
            throw DirectLineError(.tooLarge,
                                  "the activity is \(body.count) bytes serialized; the service accepts at most \(DirectLineRequests.maxActivityBytes)")
        }
        return body
    }

    /// The simple text message of `dl_send_text`, in the version's shape.
    static func text(_ text: String, from userId: String, version: ProtocolVersion) -> JSONValue {
        switch version {
        case .v3:
            .object(JSONObject([("type", .string("message")),
                                ("from", .object(JSONObject([("id", .string(userId))]))),
                                ("text", .string(text))]))
        case .v1:
            .object(JSONObject([("from", .string(userId)), ("text", .string(text))]))
        }
    }
}
