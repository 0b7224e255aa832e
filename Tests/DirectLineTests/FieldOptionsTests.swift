import Testing
@testable import DirectLine

/// Locale tags, identification and extra headers, token and regional
/// settings endpoints, international file names (issue 16).
@Suite("locale, headers, token endpoints, file names")
struct FieldOptionsTests: ConfigParsing {
    @Test("well-formed BCP 47 tags are accepted", arguments: [
        "fr-FR", "en", "EN-us", "zh-Hant-TW", "sr-Latn-RS", "es-419", "de-CH-1996", "sl-rozaj-biske",
        "en-a-bbb-x-a-ccc", "x-private", "i-klingon", "en-GB-oed", "zh-min-nan", "ast", "zh-yue-HK",
    ])
    func goodTags(tag: String) {
        #expect(LanguageTag.problem(tag) == nil)
    }

    @Test("malformed tags are refused", arguments: [
        "", "fr_FR", "e", "en--US", "en-", "-en", "en-US-US", "toolongtag9", "de-1996-1996", "en-a-bbb-a-ccc",
        "en-a", "x", "en-x", "1en", "fr FR", "fr-FR\n", "en-US-ä", String(repeating: "a-", count: 200) + "a",
    ])
    func badTags(tag: String) {
        #expect(LanguageTag.problem(tag) != nil)
    }

    @Test("a locale goes in the 3.0 start body only, checked")
    func localeInStart() throws {
        let body = try DirectLineClient.startOptions(JSONParser.parse(#"{"locale":"fr-FR"}"#), version: .v3,
                                                     call: "starts", takesLocale: true)
        #expect(body?["locale"]?.stringValue == "fr-FR")
        #expect(throws: DirectLineError.self) {
            try DirectLineClient.startOptions(JSONParser.parse(#"{"locale":"fr-FR"}"#), version: .v1,
                                              call: "starts", takesLocale: true)
        }
        #expect(throws: DirectLineError.self) {
            try DirectLineClient.startOptions(JSONParser.parse(#"{"locale":"fr-FR"}"#), version: .v3,
                                              call: "issues tokens", takesLocale: false)
        }
        #expect(throws: DirectLineError.self) {
            try DirectLineClient.startOptions(JSONParser.parse(#"{"locale":"fr_FR"}"#), version: .v3,
                                              call: "starts", takesLocale: true)
        }
    }

    @Test("x-ms-bot-agent names the protocol, the library and the application")
    func botAgent() throws {
        let plain = try config(#"{"secret":"s","protocol":"1.1"}"#)
        #expect(plain.transport.botAgentLine == "x-ms-bot-agent: DirectLine/1.1 (libdirectline \(LibraryVersion.string))")
        let named = try config(#"{"secret":"s","botAgent":"Kiosk/2.1"}"#)
        #expect(named.transport.botAgentLine
            == "x-ms-bot-agent: DirectLine/3.0 (libdirectline \(LibraryVersion.string); Kiosk/2.1)")
        for bad in [#""""#, #""a(b""#, #""a)""#, #""a\\b""#, #""ü""#, #""a\nb""#, "\"\(String(repeating: "a", count: 257))\""] {
            #expect(refusal(#"{"secret":"s","botAgent":\#(bad)}"#)?.contains("botAgent") == true, "\(bad)")
        }
    }

    @Test("extra headers: kept in order, every refused name and value named in the error")
    func headers() throws {
        let parsed = try config(#"{"secret":"s","headers":{"X-Request-Source":"kiosk-12","traceparent":"00-a\tb"}}"#)
        #expect(parsed.transport.extraHeaderLines == ["X-Request-Source: kiosk-12", "traceparent: 00-a\tb"])
        let refusedNames = ["Authorization", "host", "Content-Type", "content-length", "Transfer-Encoding", "Connection",
                            "Upgrade", "Expect", "Sec-WebSocket-Protocol", "User-Agent", "X-MS-Bot-Agent", "Accept",
                            "Proxy-Authorization", "TE", "Bad Name", "a:b", "", "é"]
        for name in refusedNames {
            let message = refusal(#"{"secret":"s","headers":{"\#(name)":"v"}}"#)
            #expect(message?.contains("config.headers[\"\(name)\"]") == true, "\(name): \(message ?? "accepted")")
        }
        for value in [#""a\r\nX: 1""#, #""a\u0000""#, #""""#, #"" a""#, #""a ""#, "1", "\"\(String(repeating: "v", count: 8193))\""] {
            #expect(refusal(#"{"secret":"s","headers":{"X-A":\#(value)}}"#)?.contains("X-A") == true, "\(value)")
        }
        #expect(refusal(#"{"secret":"s","headers":{"X-A":"1","x-a":"2"}}"#)?.contains("twice") == true)
        let many = (0...64).map { #""X-\#($0)":"v""# }.joined(separator: ",")
        #expect(refusal(#"{"secret":"s","headers":{\#(many)}}"#) != nil)
    }

    @Test("exactly one credential, the token endpoint counting as one")
    func credentials() throws {
        let parsed = try config(#"{"tokenEndpoint":"https://bot.example/api/token?x=1"}"#)
        #expect(parsed.credential.kind == .tokenEndpoint)
        #expect(parsed.tokenEndpoint?.url == "https://bot.example/api/token?x=1")
        #expect(parsed.regionalSettings == nil)
        #expect(refusal(#"{"secret":"s","tokenEndpoint":"https://bot.example/t"}"#) != nil)
        #expect(refusal(#"{"token":"t","tokenEndpoint":"https://bot.example/t"}"#) != nil)
        #expect(refusal(#"{}"#) != nil)
        #expect(refusal(#"{"tokenEndpoint":"http://bot.example/t"}"#)?.contains("tokenEndpoint") == true)
        #expect(refusal(#"{"tokenEndpoint":"https://bot.example/t#f"}"#) != nil)
        #expect(refusal(#"{"tokenEndpoint":"ftp://bot.example/t"}"#) != nil)
        #expect(try config(#"{"tokenEndpoint":"http://127.0.0.1:9/t"}"#).tokenEndpoint != nil)
        // Used as written: a token URL's trailing slash stays (the service's base URL loses it).
        #expect(try config(#"{"tokenEndpoint":"https://bot.example/api/token/"}"#).tokenEndpoint?.url
            == "https://bot.example/api/token/")
        #expect(try config(#"{"secret":"s","endpoint":"https://a.example/p/"}"#).endpoint.baseURL == "https://a.example/p")
    }

    @Test("a Copilot Studio token URL gives the regional settings URL, unless an endpoint is set")
    func copilotStudio() throws {
        let token = "https://abc.environment.api.powerplatform.com/powervirtualagents/botsbyschema/cr1_agent/directline/"
            + "token?api-version=2022-03-01-preview"
        let parsed = try config(#"{"tokenEndpoint":"\#(token)"}"#)
        #expect(parsed.regionalSettings?.url == "https://abc.environment.api.powerplatform.com/powervirtualagents/"
            + "regionalchannelsettings?api-version=2022-03-01-preview")
        let pinned = try config(#"{"tokenEndpoint":"\#(token)","endpoint":"https://europe.directline.botframework.com"}"#)
        #expect(pinned.regionalSettings == nil)
        let explicit = try config(#"{"secret":"s","regionalSettingsEndpoint":"https://x.example/rs?api-version=1"}"#)
        #expect(explicit.regionalSettings?.url == "https://x.example/rs?api-version=1")
        #expect(refusal(#"{"secret":"s","endpoint":"https://a.example","regionalSettingsEndpoint":"https://x.example/rs"}"#)
            != nil)
    }

    @Test("origins compare scheme, host and port, the default port spelled out")
    func origins() throws {
        func origin(_ url: String) throws -> String {
            try Endpoint(parsing: url, allowInsecureHttp: true, allowQuery: true).origin
        }
        #expect(try origin("https://Bot.Example/a?b") == "https://bot.example:443")
        #expect(try origin("https://bot.example:443/x") == "https://bot.example:443")
        #expect(try origin("http://127.0.0.1:8080/x") == "http://127.0.0.1:8080")
        #expect(try origin("http://[::1]/x") == "http://[::1]:80")
        #expect(try origin("http://[::1]:9/x") == "http://[::1]:9")
    }

    @Test("a raw upload's non-ASCII name goes out as filename* after an ASCII fallback")
    func internationalNames() throws {
        func disposition(_ name: String) throws -> String {
            Uploads.raw(try .inMemory([1], contentType: nil, filename: name)).disposition
        }
        #expect(try disposition("a.png") == #"name="file"; filename="a.png""#)
        #expect(try disposition("résumé 1.pdf")
            == #"name="file"; filename="r_sum_ 1.pdf"; filename*=UTF-8''r%C3%A9sum%C3%A9%201.pdf"#)
        #expect(try disposition("报告\"%.txt")
            == #"name="file"; filename="__%22%25.txt"; filename*=UTF-8''%E6%8A%A5%E5%91%8A%22%25.txt"#)
        #expect(Uploads.extendedValue("a!#$&+-.^_`|~z;*'()") == "a!#$&+-.^_`|~z%3B%2A%27%28%29")
    }
}
