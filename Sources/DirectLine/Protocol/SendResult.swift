/// What a send, an upload or an end hands back: 3.0 `{"id": ..., "clientActivityID": ...}`
/// (`clientActivityID` only when the request carried an activity), 1.1 `{}`.
///
/// One rule for every path: the service's answer must be 204, an empty
/// body, or an object whose `id` is a string or null. The id's JSON text is
/// kept as the service wrote it when it is plain (ASCII without escapes, or
/// null), found by the scanner without building a tree; anything else is
/// parsed and written again, which gives the same bytes the plain case
/// would. The result is written once, into memory the caller's layer
/// provides (`write(into:)`), so nothing is copied on the way out.
struct SendResult: Sendable {
    /// The `id` member's JSON text; nil: no `id` member (1.1).
    private let idText: ArraySlice<UInt8>?
    /// The `clientActivityID` member's value.
    private let correlation: Correlation?

    private enum Correlation: Sendable {
        /// Needs no escaping: written between quotes as it is.
        case plain(String)
        /// Its JSON text, quotes included.
        case escaped([UInt8])

        var count: Int {
            switch self {
            case .plain(let id): id.utf8.count + 2
            case .escaped(let text): text.count
            }
        }
    }

    /// The 1.1 result, and that of a 1.1 end, which sends nothing.
    static let empty = SendResult(idText: nil, correlation: nil)

    private init(idText: ArraySlice<UInt8>?, correlation: Correlation?) {
        self.idText = idText
        self.correlation = correlation
    }

    /// The result of a 3.0 request that carried `clientActivityID` (nil for
    /// an upload without an activity). `generated`: the id is one
    /// `ClientActivityID.generate()` made, which needs no escaping. An answer
    /// that breaks the protocol is an error carrying the clientActivityID,
    /// so that the caller can still reconcile the send.
    init(answer response: HTTPResponse, clientActivityID: String?, generated: Bool = false,
         what: String) throws(DirectLineError) {
        do {
            idText = try Self.idText(of: response, what: what)
        } catch {
            var error = error
            error.clientActivityID = clientActivityID
            throw error
        }
        correlation = clientActivityID.map { id in
            if generated || ClientActivityID.isGenerated(id) { return .plain(id) }
            var text: [UInt8] = []
            JSONValue.writeString(id, to: &text)
            return .escaped(text)
        }
    }

    /// 1.1 answers 204. A body that is not JSON (an HTML page from a proxy,
    /// say) means the service may never have seen the message.
    static func v1(answer response: HTTPResponse, what: String) throws(DirectLineError) -> SendResult {
        if !response.body.isEmpty { _ = try Responses.json(response, what: what) }
        return .empty
    }

    private static let null: [UInt8] = Array("null".utf8)

    private static func idText(of response: HTTPResponse, what: String) throws(DirectLineError) -> ArraySlice<UInt8> {
        let body = response.body
        if response.status == 204 || body.isEmpty { return null[...] }
        let plain = body.withUnsafeBufferPointer { bytes -> Range<Int>? in
            JSONScanner.withObject(in: bytes, range: 0..<bytes.count) { members, _ -> Range<Int>? in
                guard let member = members.named("id") else { return nil }
                let value = UnsafeBufferPointer(rebasing: bytes[member.value])
                let isPlain = value.first == UInt8(ascii: "n")
                    || (value.first == UInt8(ascii: "\"") && !value.contains { $0 >= 0x80 || $0 == UInt8(ascii: "\\") })
                return isPlain ? member.value : nil
            }
        }
        if let plain { return body[plain] }
        let answer = try Responses.json(response, what: what)
        guard let id = answer.objectValue?["id"], id.stringValue != nil || id.isNull else {
            throw Responses.protocolError("the service's answer to \(what) has no string \"id\"", response)
        }
        return id.serializedBytes[...]
    }

    private static let head: StaticString = #"{"id":"#
    private static let middle: StaticString = #","clientActivityID":"#

    /// How many bytes `write(into:)` writes.
    var byteCount: Int {
        guard let idText else { return 2 }
        var count = Self.head.utf8CodeUnitCount + idText.count + 1
        if let correlation { count += Self.middle.utf8CodeUnitCount + correlation.count }
        return count
    }

    /// Writes the result's JSON, `byteCount` bytes, at `output`.
    func write(into output: UnsafeMutablePointer<UInt8>) {
        var writer = ByteWriter(at: output)
        guard let idText else {
            writer.put(UInt8(ascii: "{"))
            writer.put(UInt8(ascii: "}"))
            return
        }
        Self.head.withUTF8Buffer { writer.put($0) }
        idText.withUnsafeBufferPointer { writer.put($0) }
        if let correlation {
            Self.middle.withUTF8Buffer { writer.put($0) }
            switch correlation {
            case .plain(var id):
                writer.put(UInt8(ascii: "\""))
                id.withUTF8 { writer.put($0) }
                writer.put(UInt8(ascii: "\""))
            case .escaped(let text):
                text.withUnsafeBufferPointer { writer.put($0) }
            }
        }
        writer.put(UInt8(ascii: "}"))
    }

    /// The result as bytes (for tests and the JSON tree's users).
    var bytes: [UInt8] {
        [UInt8](unsafeUninitializedCapacity: byteCount) { buffer, initialized in
            if let base = buffer.baseAddress { write(into: base) }
            initialized = byteCount
        }
    }
}
