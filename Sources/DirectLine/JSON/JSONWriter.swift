extension JSONValue {
    /// Compact serialization; strings are escaped so the output is valid
    /// JSON and contains no raw control characters.
    var serialized: String { String(decoding: serializedBytes, as: UTF8.self) }

    /// The same as UTF-8 bytes: what request bodies and C results need.
    var serializedBytes: [UInt8] {
        var output: [UInt8] = []
        output.reserveCapacity(256)
        write(to: &output)
        return output
    }

    func write(to output: inout [UInt8]) {
        switch self {
        case .null: output.append(contentsOf: "null".utf8)
        case .bool(let value): output.append(contentsOf: (value ? "true" : "false").utf8)
        case .number(let text): output.append(contentsOf: text.utf8)
        case .string(let string): Self.writeString(string, to: &output)
        case .array(let array):
            output.append(UInt8(ascii: "["))
            for (index, element) in array.enumerated() {
                if index > 0 { output.append(UInt8(ascii: ",")) }
                element.write(to: &output)
            }
            output.append(UInt8(ascii: "]"))
        case .object(let object):
            output.append(UInt8(ascii: "{"))
            for (index, member) in object.members.enumerated() {
                if index > 0 { output.append(UInt8(ascii: ",")) }
                Self.writeString(member.key, to: &output)
                output.append(UInt8(ascii: ":"))
                member.value.write(to: &output)
            }
            output.append(UInt8(ascii: "}"))
        case .raw(let raw):
            raw.write(to: &output)
        }
    }

    private static let hexDigits = Array("0123456789abcdef".utf8)

    /// Writes a quoted string, copying runs that need no escaping in one go.
    /// Escaped: `"`, `\`, C0 controls, DEL, and U+2028/U+2029 (which some
    /// JavaScript parsers take for line ends).
    static func writeString(_ string: String, to output: inout [UInt8]) {
        var string = string
        output.append(UInt8(ascii: "\""))
        string.withUTF8 { bytes in
            var runStart = 0
            var index = 0
            func flush(upTo end: Int) {
                if end > runStart { output.append(contentsOf: UnsafeBufferPointer(rebasing: bytes[runStart..<end])) }
            }
            /// Replaces `width` bytes at `index` with `escape`.
            func substitute(_ escape: some Sequence<UInt8>, width: Int = 1) {
                flush(upTo: index)
                output.append(contentsOf: escape)
                index += width
                runStart = index
            }
            while index < bytes.count {
                let byte = bytes[index]
                switch byte {
                case UInt8(ascii: "\""): substitute("\\\"".utf8)
                case UInt8(ascii: "\\"): substitute("\\\\".utf8)
                case UInt8(ascii: "\n"): substitute("\\n".utf8)
                case UInt8(ascii: "\r"): substitute("\\r".utf8)
                case UInt8(ascii: "\t"): substitute("\\t".utf8)
                case 0x00...0x1F, 0x7F: substitute(unicodeEscape(UInt32(byte)))
                case 0xE2 where index + 2 < bytes.count && bytes[index + 1] == 0x80
                    && (bytes[index + 2] == 0xA8 || bytes[index + 2] == 0xA9):
                    substitute(unicodeEscape(bytes[index + 2] == 0xA8 ? 0x2028 : 0x2029), width: 3)
                default: index += 1
                }
            }
            flush(upTo: bytes.count)
        }
        output.append(UInt8(ascii: "\""))
    }

    /// `\uXXXX` for a code unit that must not appear raw.
    private static func unicodeEscape(_ value: UInt32) -> [UInt8] {
        [UInt8(ascii: "\\"), UInt8(ascii: "u")] + [12, 8, 4, 0].map { hexDigits[Int((value >> UInt32($0)) & 0xF)] }
    }
}

/// Fills memory already sized for what is written. A struct, so that the
/// position needs no dynamic exclusivity check, as a variable captured by
/// a nested function would.
struct ByteWriter {
    var at: UnsafeMutablePointer<UInt8>

    mutating func put(_ source: UnsafeBufferPointer<UInt8>) {
        guard let base = source.baseAddress else { return }
        at.update(from: base, count: source.count)
        at += source.count
    }

    mutating func put(_ byte: UInt8) {
        at.pointee = byte
        at += 1
    }
}
