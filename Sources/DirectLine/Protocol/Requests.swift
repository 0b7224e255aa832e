import Synchronization

/// The Direct Line requests, for both protocol versions. Pure functions:
/// they build `HTTPRequest`s and never touch the network.
struct DirectLineRequests: Sendable {
    let version: ProtocolVersion

    /// The service's limit on one serialized activity or message.
    static let maxActivityBytes = 262_144

    private var root: String { version == .v3 ? "/v3/directline" : "/api" }

    /// The path sends to a conversation go to; a conversation computes it once.
    func sendPath(conversationId: String) -> String {
        "\(conversationPath(conversationId))/\(version == .v3 ? "activities" : "messages")"
    }

    private func conversationPath(_ id: String) -> String {
        "\(root)/conversations/\(Validation.percentEncoded(id))"
    }

    /// 3.0 `POST conversations` with an optional body; 1.1 `POST conversations`.
    func startConversation(body: JSONObject?, bearer: String) -> HTTPRequest {
        var request = HTTPRequest(method: .post, path: "\(root)/conversations", bearer: bearer)
        if version == .v3, let body, !body.isEmpty {
            request.contentType = "application/json"
            request.body = RequestBody(JSONValue.object(body).serializedBytes)
        }
        return request
    }

    /// 3.0 `POST tokens/generate` with an optional body; 1.1 `POST tokens/conversation`.
    func generateToken(body: JSONObject?, bearer: String) -> HTTPRequest {
        let leaf = version == .v3 ? "generate" : "conversation"
        var request = HTTPRequest(method: .post, path: "\(root)/tokens/\(leaf)", bearer: bearer)
        if version == .v3, let body, !body.isEmpty {
            request.contentType = "application/json"
            request.body = RequestBody(JSONValue.object(body).serializedBytes)
        }
        return request
    }

    /// 3.0 `POST tokens/refresh`, authorized by the token itself.
    func refreshToken(bearer: String) -> HTTPRequest {
        HTTPRequest(method: .post, path: "\(root)/tokens/refresh", bearer: bearer)
    }

    /// 1.1 `tokens/{id}/renew`: GET in the Swagger, POST in the
    /// authentication page, so the caller falls back from one to the other.
    func renewToken(conversationId: String, method: HTTPRequest.Method, bearer: String) -> HTTPRequest {
        HTTPRequest(method: method, path: "\(root)/tokens/\(Validation.percentEncoded(conversationId))/renew",
                    bearer: bearer)
    }

    /// 3.0 `GET conversations/{id}?watermark=`: a new stream URL (and token).
    func reconnect(conversationId: String, watermark: String?, bearer: String) -> HTTPRequest {
        var request = HTTPRequest(method: .get, path: conversationPath(conversationId), bearer: bearer)
        if let watermark { request.query = [("watermark", watermark)] }
        return request
    }

    /// 3.0 `POST conversations/{id}/activities`; 1.1 `POST conversations/{id}/messages`.
    func send(conversationId: String, payload: [UInt8], bearer: String) -> HTTPRequest {
        send(path: sendPath(conversationId: conversationId), payload: payload, bearer: bearer)
    }

    func send(path: String, payload: [UInt8], bearer: String) -> HTTPRequest {
        // Built in one initializer call: assigning fields of a `var`
        // afterwards made Swift copy the whole request once more.
        HTTPRequest(method: .post, path: path, contentType: "application/json", body: RequestBody(payload), bearer: bearer)
    }

    /// `POST conversations/{id}/upload?userId=` (both versions).
    func upload(conversationId: String, userId: String, body: RequestBody, contentType: String,
                disposition: String?, bearer: String) -> HTTPRequest {
        var request = HTTPRequest(method: .post, path: "\(conversationPath(conversationId))/upload", bearer: bearer)
        request.query = [("userId", userId)]
        request.contentType = contentType
        request.body = body
        if let disposition { request.headers = [("Content-Disposition", disposition)] }
        return request
    }

    /// 3.0 `GET conversations/{id}/activities?watermark=`; 1.1 `.../messages?watermark=`.
    func receive(conversationId: String, watermark: String?, bearer: String) -> HTTPRequest {
        let leaf = version == .v3 ? "activities" : "messages"
        var request = HTTPRequest(method: .get, path: "\(conversationPath(conversationId))/\(leaf)", bearer: bearer)
        if let watermark { request.query = [("watermark", watermark)] }
        return request
    }
}

/// The caller's activity (3.0) or message (1.1), checked and completed.
struct OutgoingActivity {
    var payload: JSONObject
    /// 3.0: the `channelData.clientActivityID` the activity carries.
    var clientActivityID: String?
    /// The user it is sent as, when it names one.
    var sender: String?

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
            throw DirectLineError(.DL_ERR_TOO_LARGE,
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

enum ClientActivityID {
    /// 64 random bits drawn once per process from the system's secure generator.
    private static let processKey: UInt64 = {
        var generator = SystemRandomNumberGenerator()
        return generator.next()
    }()
    private static let counter = Atomic<UInt64>(0)

    /// A fresh correlation id: the process's random key and a counter,
    /// mixed so consecutive ids share no visible pattern. Unique within the
    /// process (the mixing is a bijection of the counter) and, with 64
    /// random bits per process, across processes; no system call per id.
    static func generate() -> String {
        let count = counter.wrappingAdd(1, ordering: .relaxed).newValue
        let halves = (processKey, mix(count ^ processKey))
        return String(unsafeUninitializedCapacity: 36) { output in
            output[0] = UInt8(ascii: "d")
            output[1] = UInt8(ascii: "l")
            output[2] = UInt8(ascii: "c")
            output[3] = UInt8(ascii: "-")
            writeHex(halves.0, to: UnsafeMutableBufferPointer(rebasing: output[4..<20]))
            writeHex(halves.1, to: UnsafeMutableBufferPointer(rebasing: output[20..<36]))
            return 36
        }
    }

    /// `value` as 16 lowercase hex digits into `output` (16 bytes).
    private static func writeHex(_ value: UInt64, to output: UnsafeMutableBufferPointer<UInt8>) {
        var rest = value
        for index in stride(from: 15, through: 0, by: -1) {
            let digit = UInt8(truncatingIfNeeded: rest & 0xF)
            output[index] = digit < 10 ? UInt8(ascii: "0") + digit : UInt8(ascii: "a") - 10 + digit
            rest >>= 4
        }
    }

    /// Whether `id` has the form `generate()` gives: "dlc-" and 32 lowercase
    /// hex digits (so it needs no JSON escaping).
    static func isGenerated(_ id: String) -> Bool {
        var text = id
        return text.withUTF8 { bytes in
            guard bytes.count == 36, bytes[0] == UInt8(ascii: "d"), bytes[1] == UInt8(ascii: "l"),
                  bytes[2] == UInt8(ascii: "c"), bytes[3] == UInt8(ascii: "-") else { return false }
            for index in 4..<36 {
                let byte = bytes[index]
                guard (byte >= 0x30 && byte <= 0x39) || (byte >= 0x61 && byte <= 0x66) else { return false }
            }
            return true
        }
    }

    /// splitmix64's finaliser: a bijection on 64 bits.
    static func mix(_ value: UInt64) -> UInt64 {
        var z = value &+ 0x9E37_79B9_7F4A_7C15
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    /// 16 lowercase hex digits.
    static func hex(_ value: UInt64) -> String {
        String(unsafeUninitializedCapacity: 16) { output in
            writeHex(value, to: output)
            return 16
        }
    }
}
