import Testing
@testable import DirectLine

@Suite("requests and activities")
struct DirectLineRequestsTests {
    @Test("paths for both protocols, with ids as single encoded segments")
    func paths() {
        let v3 = DirectLineRequests(version: .v3)
        let v1 = DirectLineRequests(version: .v1)
        #expect(v3.startConversation(body: nil, bearer: "t").path == "/v3/directline/conversations")
        #expect(v1.startConversation(body: nil, bearer: "t").path == "/api/conversations")
        #expect(v3.send(conversationId: "a/b?c#d%", payload: [], bearer: "t").path
            == "/v3/directline/conversations/a%2Fb%3Fc%23d%25/activities")
        #expect(v1.send(conversationId: "abc", payload: [], bearer: "t").path == "/api/conversations/abc/messages")
        let receive = v3.receive(conversationId: "c", watermark: "7", bearer: "t")
        #expect(receive.method == .get)
        #expect(receive.query.map(\.value) == ["7"])
        #expect(v1.receive(conversationId: "c", watermark: nil, bearer: "t").query.isEmpty)
    }

    @Test("a 3.0 start body is sent only when it has members; 1.1 never sends one")
    func startBody() {
        let user = JSONObject([("user", .object(JSONObject([("id", .string("dl_u"))])))])
        #expect(DirectLineRequests(version: .v3).startConversation(body: JSONObject(), bearer: "t").body.isEmpty)
        #expect(String(decoding: DirectLineRequests(version: .v3).startConversation(body: user, bearer: "t").body.collected(), as: UTF8.self)
            == #"{"user":{"id":"dl_u"}}"#)
        #expect(DirectLineRequests(version: .v1).startConversation(body: user, bearer: "t").body.isEmpty)
    }

    @Test("3.0 activities get a clientActivityID unless they carry one")
    func clientActivityID() throws {
        let plain = try OutgoingActivity(JSONParser.parse(#"{"type":"message","from":{"id":"u"},"text":"hi"}"#), version: .v3)
        let generated = try #require(plain.clientActivityID)
        #expect(generated.hasPrefix("dlc-") && generated.count == 36)
        #expect(plain.payload["channelData"]?.objectValue?["clientActivityID"] == .string(generated))
        #expect(plain.payload.keys == ["type", "from", "text", "channelData"])

        let own = try OutgoingActivity(JSONParser.parse(
            #"{"type":"message","from":{"id":"u"},"channelData":{"x":1,"clientActivityID":"mine"}}"#), version: .v3)
        #expect(own.clientActivityID == "mine")
        #expect(own.payload["channelData"]?.objectValue?.keys == ["x", "clientActivityID"])

        let other = try OutgoingActivity(JSONParser.parse(#"{"type":"message","from":{"id":"u"}}"#), version: .v3)
        #expect(other.clientActivityID != generated)
    }

    @Test("activities of the wrong shape are refused", arguments: [
        (ProtocolVersion.v3, #"[]"#), (.v3, #""text""#), (.v3, #"{"from":{"id":"u"}}"#),
        (.v3, #"{"type":1,"from":{"id":"u"}}"#), (.v3, #"{"type":"message"}"#),
        (.v3, #"{"type":"message","from":"u"}"#), (.v3, #"{"type":"message","from":{"id":""}}"#),
        (.v3, #"{"type":"message","from":{"id":"u"},"channelData":[]}"#),
        (.v3, #"{"type":"message","from":{"id":"u"},"channelData":{"clientActivityID":5}}"#),
        (.v1, #"{"from":{"id":"u"}}"#), (.v1, #"{"text":"x","channelData":"scalar"}"#), (.v1, #"7"#),
    ])
    func refused(version: ProtocolVersion, text: String) throws {
        let value = try JSONParser.parse(text)
        #expect(throws: DirectLineError.self) { try OutgoingActivity(value, version: version) }
    }

    @Test("the activity size limit is exact")
    func sizeLimit() throws {
        func activity(textBytes: Int) throws -> OutgoingActivity {
            try OutgoingActivity(.object(JSONObject([
                ("type", .string("message")), ("from", .object(JSONObject([("id", .string("u"))]))),
                ("text", .string(String(repeating: "x", count: textBytes))),
                ("channelData", .object(JSONObject([("clientActivityID", .string("c"))]))),
            ])), version: .v3)
        }
        let overhead = try activity(textBytes: 0).serializedBody().count
        #expect(try activity(textBytes: DirectLineRequests.maxActivityBytes - overhead).serializedBody().count
            == DirectLineRequests.maxActivityBytes)
        do {
            _ = try activity(textBytes: DirectLineRequests.maxActivityBytes - overhead + 1).serializedBody()
            Issue.record("an activity over the limit was accepted")
        } catch let error as DirectLineError {
            #expect(error.status == .tooLarge)
        }
    }

    @Test("text messages take each protocol's shape")
    func textShapes() {
        #expect(OutgoingActivity.text("hi", from: "u", version: .v3).serialized == #"{"type":"message","from":{"id":"u"},"text":"hi"}"#)
        #expect(OutgoingActivity.text("hi", from: "u", version: .v1).serialized == #"{"from":"u","text":"hi"}"#)
    }

    @Test("ids: empty, dot segments and control characters are refused", arguments: ["", ".", "..", "a\nb", "a\u{0}b", "a\u{7F}"])
    func badIdentifiers(id: String) {
        #expect(throws: DirectLineError.self) { try Validation.identifier(id, name: "id") }
    }

    @Test("percent-encoding keeps only unreserved characters")
    func percentEncoding() {
        #expect("a-b_c.d~e".percentEncoded == "a-b_c.d~e")
        #expect("a b/c?d#e%f&g=h".percentEncoded == "a%20b%2Fc%3Fd%23e%25f%26g%3Dh")
        #expect("é".percentEncoded == "%C3%A9")
    }
}
