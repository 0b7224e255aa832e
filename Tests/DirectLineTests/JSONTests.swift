import Testing
@testable import DirectLine

@Suite("JSON parser and writer")
struct JSONTests {
    @Test("valid documents round-trip byte for byte", arguments: [
        #"{"a":1,"b":[true,false,null],"c":{"d":"e"}}"#,
        #"[1.5e-7,-0,0.25,12345678901234567890123]"#,
        #""\u00e9\n\t\"\\""#,
        #"{"z":1,"a":2}"#,
        "[]", "{}", "0", "\"\"",
    ])
    func roundTrip(text: String) throws {
        let value = try JSONParser.parse(text)
        let again = try JSONParser.parse(value.serialized)
        #expect(again == value)
        if !text.contains("\\u") { #expect(value.serialized == text) }
    }

    @Test("member order is preserved")
    func order() throws {
        let value = try JSONParser.parse(#"{"z":1,"a":2,"m":3}"#)
        #expect(value.objectValue?.keys == ["z", "a", "m"])
    }

    @Test("ill-formed documents are refused", arguments: [
        "", " ", "{", "}", "[1,]", "{\"a\":1,}", "{'a':1}", "01", "1.", ".5", "-", "1e", "+1",
        "tru", "nul", "\"abc", "\"\\x\"", "\"\\u12\"", "\"\\ud800\"", "\"\\udc00\"", "\"\\ud800\\u0041\"",
        "\"a\u{01}b\"", "{\"a\":1}{}", "[1] x", "{\"a\":1,\"a\":2}", "NaN", "Infinity",
    ])
    func refused(text: String) {
        #expect(throws: JSONParseError.self) { try JSONParser.parse(text) }
    }

    @Test("number and escape errors say what and where", arguments: [
        ("01", "leading zero in number", 1), ("-", "invalid number", 1), ("1.", "invalid fraction", 2),
        ("1e+", "invalid exponent", 3), (#""\x""#, "invalid escape", 3), (#""\u12""#, #"invalid \u escape"#, 3),
        (#""\u12g4""#, #"invalid \u escape"#, 5), (#""\ud800x""#, "lone surrogate in string", 7),
        (#""\udc00""#, "lone surrogate in string", 7), (#""\ud800\u0041""#, "lone surrogate in string", 13),
        (#""\ud800\uzzzz""#, #"invalid \u escape"#, 9), ("\"\\", "unterminated escape", 2),
    ])
    func numberAndEscapeErrors(text: String, message: String, offset: Int) {
        #expect(throws: JSONParseError(message: message, offset: offset)) { try JSONParser.parse(text) }
    }

    @Test("strings that are not UTF-8 are refused, with or without escapes", arguments: [
        [0x22, 0xFF, 0x22], [0x22, 0x61, 0xC3, 0x28, 0x22], [0x22, 0x5C, 0x6E, 0xED, 0xA0, 0x80, 0x22],
        [0x7B, 0x22, 0xC0, 0xAF, 0x22, 0x3A, 0x31, 0x7D],
    ] as [[UInt8]])
    func invalidUTF8(bytes: [UInt8]) {
        #expect(throws: JSONParseError.self) { try JSONParser.parse(bytes: bytes) }
    }

    @Test("surrogate pairs decode to one scalar")
    func surrogates() throws {
        #expect(try JSONParser.parse(#""\ud83d\ude00""#) == .string("😀"))
    }

    @Test("nesting deeper than the limit is refused without recursion trouble")
    func depth() throws {
        let ok = String(repeating: "[", count: JSONParser.maximumDepth) + String(repeating: "]", count: JSONParser.maximumDepth)
        _ = try JSONParser.parse(ok)
        let deep = String(repeating: "[", count: 100_000)
        #expect(throws: JSONParseError.self) { try JSONParser.parse(deep) }
    }

    @Test("control characters and separators are escaped on output")
    func escaping() {
        let value = JSONValue.string("a\u{0}b\u{1F}c\u{2028}\"\\")
        #expect(value.serialized == #""a\u0000b\u001fc\u2028\"\\""#)
    }

    @Test("object subscript appends, replaces and removes")
    func objectEditing() {
        var object = JSONObject([("a", .integer(1))])
        object["b"] = .integer(2)
        object["a"] = .integer(3)
        #expect(object.keys == ["a", "b"])
        #expect(object["a"] == .number("3"))
        object["a"] = nil
        #expect(object.keys == ["b"])
    }
}
