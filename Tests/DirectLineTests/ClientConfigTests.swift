import Testing
@testable import DirectLine

@Suite("client configuration")
struct ClientConfigTests: ConfigParsing {
    @Test("defaults")
    func defaults() throws {
        let parsed = try config(#"{"secret":"s3cret"}"#)
        #expect(parsed.endpoint.baseURL == "https://directline.botframework.com")
        #expect(parsed.protocolVersion == .v3)
        #expect(parsed.transport.timeoutMs == 30_000)
        #expect(parsed.transport.retry == RetryPolicy())
        #expect(parsed.maxUploadBytes == 4 * 1024 * 1024)
    }

    @Test("every documented key is accepted")
    func fullConfig() throws {
        let parsed = try config(#"""
        {"endpoint":"https://europe.directline.botframework.com/","protocol":"1.1","token":"t",
         "timeoutMs":5000,"connectTimeoutMs":100,"retry":{"maxAttempts":2,"baseDelayMs":1,"maxDelayMs":9},
         "userAgent":"x/1","caFile":"/tmp/ca.pem","proxy":"http://127.0.0.1:3128",
         "insecureSkipTlsVerify":true,"allowInsecureHttp":false,"maxUploadBytes":10}
        """#)
        #expect(parsed.endpoint.baseURL == "https://europe.directline.botframework.com")
        #expect(parsed.protocolVersion == .v1)
        #expect(parsed.transport.retry == RetryPolicy(maxAttempts: 2, baseDelayMs: 1, maxDelayMs: 9))
        #expect(parsed.transport.insecureSkipTlsVerify)
        #expect(parsed.maxUploadBytes == 10)
    }

    @Test("bad configurations name what is wrong", arguments: [
        (#"{}"#, "needs exactly one of \"secret\", \"token\" and \"tokenEndpoint\""),
        (#"{"secret":"a","token":"b"}"#, "exactly one of"),
        (#"{"secret":"a","secrett":"b"}"#, "unknown key \"secrett\""),
        (#"{"secret":"a","retry":{"tries":1}}"#, "unknown key \"tries\""),
        (#"{"secret":"a","protocol":"2.0"}"#, "\"3.0\" or \"1.1\""),
        (#"{"secret":"a","protocol":3}"#, "must be a string"),
        (#"{"secret":"a","timeoutMs":-1}"#, "whole number"),
        (#"{"secret":"a","timeoutMs":1.5}"#, "whole number"),
        (#"{"secret":"a\r\nX-Evil: 1"}"#, "control character"),
        (#"{"secret":""}"#, "must not be empty"),
        (#"{"secret":"a","endpoint":"ftp://x"}"#, "http:// or https://"),
        (#"{"secret":"a","endpoint":"http://example.com"}"#, "not loopback"),
        (#"{"secret":"a","endpoint":"https://user:pw@example.com"}"#, "credentials"),
        (#"{"secret":"a","endpoint":"https://example.com/?q=1"}"#, "query"),
        (#"{"secret":"a","insecureSkipTlsVerify":"yes"}"#, "true or false"),
        (#"[]"#, "must be a JSON object"),
    ])
    func refused(text: String, expected: String) {
        let message = refusal(text)
        #expect(message?.contains(expected) == true, "\(message ?? "accepted")")
    }

    @Test("plain http is allowed to loopback, or when asked for", arguments: [
        #"{"secret":"a","endpoint":"http://127.0.0.1:3978"}"#,
        #"{"secret":"a","endpoint":"http://localhost:1"}"#,
        #"{"secret":"a","endpoint":"http://[::1]:8080/prefix"}"#,
        #"{"secret":"a","endpoint":"http://bots.internal","allowInsecureHttp":true}"#,
    ])
    func plainHTTP(text: String) throws {
        _ = try config(text)
    }

    @Test("a secret never appears in a refusal message")
    func noSecretInErrors() {
        let message = refusal(#"{"secret":"hunter2-secret","endpoint":"http://example.com"}"#) ?? ""
        #expect(!message.contains("hunter2"))
    }
}
