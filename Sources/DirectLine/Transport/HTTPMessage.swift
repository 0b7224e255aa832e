/// One HTTP request as the protocol layer describes it; the transport adds
/// the endpoint, credentials and transport options.
struct HTTPRequest: Sendable {
    enum Method: String, Sendable { case get = "GET", post = "POST" }

    var method: Method
    /// The path below the endpoint, with every dynamic segment already percent-encoded.
    var path: String
    /// Query parameters, encoded by the transport.
    var query: [(name: String, value: String)] = []
    var contentType: String?
    /// Further headers, already validated (no CR, LF or NUL).
    var headers: [(name: String, value: String)] = []
    var body = RequestBody()
    /// The credential to send in `Authorization: Bearer`.
    var bearer: String
    /// Told as the body goes out; may cancel the transfer.
    var progress: ProgressReporter?
}

/// The caller's progress callback: `report(done, total)` is called as body
/// bytes go out and returns false to cancel the transfer.
struct ProgressReporter: @unchecked Sendable {
    let report: (UInt64, UInt64) -> Bool
}

/// The final response to a request, after any automatic retries.
struct HTTPResponse: Sendable {
    var status: Int
    /// The final response's header lines as received ("Name: value" and a
    /// line end each); parsed only when a header is asked for, which for a
    /// successful send is never.
    var rawHeaders: [UInt8]
    var body: [UInt8]
    /// How many times the request was sent (1 + automatic retries).
    var attempts: Int

    init(status: Int, rawHeaders: [UInt8], body: [UInt8], attempts: Int) {
        self.status = status
        self.rawHeaders = rawHeaders
        self.body = body
        self.attempts = attempts
    }

    init(status: Int, headers: [(name: String, value: String)], body: [UInt8], attempts: Int) {
        self.init(status: status, rawHeaders: Array(headers.map { "\($0.name): \($0.value)\r\n" }.joined().utf8),
                  body: body, attempts: attempts)
    }

    /// The value of a header, matched case-insensitively, without the
    /// surrounding white space; the last one wins.
    func header(_ name: String) -> String? {
        let wanted = Array(name.lowercased().utf8)
        var found: String?
        var lineStart = 0
        let bytes = rawHeaders
        while lineStart < bytes.count {
            var lineEnd = lineStart
            while lineEnd < bytes.count, bytes[lineEnd] != 0x0A { lineEnd += 1 }
            let colon = wanted.count + lineStart
            if colon < lineEnd, bytes[colon] == UInt8(ascii: ":"),
               (0..<wanted.count).allSatisfy({ Self.lowered(bytes[lineStart + $0]) == wanted[$0] }) {
                var start = colon + 1
                var end = lineEnd
                while start < end, Self.isSpace(bytes[start]) { start += 1 }
                while end > start, Self.isSpace(bytes[end - 1]) { end -= 1 }
                found = String(decoding: bytes[start..<end], as: UTF8.self)
            }
            lineStart = lineEnd + 1
        }
        return found
    }

    private static func lowered(_ byte: UInt8) -> UInt8 {
        byte >= UInt8(ascii: "A") && byte <= UInt8(ascii: "Z") ? byte | 0x20 : byte
    }

    private static func isSpace(_ byte: UInt8) -> Bool { byte == 0x20 || byte == 0x09 || byte == 0x0D || byte == 0x0A }

    var isSuccess: Bool { (200..<300).contains(status) }

    /// The service's `Retry-After` in milliseconds, when it sent a valid one.
    var retryAfterMs: Int? {
        header("Retry-After").flatMap { RetryAfter.milliseconds($0, now: Clock.now()) }
    }
}
