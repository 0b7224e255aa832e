import Testing
@testable import DirectLine

@Suite("tokens, saved state and reconnecting")
struct TokensTests {
    @Test("token, renew and reconnect requests for both protocols")
    func tokenRequests() {
        let v3 = DirectLineRequests(version: .v3)
        let v1 = DirectLineRequests(version: .v1)
        let user = JSONObject([("user", .object(JSONObject([("id", .string("dl_u"))])))])

        let generate = v3.generateToken(body: user, bearer: "s")
        #expect(generate.method == .post && generate.path == "/v3/directline/tokens/generate")
        #expect(String(decoding: generate.body.collected(), as: UTF8.self) == #"{"user":{"id":"dl_u"}}"#)
        #expect(v3.generateToken(body: JSONObject(), bearer: "s").body.isEmpty)
        let legacy = v1.generateToken(body: user, bearer: "s")
        #expect(legacy.path == "/api/tokens/conversation" && legacy.body.isEmpty)

        let refresh = v3.refreshToken(bearer: "tok")
        #expect(refresh.method == .post && refresh.path == "/v3/directline/tokens/refresh" && refresh.bearer == "tok")
        #expect(v1.renewToken(conversationId: "a/b", method: .get, bearer: "t").path == "/api/tokens/a%2Fb/renew")
        #expect(v1.renewToken(conversationId: "c", method: .post, bearer: "t").method == .post)

        let reconnect = v3.reconnect(conversationId: "c1", watermark: "12", bearer: "t")
        #expect(reconnect.method == .get && reconnect.path == "/v3/directline/conversations/c1")
        #expect(reconnect.query.map(\.name) == ["watermark"] && reconnect.query.map(\.value) == ["12"])
        #expect(v3.reconnect(conversationId: "c1", watermark: nil, bearer: "t").query.isEmpty)
    }

    @Test("start and token options: 3.0 checks them, 1.1 takes none")
    func startOptions() throws {
        let good = try JSONParser.parse(#"{"user":{"id":"dl_a","name":"A"},"trustedOrigins":["https://x"]}"#)
        #expect(try DirectLineClient.startOptions(good, version: .v3, call: "x", takesLocale: true)?.keys == ["user", "trustedOrigins"])
        #expect(try DirectLineClient.startOptions(JSONParser.parse("{}"), version: .v1, call: "x", takesLocale: true)?.isEmpty == true)
        #expect(try DirectLineClient.startOptions(nil, version: .v1, call: "x", takesLocale: true) == nil)
        for bad in [#"{"user":{"id":"dl_a"}}"#] {
            #expect(throws: DirectLineError.self) {
                try DirectLineClient.startOptions(JSONParser.parse(bad), version: .v1, call: "x", takesLocale: true)
            }
        }
        for bad in [#"{"trustedOrigins":"x"}"#, #"{"trustedOrigins":[1]}"#, #"{"user":{"id":"a\u0001b"}}"#,
                    #"{"users":{}}"#, #"[]"#] {
            #expect(throws: DirectLineError.self) {
                try DirectLineClient.startOptions(JSONParser.parse(bad), version: .v3, call: "x", takesLocale: true)
            }
        }
    }

    @Test("a token is refreshed at half its remaining life, never when it cannot be")
    func refreshSchedule() {
        let token = TokenState.issued("t", refreshable: true, expiresIn: 10, issuedAtMs: 1_000)
        #expect(token.lifetimeMs == 10_000 && token.expiresAtMs == 11_000)
        #expect(token.refreshDueMs(now: 1_000) == 6_000)
        #expect(token.refreshDueMs(now: 9_000) == 10_000)
        #expect(token.refreshDueMs(now: 11_000) == nil)
        #expect(TokenState.issued("s", refreshable: false, expiresIn: 10, issuedAtMs: 0).refreshDueMs(now: 0) == nil)
        #expect(TokenState.issued("t", refreshable: true, expiresIn: nil, issuedAtMs: 0).refreshDueMs(now: 0) == nil)
        #expect(TokenState.issued("t", refreshable: true, expiresIn: -5, issuedAtMs: 0).expiresAtMs == 0)
    }

    @Test("saved state carries the conversation's token, never the client's secret")
    func savedState() throws {
        let client = DirectLineClient(config: try ClientConfig(json: JSONParser.parse(
            #"{"endpoint":"http://127.0.0.1:9","secret":"the-secret"}"#)))
        let withToken = try client.openConversation(JSONParser.parse(
            #"{"conversationId":"c1","token":"tok-1","watermark":"4","tokenExpiresAt":"2099-01-01T00:00:00Z"}"#))
        defer { withToken.close() }
        let saved = withToken.savedState().objectValue
        #expect(saved?["token"] == .string("tok-1") && saved?["watermark"] == .string("4"))
        #expect(saved?["tokenExpiresAt"] == .string("2099-01-01T00:00:00Z"))
        // Without a lifetime the time left stands in for it when scheduling
        // refreshes, but an estimate is not saved: the state reopens to itself.
        #expect((withToken.state.withLock { $0.token.lifetimeMs } ?? 0) > 2 * 365 * 86_400_000)
        #expect(saved?["tokenLifetime"] == .null)
        let withLifetime = try client.openConversation(JSONParser.parse(
            #"{"conversationId":"c3","token":"tok-3","tokenExpiresAt":"2099-01-01T00:00:00Z","tokenLifetime":1800}"#))
        defer { withLifetime.close() }
        #expect(withLifetime.savedState().objectValue?["tokenLifetime"] == .number("1800"))
        #expect(withToken.info().objectValue?["autoRefresh"] == .bool(true))
        #expect(!withToken.info().serialized.contains("tok-1"))

        let withSecret = try client.openConversation(JSONParser.parse(#"{"conversationId":"c2"}"#))
        defer { withSecret.close() }
        #expect(withSecret.savedState().objectValue?["token"] == .null)
        #expect(!withSecret.savedState().serialized.contains("the-secret"))
        #expect(withSecret.info().objectValue?["autoRefresh"] == .bool(false))
        #expect(throws: DirectLineError.self) { try withSecret.refreshToken() }

        withToken.close()
        #expect(withToken.info().objectValue?["autoRefresh"] == .bool(false))
        for bad in [#"{"conversationId":"c","tokenExpiresAt":"tomorrow"}"#,
                    #"{"conversationId":"c","expires_in":5,"tokenExpiresAt":"2099-01-01T00:00:00Z"}"#,
                    #"{"conversationId":"c","token":""}"#, #"{"conversationId":"c","reconnect":"yes"}"#] {
            #expect(throws: DirectLineError.self) { try client.openConversation(JSONParser.parse(bad)) }
        }
    }

    @Test("1.1 has no reconnect; it is refused before anything is sent")
    func legacyReconnect() throws {
        let client = DirectLineClient(config: try ClientConfig(json: JSONParser.parse(
            #"{"endpoint":"http://127.0.0.1:9","secret":"s3cret","protocol":"1.1"}"#)))
        #expect {
            try client.openConversation(JSONParser.parse(#"{"conversationId":"c","reconnect":true}"#))
        } throws: { ($0 as? DirectLineError)?.status == .invalidArgument }
    }
}
