import Testing
@testable import DirectLine

/// The send fast path (JSONScanner + splicing) must never accept what the
/// parser refuses, and must produce what the tree path produces.
@Suite("JSON scanner and the send fast path")
struct JSONScannerTests {
    static func scan(_ text: String) -> [String]? {
        scan(bytes: Array(text.utf8))
    }

    /// The outermost object's keys, or nil when the scanner declines.
    static func scan(bytes: [UInt8]) -> [String]? {
        bytes.withUnsafeBufferPointer { bytes in
            JSONScanner.withObject(in: bytes, range: 0..<bytes.count) { members, _ in
                (0..<members.count).map { String(decoding: UnsafeBufferPointer(rebasing: bytes[members[$0].key]), as: UTF8.self) }
            }
        }
    }

    /// The 3.0 send result for `response` as a string; nil when the answer
    /// breaks the protocol.
    static func sendResult(_ response: HTTPResponse, _ clientActivityID: String) -> String? {
        guard let result = try? SendResult(answer: response, clientActivityID: clientActivityID, what: "send") else {
            return nil
        }
        return String(decoding: result.bytes, as: UTF8.self)
    }

    static func scannedBody(_ text: String, version: ProtocolVersion)
        -> (body: [UInt8], clientActivityID: String?, sender: String?, generated: Bool)? {
        Array(text.utf8).withUnsafeBufferPointer { OutgoingActivity.scannedBody($0, version: version) }
    }

    static let seeds = [
        #"{"type":"message","from":{"id":"u1","name":"A"},"text":"hi","channelData":{"x":[1,2.5e3,-0,true,null]}}"#,
        #" { "type" : "message" , "from" : { "id" : "u" } , "text" : "a\"b\\c\n\u00e9\ud83d\ude00\/" } "#,
        #"{"a":{"b":{"c":[[],{}]}},"d":"","e":-12.5E+7}"#,
        #"{"type":"message","from":{"id":"u"},"channelData":{}}"#,
    ]

    @Test("every object the scanner accepts, the parser accepts with the same top-level keys")
    func agreesWithParser() throws {
        // Each seed, and every prefix, suffix and single-byte change of it.
        var texts: [String] = []
        for seed in Self.seeds {
            let bytes = Array(seed.utf8)
            texts.append(seed)
            for cut in 0..<bytes.count {
                texts.append(String(decoding: bytes[..<cut], as: UTF8.self))
                texts.append(String(decoding: bytes[cut...], as: UTF8.self))
                for replacement in Array(#"{}[]",:\ 0-.eEtfnu"#.utf8) + [0x01, 0x7F] {
                    var changed = bytes
                    changed[cut] = replacement
                    texts.append(String(decoding: changed, as: UTF8.self))
                }
            }
        }
        var accepted = 0
        for text in texts {
            guard let keys = Self.scan(text) else { continue }
            accepted += 1
            let parsed = try JSONParser.parse(text)
            #expect(parsed.objectValue?.keys == keys, "\(text)")
        }
        #expect(accepted > Self.seeds.count)
    }

    @Test("texts the parser refuses are declined", arguments: [
        #"{"a":1,"a":2}"#, #"{"a":1,}"#, #"{"a" 1}"#, #"{"a":01}"#, #"{"a":"\x"}"#, #"{"a":"\ud800"}"#,
        #"{"a":"\udc00"}"#, #"{"a":"\ud800\u0041"}"#, "{\"a\":\"\u{01}\"}", #"{"a":1} x"#, #"{"a":tru}"#,
        #"{"a":[1,]}"#, #"{"a":1.}"#, #"{"a":-}"#, #"{"a":1e}"#,
    ])
    func declinesInvalid(text: String) {
        #expect(Self.scan(text) == nil)
    }

    @Test("keys with escapes and very large objects are left to the parser")
    func declinesWhatItCannotCheck() throws {
        #expect(Self.scan(#"{"a":1,"\u0061":2}"#) == nil)
        let many = "{" + (0..<100).map { "\"k\($0)\":\($0)" }.joined(separator: ",") + "}"
        #expect(Self.scan(many) == nil)
        _ = try JSONParser.parse(many)
        // Keys of open objects beyond the scanner's stack space: declined.
        func level(_ depth: Int) -> String {
            let keys = (0..<31).map { "\"k\($0)\":0" }.joined(separator: ",")
            return depth == 0 ? "{\(keys)}" : "{\(keys),\"next\":\(level(depth - 1))}"
        }
        #expect(Self.scan(level(1)) != nil)
        #expect(Self.scan(level(4)) == nil)
        _ = try JSONParser.parse(level(4))
    }

    @Test("the scanner accepts exactly the strings that are valid UTF-8")
    func utf8() {
        // Every one- and two-byte tail after each lead byte, and a sample of
        // longer sequences, inside a string value and inside a key.
        var samples: [[UInt8]] = []
        for lead in UInt8(0x80)...UInt8(0xFF) {
            samples.append([lead])
            for second in UInt8(0x00)...UInt8(0xFF) where second != UInt8(ascii: "\"") && second != UInt8(ascii: "\\") {
                samples.append([lead, second])
            }
            for tail: [UInt8] in [[0x80, 0x80], [0xBF, 0xBF], [0x9F, 0x80], [0xA0, 0x80], [0x8F, 0x80, 0x80],
                                  [0x90, 0x80, 0x80], [0xBF, 0xBF, 0xBF], [0x80, 0x41], [0x80, 0x80, 0x41]] {
                samples.append([lead] + tail)
            }
        }
        var accepted = 0
        for sample in samples {
            let valid = String(validating: sample, as: UTF8.self) != nil
                && !sample.contains { $0 < 0x20 }
            let inValue = Array(#"{"k":"a"#.utf8) + sample + Array(#"b"}"#.utf8)
            let inKey = Array(#"{"a"#.utf8) + sample + Array(#"":1}"#.utf8)
            #expect((Self.scan(bytes: inValue) != nil) == valid, "\(sample)")
            #expect((Self.scan(bytes: inKey) != nil) == valid, "\(sample)")
            if valid { accepted += 1 }
        }
        #expect(accepted > 1_000)
        // Non-ASCII bytes outside strings are refused.
        #expect(Self.scan(bytes: Array(#"{"k":"#.utf8) + [0xC3, 0xA9] + [UInt8(ascii: "}")]) == nil)
        #expect(Self.scan(bytes: [0xEF, 0xBB, 0xBF] + Array(#"{"k":1}"#.utf8)) == nil)
    }

    @Test("a special byte anywhere in a long string is seen, eight-byte steps or not")
    func specialBytesAtEveryOffset() {
        let plain = Array("abcdefghijklmnopqrstuvwxyz0123456789".utf8)
        let specials: [[UInt8]] = [[0x00], [0x1F], [0x20], [0x21], [0x22], [0x5C], [0x7F], [0x80], [0xC3, 0xA9],
                                   [0xC3], [0xED, 0xA0, 0x80], [0xF0, 0x9F, 0x98, 0x80], [0xFF]]
        var accepted = 0
        for offset in 0...plain.count {
            for special in specials {
                let text = Array(#"{"k":""#.utf8) + plain[..<offset] + special + plain[offset...] + Array(#""}"#.utf8)
                // The parser expects UTF-8 checked beforehand, as the C boundary does.
                let parsed = String(validating: text, as: UTF8.self) != nil && (try? JSONParser.parse(bytes: text)) != nil
                #expect((Self.scan(bytes: text) != nil) == parsed, "\(special) at \(offset)")
                if parsed { accepted += 1 }
            }
        }
        #expect(accepted > 5 * (plain.count + 1))
    }

    @Test("nesting past the parser's limit is declined")
    func depth() {
        let deep = "{\"a\":" + String(repeating: "[", count: 200) + String(repeating: "]", count: 200) + "}"
        #expect(Self.scan(deep) == nil)
    }

    /// The tree path's body for `text`, with the scanned path's generated id.
    static func treeBody(_ text: String, version: ProtocolVersion, id: String?) throws -> JSONValue {
        var value = try JSONParser.parse(text)
        if version == .v3, let id, var object = value.objectValue {
            var channel = object["channelData"]?.objectValue ?? JSONObject()
            if channel["clientActivityID"] == nil { channel["clientActivityID"] = .string(id) }
            object["channelData"] = .object(channel)
            value = .object(object)
        }
        return try JSONParser.parse(bytes: OutgoingActivity(value, version: version).serializedBody())
    }

    @Test("the spliced body is the tree path's body", arguments: [
        (#"{"type":"message","from":{"id":"u"},"text":"hi"}"#, ProtocolVersion.v3),
        (#" {"type": "message", "from": {"id": "u"}, "text": "hi"}  "#, .v3),
        (#"{"type":"message","from":{"name":"n","id":"u"},"channelData":{}}"#, .v3),
        (#"{"type":"message","from":{"id":"u"},"channelData":{ }}"#, .v3),
        (#"{"type":"message","from":{"id":"u"},"channelData":{"a":[{"b":"}"}]}}"#, .v3),
        (#"{"type":"message","from":{"id":"u"},"channelData":{"clientActivityID":"mine"}}"#, .v3),
        (#"{"type":"message","from":{"id":"u"},"text":"a\"b\n\u00e9"}"#, .v3),
        (#"{"from":"u","text":"hi"}"#, .v1),
        (#"{"from":null,"text":"hi","channelData":null}"#, .v1),
        (#"{"text":"hi","channelData":{"a":1}}"#, .v1),
    ])
    func splicedBody(text: String, version: ProtocolVersion) throws {
        let scanned = try #require(Self.scannedBody(text, version: version))
        let body = try JSONParser.parse(bytes: scanned.body)
        #expect(body == (try Self.treeBody(text, version: version, id: scanned.clientActivityID)))
        let tree = try OutgoingActivity(JSONParser.parse(text), version: version)
        #expect(scanned.sender == tree.sender)
        if version == .v3 {
            #expect(scanned.clientActivityID == body.objectValue?["channelData"]?.objectValue?["clientActivityID"]?.stringValue)
            #expect(scanned.generated == !text.contains("clientActivityID"))
        } else {
            #expect(scanned.clientActivityID == nil && !scanned.generated)
        }
    }

    @Test("activities the tree path refuses or must rewrite are declined", arguments: [
        (#"{"from":{"id":"u"}}"#, ProtocolVersion.v3),
        (#"{"type":null,"from":{"id":"u"}}"#, .v3),
        (#"{"type":"message","from":{"id":".."}}"#, .v3),
        (#"{"type":"message","from":{"id":"a\nb"}}"#, .v3),
        (#"{"type":"message","from":"u"}"#, .v3),
        (#"{"type":"message","from":{"id":"u"},"channelData":null}"#, .v3),
        (#"{"type":"message","from":{"id":"u"},"channelData":{"clientActivityID":7}}"#, .v3),
        (#"{"type":"message","from":{"id":"u"},"channelData":[]}"#, .v3),
        (#"{"from":{"id":"u"}}"#, .v1),
        (#"{"from":"u","channelData":"x"}"#, .v1),
        (#"[1]"#, .v3),
    ])
    func declinedActivities(text: String, version: ProtocolVersion) {
        #expect(Self.scannedBody(text, version: version) == nil)
    }

    @Test("send results: plain ids kept as written, others parsed and written again, bad answers refused", arguments: [
        (200, #"{"id":"x|0000001"}"#, #"{"id":"x|0000001","clientActivityID":"c\"1"}"#),
        (200, #" { "id" : null } "#, #"{"id":null,"clientActivityID":"c\"1"}"#),
        (204, "", #"{"id":null,"clientActivityID":"c\"1"}"#),
        (200, "", #"{"id":null,"clientActivityID":"c\"1"}"#),
        (200, #"{"id":"\u0041"}"#, #"{"id":"A","clientActivityID":"c\"1"}"#),
        (200, #"{"id":"é"}"#, #"{"id":"é","clientActivityID":"c\"1"}"#),
        (200, #"{"id":5}"#, nil),
        (200, #"{"other":"x"}"#, nil),
        (200, "<html>", nil),
    ] as [(Int, String, String?)])
    func sendResult(status: Int, body: String, expected: String?) {
        let response = HTTPResponse(status: status, body: Array(body.utf8), attempts: 1)
        #expect(Self.sendResult(response, "c\"1") == expected)
    }
}
