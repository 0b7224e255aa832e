/// A strict RFC 8259 parser over UTF-8 bytes.
///
/// It never traps: nesting is bounded, every index is checked, and any
/// deviation (trailing data, duplicate keys, lone surrogates, raw control
/// characters in strings, leading zeros) is reported as a `JSONParseError`.
struct JSONParser {
    static let maximumDepth = 128

    private let bytes: [UInt8]
    private var position = 0
    private var depth = 0
    /// False: the text is only checked, and no value is kept.
    private let building: Bool

    private init(bytes: [UInt8], building: Bool = true) {
        self.bytes = bytes
        self.building = building
    }

    static func parse(_ text: String) throws(JSONParseError) -> JSONValue {
        try parse(bytes: Array(text.utf8))
    }

    static func parse(bytes: [UInt8]) throws(JSONParseError) -> JSONValue {
        var parser = JSONParser(bytes: bytes)
        parser.skipWhitespace()
        let value = try parser.parseValue()
        parser.skipWhitespace()
        guard parser.position == bytes.count else { throw parser.error("unexpected data after the JSON value") }
        return value
    }

    /// Checks `bytes` against the same grammar without building a tree, and
    /// gives the text as `RawJSON` to be read in place. Peak memory is the
    /// input's (plus the longest string or number, briefly): a hostile
    /// answer of many small values cannot multiply it. Keys are not checked
    /// for repeats here; `RawJSON.member` reports a repeated key it is asked for.
    static func validate(bytes: [UInt8]) throws(JSONParseError) -> RawJSON {
        var parser = JSONParser(bytes: bytes, building: false)
        parser.skipWhitespace()
        let start = parser.position
        _ = try parser.parseValue()
        let end = parser.position
        parser.skipWhitespace()
        guard parser.position == bytes.count else { throw parser.error("unexpected data after the JSON value") }
        return RawJSON(document: bytes, range: start..<end)
    }

    private func error(_ message: String) -> JSONParseError {
        JSONParseError(message: message, offset: position)
    }

    private var current: UInt8? { position < bytes.count ? bytes[position] : nil }

    private mutating func skipWhitespace() {
        while let byte = current, byte == 0x20 || byte == 0x09 || byte == 0x0A || byte == 0x0D {
            position += 1
        }
    }

    private mutating func expect(_ literal: StaticString, _ value: JSONValue) throws(JSONParseError) -> JSONValue {
        let count = literal.utf8CodeUnitCount
        guard bytes.count - position >= count else { throw error("invalid literal") }
        let matches = literal.withUTF8Buffer { expected in
            (0..<count).allSatisfy { bytes[position + $0] == expected[$0] }
        }
        guard matches else { throw error("invalid literal") }
        position += count
        return value
    }

    private mutating func parseValue() throws(JSONParseError) -> JSONValue {
        guard let byte = current else { throw error("unexpected end of JSON") }
        switch byte {
        case UInt8(ascii: "{"): return try parseObject()
        case UInt8(ascii: "["): return try parseArray()
        case UInt8(ascii: "\""): return .string(try parseString())
        case UInt8(ascii: "t"): return try expect("true", .bool(true))
        case UInt8(ascii: "f"): return try expect("false", .bool(false))
        case UInt8(ascii: "n"): return try expect("null", .null)
        case UInt8(ascii: "-"), UInt8(ascii: "0")...UInt8(ascii: "9"): return try parseNumber()
        default: throw error("unexpected character")
        }
    }

    private mutating func enter() throws(JSONParseError) {
        depth += 1
        guard depth <= Self.maximumDepth else { throw error("JSON nested deeper than \(Self.maximumDepth) levels") }
    }

    private mutating func parseObject() throws(JSONParseError) -> JSONValue {
        try enter()
        position += 1
        var object = JSONObject()
        skipWhitespace()
        if current == UInt8(ascii: "}") {
            position += 1
            depth -= 1
            return .object(object)
        }
        // Small objects look keys up in order; past a few members a set keeps
        // a hostile object with many keys from costing quadratic time.
        var seen: Set<String>?
        while true {
            skipWhitespace()
            guard current == UInt8(ascii: "\"") else { throw error("expected a string key") }
            let key = try parseString()
            guard building else {
                try skipMember()
                switch current {
                case UInt8(ascii: ","): position += 1
                case UInt8(ascii: "}"):
                    position += 1
                    depth -= 1
                    return .null
                default: throw error("expected ',' or '}'")
                }
                continue
            }
            let duplicate: Bool
            if var keys = seen {
                seen = nil
                duplicate = !keys.insert(key).inserted
                seen = keys
            } else {
                duplicate = object.contains(key)
                if object.count == 16 { seen = Set(object.keys + [key]) }
            }
            guard !duplicate else { throw error("duplicate key \"\(key)\"") }
            skipWhitespace()
            guard current == UInt8(ascii: ":") else { throw error("expected ':'") }
            position += 1
            skipWhitespace()
            object.appendUnique(key, try parseValue())
            skipWhitespace()
            switch current {
            case UInt8(ascii: ","): position += 1
            case UInt8(ascii: "}"):
                position += 1
                depth -= 1
                return .object(object)
            default: throw error("expected ',' or '}'")
            }
        }
    }

    /// The ':' and value of a member whose key was read, checked and dropped.
    private mutating func skipMember() throws(JSONParseError) {
        skipWhitespace()
        guard current == UInt8(ascii: ":") else { throw error("expected ':'") }
        position += 1
        skipWhitespace()
        _ = try parseValue()
        skipWhitespace()
    }

    private mutating func parseArray() throws(JSONParseError) -> JSONValue {
        try enter()
        position += 1
        var array: [JSONValue] = []
        skipWhitespace()
        if current == UInt8(ascii: "]") {
            position += 1
            depth -= 1
            return .array(array)
        }
        while true {
            skipWhitespace()
            let element = try parseValue()
            if building { array.append(element) }
            skipWhitespace()
            switch current {
            case UInt8(ascii: ","): position += 1
            case UInt8(ascii: "]"):
                position += 1
                depth -= 1
                return .array(array)
            default: throw error("expected ',' or ']'")
            }
        }
    }

    private mutating func parseNumber() throws(JSONParseError) -> JSONValue {
        let start = position
        switch JSONGrammar.numberEnd(bytes, from: start) {
        case .success(let end):
            position = end
            return .number(String(decoding: bytes[start..<end], as: UTF8.self))
        case .failure(let failure):
            throw JSONParseError(message: failure.message, offset: failure.offset)
        }
    }

    /// Strings without escapes (nearly all of them) become a String straight
    /// from their bytes; only escapes take the buffered path.
    private mutating func parseString() throws(JSONParseError) -> String {
        position += 1
        let start = position
        while position < bytes.count {
            let byte = bytes[position]
            if byte == UInt8(ascii: "\"") {
                position += 1
                return try utf8String(bytes[start..<(position - 1)], at: start)
            }
            if byte == UInt8(ascii: "\\") { break }
            guard byte >= 0x20 else { throw error("control character in string") }
            position += 1
        }
        guard position < bytes.count else { throw error("unterminated string") }
        var buffer: [UInt8] = []
        buffer.reserveCapacity(position - start + 16)
        buffer.append(contentsOf: bytes[start..<position])
        while true {
            guard let byte = current else { throw error("unterminated string") }
            switch byte {
            case UInt8(ascii: "\""):
                position += 1
                return try utf8String(buffer[...], at: start)
            case UInt8(ascii: "\\"):
                position += 1
                UTF8.encode(try parseEscape()) { buffer.append($0) }
            case 0x00..<0x20:
                throw error("control character in string")
            default:
                buffer.append(byte)
                position += 1
            }
        }
    }

    /// A string's bytes as text, refused unless they are UTF-8: a service
    /// answer with other bytes breaks the protocol, and must not be passed
    /// on with its bytes silently replaced.
    private func utf8String(_ slice: ArraySlice<UInt8>, at offset: Int) throws(JSONParseError) -> String {
        guard let text = String(validating: slice, as: UTF8.self) else {
            throw JSONParseError(message: "invalid UTF-8 in string", offset: offset)
        }
        return text
    }

    private mutating func parseEscape() throws(JSONParseError) -> Unicode.Scalar {
        switch JSONGrammar.escape(bytes, from: position) {
        case .success(let escape):
            position = escape.end
            return escape.scalar
        case .failure(let failure):
            throw JSONParseError(message: failure.message, offset: failure.offset)
        }
    }
}

struct JSONParseError: Error, Equatable {
    var message: String
    var offset: Int
}
