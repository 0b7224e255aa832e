/// A JSON value that `JSONParser.validate` has checked, read in place in the
/// document's bytes instead of being built into a tree.
///
/// A page of activities is read this way: the library looks at a few
/// members of each activity (its id, its sender, its clientActivityID) and
/// hands the rest back as the service wrote it. A tree of a 60 MiB page of
/// small values took fifteen times its size; read in place, the page costs
/// its own bytes and the result's.
///
/// Values share the document's storage: a value kept keeps the whole page.
struct RawJSON: Sendable, Equatable {
    /// The whole document (shared, never copied).
    let document: [UInt8]
    private let start: Int32
    private let end: Int32

    /// Only `JSONParser.validate` makes a document's value, and only its
    /// walks below make values inside it, so every value is checked text.
    init(document: [UInt8], range: Range<Int>) {
        self.document = document
        start = Int32(clamping: range.lowerBound)
        end = Int32(clamping: range.upperBound)
    }

    var range: Range<Int> { Int(start)..<Int(end) }

    var byteCount: Int { Int(end - start) }

    static func == (lhs: RawJSON, rhs: RawJSON) -> Bool {
        lhs.document[lhs.range] == rhs.document[rhs.range]
    }

    private var first: UInt8? { start < end ? document[Int(start)] : nil }

    var isObject: Bool { first == UInt8(ascii: "{") }
    var isArray: Bool { first == UInt8(ascii: "[") }
    var isNull: Bool { first == UInt8(ascii: "n") }

    /// The string's text, decoded; nil when the value is not a string.
    var stringValue: String? {
        guard first == UInt8(ascii: "\"") else { return nil }
        // A checked string decodes without fail; the parser does it, so
        // escapes follow one rule.
        return (try? JSONParser.parse(bytes: Array(document[range])))?.stringValue
    }

    /// The member `name` of an object: nil when it is absent or the value
    /// is not an object; `.repeated` when the key occurs more than once
    /// (a tree would have refused the document).
    enum Lookup: Equatable {
        case absent
        case found(RawJSON)
        case repeated
    }

    func lookup(_ name: String) -> Lookup {
        guard isObject else { return .absent }
        var found: RawJSON?
        var walker = Walker(document, from: Int(start) + 1)
        while let key = walker.nextKey() {
            walker.skipColon()
            let value = walker.skipValue()
            if key.count == name.utf8.count || walker.lastKeyHadEscape, keyMatches(key, name, escaped: walker.lastKeyHadEscape) {
                if found != nil { return .repeated }
                found = RawJSON(document: document, range: value)
            }
            guard walker.skipComma() else { break }
        }
        return found.map(Lookup.found) ?? .absent
    }

    /// The member `name` when it occurs once; nil when absent or repeated.
    func member(_ name: String) -> RawJSON? {
        if case .found(let value) = lookup(name) { return value }
        return nil
    }

    /// Calls `body` with each element of an array, in order, until it
    /// returns false.
    func forEachElement(_ body: (RawJSON) -> Bool) {
        guard isArray else { return }
        var walker = Walker(document, from: Int(start) + 1)
        walker.skipWhitespace()
        guard walker.current != UInt8(ascii: "]") else { return }
        while true {
            walker.skipWhitespace()
            let element = walker.skipValue()
            guard body(RawJSON(document: document, range: element)) else { return }
            guard walker.skipComma() else { return }
        }
    }

    /// Appends the value's text as the service wrote it.
    func write(to output: inout [UInt8]) {
        output.append(contentsOf: document[range])
    }

    private func keyMatches(_ key: Range<Int>, _ name: String, escaped: Bool) -> Bool {
        if escaped {
            let quoted = Array(document[(key.lowerBound - 1)..<(key.upperBound + 1)])
            return (try? JSONParser.parse(bytes: quoted))?.stringValue == name
        }
        return document[key].elementsEqual(name.utf8)
    }

    /// Steps through checked text: it trusts the grammar, so it never fails
    /// and never allocates.
    private struct Walker {
        let bytes: [UInt8]
        var position: Int
        var lastKeyHadEscape = false

        init(_ bytes: [UInt8], from position: Int) {
            self.bytes = bytes
            self.position = position
        }

        var current: UInt8? { position < bytes.count ? bytes[position] : nil }

        mutating func skipWhitespace() {
            while let byte = current, byte == 0x20 || byte == 0x09 || byte == 0x0A || byte == 0x0D { position += 1 }
        }

        /// The next key's bytes inside its quotes; nil at the object's end.
        mutating func nextKey() -> Range<Int>? {
            skipWhitespace()
            guard current == UInt8(ascii: "\"") else { return nil }
            let keyStart = position + 1
            lastKeyHadEscape = skipString()
            return keyStart..<(position - 1)
        }

        mutating func skipColon() {
            skipWhitespace()
            position += 1
            skipWhitespace()
        }

        /// True when a comma followed (another member or element comes).
        mutating func skipComma() -> Bool {
            skipWhitespace()
            guard current == UInt8(ascii: ",") else { return false }
            position += 1
            return true
        }

        /// Steps over a string from its opening quote; true when it held an escape.
        @discardableResult
        mutating func skipString() -> Bool {
            position += 1
            var escaped = false
            while let byte = current {
                position += 1
                if byte == UInt8(ascii: "\\") {
                    escaped = true
                    position += 1
                } else if byte == UInt8(ascii: "\"") {
                    break
                }
            }
            return escaped
        }

        /// Steps over one value and gives its range.
        mutating func skipValue() -> Range<Int> {
            skipWhitespace()
            let valueStart = position
            switch current {
            case UInt8(ascii: "\""):
                skipString()
            case UInt8(ascii: "{"), UInt8(ascii: "["):
                var open = 0
                while let byte = current {
                    switch byte {
                    case UInt8(ascii: "\""):
                        skipString()
                        continue
                    case UInt8(ascii: "{"), UInt8(ascii: "["): open += 1
                    case UInt8(ascii: "}"), UInt8(ascii: "]"): open -= 1
                    default: break
                    }
                    position += 1
                    if open == 0 { break }
                }
            default:
                while let byte = current, byte != UInt8(ascii: ","), byte != UInt8(ascii: "}"),
                      byte != UInt8(ascii: "]"), byte != 0x20, byte != 0x09, byte != 0x0A, byte != 0x0D {
                    position += 1
                }
            }
            return valueStart..<position
        }
    }
}
