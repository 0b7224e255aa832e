/// The caller's activity (3.0) or message (1.1), checked and completed.
struct OutgoingActivity {
    var payload: JSONObject
    /// 3.0: the `channelData.clientActivityID` the activity carries.
    var clientActivityID: String?
    /// The user it is sent as, when it names one.
    var sender: String?
    /// The clientActivityID was made here, not given by the caller.
    var generated = false

    /// What the service requires of an activity's members, stated once for
    /// both paths: `init` checks a parsed tree against it and says what is
    /// wrong; `scannedBody` checks the caller's text against it without
    /// building a tree, and declines (to the tree path) whatever is not
    /// plainly right.
    struct MemberRule: Sendable {
        enum Shape: Sendable {
            /// A string (3.0 `type`).
            case string
            /// A string that is a valid id: the sender (1.1 `from`).
            case identifier
            /// An object whose `id` is a valid id: the sender (3.0 `from`).
            case objectWithIdentifier
            /// An object (`channelData`).
            case object
        }

        let key: StaticString
        let shape: Shape
        /// The refusal when the member is missing or null; nil: it is optional.
        let missing: String?

        var name: String { key.withUTF8Buffer { String(decoding: $0, as: UTF8.self) } }
    }

    static func rules(for version: ProtocolVersion) -> [MemberRule] {
        switch version {
        case .v3: v3Rules
        case .v1: v1Rules
        }
    }

    private static let v3Rules = [
        MemberRule(key: "type", shape: .string, missing: "the activity needs a string \"type\""),
        MemberRule(key: "from", shape: .objectWithIdentifier, missing: "the activity needs \"from\": {\"id\": \"...\"}"),
        MemberRule(key: "channelData", shape: .object, missing: nil),
    ]
    private static let v1Rules = [
        MemberRule(key: "from", shape: .identifier, missing: nil),
        MemberRule(key: "channelData", shape: .object, missing: nil),
    ]

    /// Where a 3.0 activity carries its correlation id: a string member of
    /// `channelData`, added when the caller gave none.
    static let correlationKey: StaticString = "clientActivityID"

    /// Validates the shape the service requires and, on 3.0, makes sure the
    /// activity carries a `channelData.clientActivityID` for reconciliation.
    init(_ value: JSONValue, version: ProtocolVersion) throws(DirectLineError) {
        let noun = version == .v3 ? "activity" : "message"
        guard var object = value.objectValue else {
            throw .invalidArgument("the \(noun) must be a JSON object, not \(value.typeName)")
        }
        let reader = try JSONReader(value, context: noun)
        for rule in Self.rules(for: version) {
            let key = rule.name
            var present = true
            switch rule.shape {
            case .string:
                present = try reader.string(key) != nil
            case .identifier:
                if let id = try reader.string(key) {
                    try Validation.identifier(id, name: "\(noun).\(key)")
                    sender = id
                } else {
                    present = false
                }
            case .objectWithIdentifier:
                if let inner = try reader.object(key), let id = try inner.string("id") {
                    try Validation.identifier(id, name: "\(noun).\(key).id")
                    sender = id
                } else {
                    present = false
                }
            case .object:
                present = try reader.object(key) != nil
            }
            if !present, let missing = rule.missing { throw .invalidArgument(missing) }
        }
        if version == .v3 {
            let correlationKey = String(describing: Self.correlationKey)
            var channelData = try reader.object("channelData")?.object ?? JSONObject()
            let channelReader = try JSONReader(.object(channelData), context: "activity.channelData")
            if let existing = try channelReader.string(correlationKey) {
                // The caller's own id must be one `confirm` can look up.
                try Validation.identifier(existing, name: "activity.channelData.\(correlationKey)")
                clientActivityID = existing
            } else {
                let generated = ClientActivityID.generate()
                channelData[correlationKey] = .string(generated)
                object["channelData"] = .object(channelData)
                clientActivityID = generated
                self.generated = true
            }
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
            func identifier(_ range: Range<Int>) -> String? {
                guard let inner = plainInner(range), Validation.identifierProblem(inner) == nil else { return nil }
                return String(decoding: inner, as: UTF8.self)
            }
            var sender: String?
            for rule in rules(for: version) {
                guard let member = members.named(rule.key), !startsWith(member.value, "n") else {
                    if rule.missing != nil { return nil }
                    continue
                }
                switch rule.shape {
                case .string:
                    guard startsWith(member.value, "\"") else { return nil }
                case .identifier:
                    guard let id = identifier(member.value) else { return nil }
                    sender = id
                case .objectWithIdentifier:
                    guard startsWith(member.value, "{"),
                          let idValue = JSONScanner.value(of: "id", inObject: member.value, of: bytes),
                          let id = identifier(idValue) else { return nil }
                    sender = id
                case .object:
                    guard startsWith(member.value, "{") else { return nil }
                }
            }
            guard version == .v3 else { return (Array(bytes), nil, sender, false) }
            // A correlation id is spliced into channelData, so a null one
            // (which the tree path replaces) goes that way.
            let channelData = members.named("channelData")
            if let channelData, !startsWith(channelData.value, "{") { return nil }
            let insertAt: Int
            let opening: StaticString
            let closing: StaticString
            if let channelData {
                if let existing = JSONScanner.value(of: correlationKey, inObject: channelData.value, of: bytes) {
                    guard let id = identifier(existing) else { return nil }
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
