/// The lexical rules of RFC 8259 that both `JSONParser` (which builds
/// values) and `JSONScanner` (which only checks) apply, in one place, so
/// the scanner can never accept a number or an escape the parser refuses.
enum JSONGrammar {
    /// A failure at `offset`, worded for the caller's error message.
    struct Failure: Error {
        var message: String
        var offset: Int
    }

    /// The end of the UTF-8 sequence that starts with the non-ASCII byte at
    /// `start`, or nil when it is not valid UTF-8 (RFC 3629: no overlong
    /// forms, no surrogates, nothing above U+10FFFF, no truncation).
    static func utf8SequenceEnd(_ bytes: UnsafeBufferPointer<UInt8>, from start: Int) -> Int? {
        let lead = bytes[start]
        let length: Int
        var low: UInt8 = 0x80
        var high: UInt8 = 0xBF
        switch lead {
        case 0xC2...0xDF: length = 2
        case 0xE0: length = 3; low = 0xA0
        case 0xE1...0xEC, 0xEE...0xEF: length = 3
        case 0xED: length = 3; high = 0x9F
        case 0xF0: length = 4; low = 0x90
        case 0xF1...0xF3: length = 4
        case 0xF4: length = 4; high = 0x8F
        default: return nil
        }
        guard bytes.count - start >= length else { return nil }
        // The second byte has the lead's own bounds; the rest are plain
        // continuation bytes.
        let second = bytes[start + 1]
        guard second >= low && second <= high else { return nil }
        for offset in 2..<length where bytes[start + offset] & 0xC0 != 0x80 { return nil }
        return start + length
    }

    static func isDigit(_ byte: UInt8) -> Bool { byte >= UInt8(ascii: "0") && byte <= UInt8(ascii: "9") }

    /// The end of the number that starts at `start` (at a `-` or a digit).
    static func numberEnd<Bytes: RandomAccessCollection<UInt8>>(_ bytes: Bytes, from start: Int) -> Result<Int, Failure>
        where Bytes.Index == Int {
        var position = start
        func current() -> UInt8? { position < bytes.endIndex ? bytes[position] : nil }
        func skipDigits() { while let byte = current(), isDigit(byte) { position += 1 } }
        func fail(_ message: String) -> Result<Int, Failure> { .failure(Failure(message: message, offset: position)) }

        if current() == UInt8(ascii: "-") { position += 1 }
        guard let first = current(), isDigit(first) else { return fail("invalid number") }
        position += 1
        if first == UInt8(ascii: "0"), let next = current(), isDigit(next) { return fail("leading zero in number") }
        skipDigits()
        if current() == UInt8(ascii: ".") {
            position += 1
            guard let digit = current(), isDigit(digit) else { return fail("invalid fraction") }
            skipDigits()
        }
        if current() == UInt8(ascii: "e") || current() == UInt8(ascii: "E") {
            position += 1
            if current() == UInt8(ascii: "+") || current() == UInt8(ascii: "-") { position += 1 }
            guard let digit = current(), isDigit(digit) else { return fail("invalid exponent") }
            skipDigits()
        }
        return .success(position)
    }

    /// The escape after a backslash, which sits just before `start`: the
    /// character it stands for and where it ends. A `\u` high surrogate
    /// must be followed by `\u` and a low one; lone surrogates are refused.
    static func escape<Bytes: RandomAccessCollection<UInt8>>(_ bytes: Bytes, from start: Int)
        -> Result<(scalar: Unicode.Scalar, end: Int), Failure> where Bytes.Index == Int {
        var position = start
        func fail(_ message: String) -> Result<(scalar: Unicode.Scalar, end: Int), Failure> {
            .failure(Failure(message: message, offset: position))
        }
        func hex4() -> UInt32? {
            guard bytes.endIndex - position >= 4 else { return nil }
            var value: UInt32 = 0
            for _ in 0..<4 {
                let byte = bytes[position]
                let digit: UInt8
                switch byte {
                case UInt8(ascii: "0")...UInt8(ascii: "9"): digit = byte - UInt8(ascii: "0")
                case UInt8(ascii: "a")...UInt8(ascii: "f"): digit = byte - UInt8(ascii: "a") + 10
                case UInt8(ascii: "A")...UInt8(ascii: "F"): digit = byte - UInt8(ascii: "A") + 10
                default: return nil
                }
                value = value << 4 | UInt32(digit)
                position += 1
            }
            return value
        }

        guard position < bytes.endIndex else { return fail("unterminated escape") }
        let byte = bytes[position]
        position += 1
        let simple: Unicode.Scalar
        switch byte {
        case UInt8(ascii: "\""): simple = "\""
        case UInt8(ascii: "\\"): simple = "\\"
        case UInt8(ascii: "/"): simple = "/"
        case UInt8(ascii: "b"): simple = "\u{08}"
        case UInt8(ascii: "f"): simple = "\u{0C}"
        case UInt8(ascii: "n"): simple = "\n"
        case UInt8(ascii: "r"): simple = "\r"
        case UInt8(ascii: "t"): simple = "\t"
        case UInt8(ascii: "u"):
            guard let unit = hex4() else { return fail("invalid \\u escape") }
            if (0xD800...0xDBFF).contains(unit) {
                guard bytes.endIndex - position >= 6, bytes[position] == UInt8(ascii: "\\"),
                      bytes[position + 1] == UInt8(ascii: "u") else { return fail("lone surrogate in string") }
                position += 2
                guard let low = hex4() else { return fail("invalid \\u escape") }
                guard (0xDC00...0xDFFF).contains(low) else { return fail("lone surrogate in string") }
                let value = 0x10000 + ((unit - 0xD800) << 10) + (low - 0xDC00)
                guard let scalar = Unicode.Scalar(value) else { return fail("invalid escape") }
                return .success((scalar, position))
            }
            guard let scalar = Unicode.Scalar(unit) else { return fail("lone surrogate in string") }
            return .success((scalar, position))
        default:
            return fail("invalid escape")
        }
        return .success((simple, position))
    }
}
