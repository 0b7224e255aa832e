/// Checks on caller-supplied strings before they reach a URL or a header.
enum Validation {
    /// A non-empty value without control characters: what may go into an
    /// HTTP header (token, secret, user agent, content type), where a line
    /// break would inject another header, or into a libcurl option that
    /// names a file or a URL (CA file, proxy).
    static func singleLine(_ value: String, name: String) throws(DirectLineError) {
        guard !value.isEmpty else { throw .invalidArgument("\(name) must not be empty") }
        guard !value.unicodeScalars.contains(where: isControl) else {
            throw .invalidArgument("\(name) contains a control character (CR, LF, NUL or similar)")
        }
    }

    /// An id that becomes one path segment or query value (conversation id,
    /// user id). It is percent-encoded later; here we refuse the values that
    /// no encoding makes safe.
    static func identifier(_ value: String, name: String) throws(DirectLineError) {
        var value = value
        if let problem = value.withUTF8(identifierProblem) { throw .invalidArgument("\(name) \(problem)") }
    }

    /// What makes the UTF-8 bytes of an id unusable, or nil when they are
    /// fine: empty, "." or "..", a control character (C0, DEL or C1), or
    /// longer than 1024 bytes.
    static func identifierProblem(_ bytes: UnsafeBufferPointer<UInt8>) -> String? {
        guard !bytes.isEmpty else { return "must not be empty" }
        if bytes.allSatisfy({ $0 == UInt8(ascii: ".") }) && bytes.count <= 2 { return "must not be \".\" or \"..\"" }
        var previous: UInt8 = 0
        for byte in bytes {
            // C1 controls (U+0080 to U+009F) are 0xC2 0x80 to 0xC2 0x9F.
            if byte < 0x20 || byte == 0x7F || (previous == 0xC2 && byte >= 0x80 && byte <= 0x9F) {
                return "contains a control character"
            }
            previous = byte
        }
        guard bytes.count <= 1024 else { return "is longer than 1024 bytes" }
        return nil
    }

    /// ASCII letters and digits, the base of every token grammar here
    /// (RFC 9110 tchar, RFC 8187 attr-char, BCP 47 subtags).
    static func isASCIIAlphanumeric(_ byte: UInt8) -> Bool {
        (0x30...0x39).contains(byte) || (0x41...0x5A).contains(byte) || (0x61...0x7A).contains(byte)
    }

    static func isControl(_ scalar: Unicode.Scalar) -> Bool {
        scalar.value < 0x20 || scalar.value == 0x7F || (0x80...0x9F).contains(scalar.value)
    }
}
