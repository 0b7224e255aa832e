/// The headers a client adds to its requests besides the ones each request
/// makes: `x-ms-bot-agent` (how Bot Framework clients identify themselves)
/// and the caller's own `headers` from the configuration.
enum ClientHeaders {
    /// The most headers `headers` may hold, and the longest value: a
    /// tracing id or a gateway key fits many times over.
    static let maxCount = 64
    static let maxValueBytes = 8192
    static let maxBotAgentBytes = 256

    /// Names that have their own configuration keys or that the library
    /// itself must control: credentials, framing, the connection and the
    /// WebSocket upgrade, and what the library reads back (`Accept`).
    private static let refusedNames: Set<String> = [
        "authorization", "host", "transfer-encoding", "connection", "upgrade", "expect", "user-agent",
        "x-ms-bot-agent", "accept", "keep-alive", "proxy-authorization", "proxy-connection", "te", "trailer",
    ]
    private static let refusedPrefixes = ["content-", "sec-websocket-"]

    /// `x-ms-bot-agent: DirectLine/3.0 (libdirectline 1.4.0; MyApp/2.1)`.
    static func botAgentLine(version: ProtocolVersion, botAgent: String?) -> String {
        let product = "libdirectline \(LibraryVersion.string)"
        return "x-ms-bot-agent: DirectLine/\(version.rawValue) (\(botAgent.map { "\(product); \($0)" } ?? product))"
    }

    /// `config.botAgent`: printable ASCII that stays inside the header's
    /// comment (no parentheses or backslash).
    static func checkBotAgent(_ value: String) throws(DirectLineError) {
        let name = "config.botAgent"
        guard !value.isEmpty else { throw .invalidArgument("\(name) must not be empty") }
        guard value.utf8.count <= maxBotAgentBytes else {
            throw .invalidArgument("\(name) is longer than \(maxBotAgentBytes) bytes")
        }
        guard value.utf8.allSatisfy({ (0x20...0x7E).contains($0) }) else {
            throw .invalidArgument("\(name) may hold only printable ASCII characters")
        }
        guard !value.contains(where: { "()\\".contains($0) }) else {
            throw .invalidArgument("\(name) must not contain \"(\", \")\" or \"\\\": it goes inside the "
                                   + "x-ms-bot-agent header's comment")
        }
    }

    /// `config.headers` as header lines, in the order given, or the error
    /// that names the first header that cannot be sent.
    static func lines(_ reader: JSONReader) throws(DirectLineError) -> [String] {
        var seen: Set<String> = []
        var lines: [String] = []
        guard reader.object.members.count <= maxCount else {
            throw .invalidArgument("config.headers holds more than \(maxCount) headers")
        }
        for (name, value) in reader.object.members {
            let what = "config.headers[\"\(printable(name))\"]"
            guard !name.isEmpty, name.utf8.allSatisfy(isTokenByte) else {
                throw .invalidArgument("\(what): a header name is an RFC 9110 token: letters, digits and "
                                       + "!#$%&'*+-.^_`|~ only")
            }
            let lower = name.lowercased()
            if refusedNames.contains(lower) || refusedPrefixes.contains(where: { lower.hasPrefix($0) }) {
                throw .invalidArgument("\(what) is a header the library sets itself; it cannot be replaced "
                                       + "(use the configuration's own key where there is one)")
            }
            guard seen.insert(lower).inserted else {
                throw .invalidArgument("\(what) is given twice (header names ignore case)")
            }
            guard let text = value.stringValue else { throw .invalidArgument("\(what) must be a string") }
            guard !text.isEmpty else { throw .invalidArgument("\(what) must not be empty") }
            guard text.utf8.count <= maxValueBytes else {
                throw .invalidArgument("\(what) is longer than \(maxValueBytes) bytes")
            }
            guard !text.unicodeScalars.contains(where: { Validation.isControl($0) && $0 != "\t" }) else {
                throw .invalidArgument("\(what) contains a control character (CR, LF, NUL or similar)")
            }
            guard let first = text.unicodeScalars.first, let last = text.unicodeScalars.last,
                  !Self.isSpace(first), !Self.isSpace(last) else {
                throw .invalidArgument("\(what) must not begin or end with white space")
            }
            lines.append("\(name): \(text)")
        }
        return lines
    }

    private static func isSpace(_ scalar: Unicode.Scalar) -> Bool { scalar == " " || scalar == "\t" }

    /// RFC 9110 tchar.
    private static func isTokenByte(_ byte: UInt8) -> Bool {
        Validation.isASCIIAlphanumeric(byte) || "!#$%&'*+-.^_`|~".utf8.contains(byte)
    }

    /// A name as it can appear in an error message: controls shown as `?`.
    private static func printable(_ name: String) -> String {
        String(String.UnicodeScalarView(name.unicodeScalars.prefix(64).map { Validation.isControl($0) ? "?" : $0 }))
    }
}
