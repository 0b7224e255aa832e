import Foundation
import Testing
@testable import DirectLine

@Suite("responses, status mapping and retries")
struct ResponsesTests {
    func response(_ status: Int, code: String? = nil, retryAfter: String? = nil) -> HTTPResponse {
        let body = code.map { #"{"error":{"code":"\#($0)","message":"the message"}}"# } ?? ""
        return HTTPResponse(status: status, body: Array(body.utf8), attempts: 1,
                            retryAfterMs: retryAfter.flatMap { RetryAfter.milliseconds($0, now: Clock.now()) })
    }

    @Test("every service status maps to its documented code", arguments: [
        (400, nil, Status.badRequest, Delivery.notSent),
        (401, nil, .unauthorized, .notSent),
        (403, "Forbidden", .forbidden, .notSent),
        (403, "TokenExpired", .tokenExpired, .notSent),
        (404, nil, .notFound, .notSent),
        (409, nil, .conflict, .notSent),
        (413, nil, .tooLarge, .notSent),
        (429, nil, .throttled, .notSent),
        (500, nil, .service, .unknown),
        (502, "BotError", .bot, .unknown),
        (503, "ServiceUnavailable", .service, .notSent),
        (503, nil, .service, .unknown),
        (504, nil, .service, .unknown),
        (408, nil, .http, .unknown),
        (418, nil, .http, .notSent),
        (301, nil, .http, .unknown),
    ] as [(Int, String?, Status, Delivery)])
    func mapping(status: Int, code: String?, expected: Status, delivery: Delivery) {
        for version in [ProtocolVersion.v3, .v1] {
            let error = Responses.failure(response(status, code: code), reaching: .service, version: version)
            #expect(error.status == expected)
            #expect(error.delivery == delivery)
            #expect(error.httpStatus == status)
            #expect(error.serviceCode == code)
        }
    }

    @Test("a 1.1 send answered 500 is the bot failing")
    func botFailureOn11() {
        #expect(Responses.failure(response(500), reaching: .bot, version: .v1).status == .bot)
        #expect(Responses.failure(response(500), reaching: .bot, version: .v3).status == .service)
        #expect(Responses.failure(response(500), reaching: .service, version: .v1).status == .service)
    }

    @Test("credentials echoed by the service are redacted")
    func redaction() {
        let body = #"{"error":{"code":"BadArgument","message":"token tok-12345 is bad"}}"#
        let answer = HTTPResponse(status: 400, body: Array(body.utf8), attempts: 1)
        let error = Responses.failure(answer, reaching: .service, version: .v3).redacting(["tok-12345"])
        #expect(error.serviceMessage == "token [redacted] is bad")
        #expect(!error.json.serialized.contains("tok-12345"))
    }

    @Test("the error JSON has every documented field")
    func errorJSON() throws {
        let error = Responses.failure(response(429, code: "Throttled", retryAfter: "3"), reaching: .bot, version: .v3)
        let inner = try #require(error.json.objectValue?["error"]?.objectValue)
        #expect(inner.keys == ["status", "name", "message", "httpStatus", "serviceCode", "serviceMessage",
                               "retryAfterMs", "attempts", "delivery"])
        #expect(inner["name"] == .string("DL_ERR_THROTTLED"))
        #expect(inner["retryAfterMs"] == .number("3000"))
        #expect(inner["delivery"] == .string("not_sent"))
    }

    @Test("a stream URL loses its token before being shown")
    func streamURL() {
        #expect(Conversation.withoutToken("wss://h/v3/directline/conversations/c/stream?t=SECRET&watermark=1")
            == "wss://h/v3/directline/conversations/c/stream")
    }

}
