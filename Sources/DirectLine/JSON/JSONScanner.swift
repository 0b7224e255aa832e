#if canImport(Glibc)
import Glibc
#endif

/// Checks JSON text against the same rules as `JSONParser` without building
/// any value, and says where an object's members are.
///
/// A caller's activity that passes can be sent as it is, with members
/// spliced in, instead of being parsed into a tree and written out again.
/// The scanner never accepts what the parser refuses; it may decline text
/// the parser accepts (keys with escapes, whose duplicates only decoding
/// can see, and objects with very many members). Declined text, valid or
/// not, takes the tree path, which gives the exact result or error.
///
/// The text may be any bytes: strings are checked to be valid UTF-8 as
/// they are scanned (bytes above 0x7F are invalid anywhere else), so text
/// the scanner accepts is valid UTF-8 and needs no separate check.
///
/// A scan allocates nothing: the keys of the open objects, and the
/// outermost object's members, live in one stack buffer.
struct JSONScanner {
    /// A member of a scanned object: the key's bytes inside its quotes and
    /// the value's bytes.
    struct Member {
        var key: Range<Int>
        var value: Range<Int>
    }

    /// The outermost object's members, in order; valid only inside
    /// `withObject`'s closure.
    struct Members {
        fileprivate let slots: UnsafeMutableBufferPointer<Slot>
        fileprivate let bytes: UnsafeBufferPointer<UInt8>

        var count: Int { slots.count }

        subscript(index: Int) -> Member { slots[index].member }

        /// The first member whose key is `name`.
        func named(_ name: StaticString) -> Member? {
            for slot in slots {
                let member = slot.member
                if JSONScanner.key(member, in: bytes, is: name) { return member }
            }
            return nil
        }
    }

    /// A key (and, for the outermost object, its value) in the stack buffer.
    fileprivate struct Slot {
        var keyStart: Int32
        var keyEnd: Int32
        var valueStart: Int32 = 0
        var valueEnd: Int32 = 0

        var member: Member {
            Member(key: Int(keyStart)..<Int(keyEnd), value: Int(valueStart)..<Int(valueEnd))
        }
    }

    /// Objects with more members than this are left to the parser, whose
    /// duplicate-key check scales.
    static let maximumMembers = 32
    /// The most keys of open objects (the outermost object's count too);
    /// more than that and the text is declined. 64 slots of 16 bytes is
    /// the largest buffer Swift keeps on the stack unconditionally.
    static let maximumOpenKeys = 64

    private let bytes: UnsafeBufferPointer<UInt8>
    private var position: Int
    private var depth = 0
    /// The keys of the objects being scanned, innermost last.
    private var keyStore = UnsafeMutableBufferPointer<Slot>(start: nil, count: 0)
    private var keyCount = 0
    /// How many members of the outermost object `keyStore` starts with.
    private var outerCount = 0
    /// Whether the last string scanned held a backslash escape.
    private var stringHadEscape = false

    private init(_ bytes: UnsafeBufferPointer<UInt8>, at position: Int, end: Int) {
        self.bytes = UnsafeBufferPointer(rebasing: bytes[..<end])
        self.position = position
    }

    /// Scans the object that `range` holds (white space around it allowed)
    /// and calls `body` with its members and the offset of its closing
    /// brace; nil when the scanner declines the text.
    static func withObject<R>(in bytes: UnsafeBufferPointer<UInt8>, range: Range<Int>,
                              _ body: (Members, Int) -> R?) -> R? {
        guard range.lowerBound >= 0, range.upperBound <= bytes.count, range.upperBound < Int(Int32.max) else { return nil }
        return withUnsafeTemporaryAllocation(of: Slot.self, capacity: maximumOpenKeys) { keyStore in
            var scanner = JSONScanner(bytes, at: range.lowerBound, end: range.upperBound)
            scanner.keyStore = keyStore
            scanner.skipWhitespace()
            guard scanner.current == UInt8(ascii: "{"), scanner.object() else { return nil }
            let close = scanner.position - 1
            scanner.skipWhitespace()
            guard scanner.position == range.upperBound else { return nil }
            let members = Members(slots: UnsafeMutableBufferPointer(rebasing: keyStore[..<scanner.outerCount]), bytes: bytes)
            return body(members, close)
        }
    }

    /// The value of member `name` of an object the scanner has already
    /// accepted (as part of a larger text), found without checking again
    /// and without allocating.
    static func value(of name: StaticString, inObject range: Range<Int>,
                      of bytes: UnsafeBufferPointer<UInt8>) -> Range<Int>? {
        var walker = JSONScanner(bytes, at: range.lowerBound, end: range.upperBound)
        walker.position += 1
        while true {
            walker.skipWhitespace()
            guard walker.current == UInt8(ascii: "\"") else { return nil }
            let keyStart = walker.position + 1
            guard walker.string() else { return nil }
            let key = Member(key: keyStart..<(walker.position - 1), value: 0..<0)
            walker.skipWhitespace()
            walker.position += 1
            walker.skipWhitespace()
            let valueStart = walker.position
            guard walker.skipAccepted() else { return nil }
            if Self.key(key, in: bytes, is: name) { return valueStart..<walker.position }
            walker.skipWhitespace()
            guard walker.current == UInt8(ascii: ",") else { return nil }
            walker.position += 1
        }
    }

    /// Whether a member's key (without escapes, as the scanner requires) is `name`.
    static func key(_ member: Member, in bytes: UnsafeBufferPointer<UInt8>, is name: StaticString) -> Bool {
        let count = name.utf8CodeUnitCount
        guard member.key.count == count else { return false }
        return name.withUTF8Buffer { expected in
            guard let base = bytes.baseAddress, let wanted = expected.baseAddress else { return count == 0 }
            return memcmp(base + member.key.lowerBound, wanted, count) == 0
        }
    }

    /// Steps over a value already accepted: strings to their closing quote,
    /// objects and arrays to their matching bracket, anything else to the
    /// next delimiter.
    private mutating func skipAccepted() -> Bool {
        guard let first = current else { return false }
        switch first {
        case UInt8(ascii: "\""): return string()
        case UInt8(ascii: "{"), UInt8(ascii: "["):
            var open = 0
            while let byte = current {
                switch byte {
                case UInt8(ascii: "\""):
                    guard string() else { return false }
                    continue
                case UInt8(ascii: "{"), UInt8(ascii: "["): open += 1
                case UInt8(ascii: "}"), UInt8(ascii: "]"):
                    open -= 1
                    if open == 0 {
                        position += 1
                        return true
                    }
                default: break
                }
                position += 1
            }
            return false
        default:
            while let byte = current, byte != UInt8(ascii: ","), byte != UInt8(ascii: "}"), byte != UInt8(ascii: "]"),
                  byte != 0x20, byte != 0x09, byte != 0x0A, byte != 0x0D {
                position += 1
            }
            return true
        }
    }

    private var current: UInt8? { position < bytes.count ? bytes[position] : nil }

    private mutating func skipWhitespace() {
        guard let base = bytes.baseAddress else { return }
        var index = position
        let end = bytes.count
        while index < end {
            let byte = base[index]
            guard byte == 0x20 || byte == 0x09 || byte == 0x0A || byte == 0x0D else { break }
            index += 1
        }
        position = index
    }

    private mutating func value() -> Bool {
        guard let byte = current else { return false }
        switch byte {
        case UInt8(ascii: "{"): return object()
        case UInt8(ascii: "["): return array()
        case UInt8(ascii: "\""): return string()
        case UInt8(ascii: "t"): return literal("true")
        case UInt8(ascii: "f"): return literal("false")
        case UInt8(ascii: "n"): return literal("null")
        case UInt8(ascii: "-"), UInt8(ascii: "0")...UInt8(ascii: "9"): return number()
        default: return false
        }
    }

    private mutating func object() -> Bool {
        depth += 1
        guard depth <= JSONParser.maximumDepth else { return false }
        position += 1
        let firstKey = keyCount
        defer { keyCount = firstKey }
        skipWhitespace()
        if current == UInt8(ascii: "}") {
            position += 1
            depth -= 1
            return true
        }
        guard let base = bytes.baseAddress else { return false }
        while true {
            skipWhitespace()
            let keyStart = position + 1
            guard current == UInt8(ascii: "\""), string() else { return false }
            let keyEnd = position - 1
            let keyLength = keyEnd - keyStart
            guard keyCount - firstKey < Self.maximumMembers, keyCount < keyStore.count, !stringHadEscape else { return false }
            for index in firstKey..<keyCount {
                let other = keyStore[index]
                if Int(other.keyEnd - other.keyStart) == keyLength
                    && memcmp(base + Int(other.keyStart), base + keyStart, keyLength) == 0 {
                    return false
                }
            }
            let slot = keyCount
            // Slot is a trivial type: storing into the fresh memory is fine.
            keyStore[slot] = Slot(keyStart: Int32(keyStart), keyEnd: Int32(keyEnd))
            keyCount += 1
            skipWhitespace()
            guard current == UInt8(ascii: ":") else { return false }
            position += 1
            skipWhitespace()
            let valueStart = position
            guard value() else { return false }
            if depth == 1 {
                // The outermost object's keys stay at the start of the
                // buffer: nested objects only use the slots after them.
                keyStore[slot].valueStart = Int32(valueStart)
                keyStore[slot].valueEnd = Int32(position)
                outerCount = keyCount
            }
            skipWhitespace()
            switch current {
            case UInt8(ascii: ","): position += 1
            case UInt8(ascii: "}"):
                position += 1
                depth -= 1
                return true
            default: return false
            }
        }
    }

    private mutating func array() -> Bool {
        depth += 1
        guard depth <= JSONParser.maximumDepth else { return false }
        position += 1
        skipWhitespace()
        if current == UInt8(ascii: "]") {
            position += 1
            depth -= 1
            return true
        }
        while true {
            skipWhitespace()
            guard value() else { return false }
            skipWhitespace()
            switch current {
            case UInt8(ascii: ","): position += 1
            case UInt8(ascii: "]"):
                position += 1
                depth -= 1
                return true
            default: return false
            }
        }
    }

    /// A string as the parser accepts it: valid UTF-8, no raw control
    /// characters, only JSON's escapes, and `\u` escapes that pair their
    /// surrogates.
    private mutating func string() -> Bool {
        guard let base = bytes.baseAddress else { return false }
        let end = bytes.count
        var index = position + 1
        stringHadEscape = false
        while true {
            // The run of plain ASCII up to the next quote, backslash,
            // control or non-ASCII byte: eight bytes at a time while none
            // of them is one of those, then byte by byte.
            while end - index >= 8 {
                let word = UnsafeRawPointer(base + index).loadUnaligned(as: UInt64.self)
                if Self.hasSpecialByte(word) { break }
                index += 8
            }
            while index < end {
                let byte = base[index]
                if byte == UInt8(ascii: "\"") || byte == UInt8(ascii: "\\") || byte < 0x20 || byte >= 0x80 { break }
                index += 1
            }
            guard index < end else { return false }
            switch base[index] {
            case UInt8(ascii: "\""):
                position = index + 1
                return true
            case UInt8(ascii: "\\"):
                guard case .success(let escape) = JSONGrammar.escape(bytes, from: index + 1) else { return false }
                index = escape.end
                stringHadEscape = true
            case 0x80...0xFF:
                guard let next = JSONGrammar.utf8SequenceEnd(bytes, from: index) else { return false }
                index = next
            default:
                return false
            }
        }
    }

    /// Whether any byte of `word` is a quote, a backslash, below 0x20 or
    /// above 0x7F. Each term sets a byte's high bit exactly when that byte
    /// (for the zero tests, that byte of the XOR) is below the bound,
    /// provided its own high bit is clear, which the last term covers.
    private static func hasSpecialByte(_ word: UInt64) -> Bool {
        let ones: UInt64 = 0x0101_0101_0101_0101
        let highs: UInt64 = 0x8080_8080_8080_8080
        let quotes = word ^ (ones &* UInt64(UInt8(ascii: "\"")))
        let backslashes = word ^ (ones &* UInt64(UInt8(ascii: "\\")))
        let controls = (word &- ones &* 0x20) & ~word
        let isQuote = (quotes &- ones) & ~quotes
        let isBackslash = (backslashes &- ones) & ~backslashes
        return (controls | isQuote | isBackslash | word) & highs != 0
    }

    private mutating func literal(_ text: StaticString) -> Bool {
        let count = text.utf8CodeUnitCount
        guard bytes.count - position >= count else { return false }
        let matches = text.withUTF8Buffer { expected in
            guard let base = bytes.baseAddress, let wanted = expected.baseAddress else { return count == 0 }
            return memcmp(base + position, wanted, count) == 0
        }
        position += count
        return matches
    }

    private mutating func number() -> Bool {
        guard case .success(let end) = JSONGrammar.numberEnd(bytes, from: position) else { return false }
        position = end
        return true
    }
}
