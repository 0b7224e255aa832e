import Testing
@testable import DirectLine

@Suite("JSON checked and read in place")
struct RawJSONTests {
    private func raw(_ text: String) throws -> RawJSON {
        try JSONParser.validate(bytes: Array(text.utf8))
    }

    @Test("validation refuses what the parser refuses, apart from repeated keys", arguments: [
        "", " ", "{", "}", "[1,]", "{\"a\":1,}", "01", "1.", "tru", "\"abc", "\"\\x\"", "\"\\ud800\"",
        "\"a\u{01}b\"", "{\"a\":1}{}", "[1] x", "NaN", "[{\"a\":[1,{\"b\":\"\\q\"}]}]",
    ])
    func refused(text: String) {
        #expect(throws: JSONParseError.self) { try JSONParser.validate(bytes: Array(text.utf8)) }
    }

    @Test("invalid UTF-8 deep inside is refused")
    func utf8() {
        let bytes: [UInt8] = Array(#"{"activities":[{"text":""#.utf8) + [0xC3, 0x28] + Array(#""}]}"#.utf8)
        #expect(throws: JSONParseError.self) { try JSONParser.validate(bytes: bytes) }
    }

    @Test("members are found past strings holding brackets, quotes and escapes")
    func members() throws {
        let value = try raw(#" {"a":"}]\"{[","b":[{"x":"]"},"\\"],"c\u0064":7,"id":"one\ntwo"} "#)
        #expect(value.member("b")?.isArray == true)
        #expect(value.member("cd").map { String(decoding: $0.document[$0.range], as: UTF8.self) } == "7")
        #expect(value.member("id")?.stringValue == "one\ntwo")
        #expect(value.member("a")?.stringValue == "}]\"{[")
        #expect(value.member("x") == nil)
        #expect(value.lookup("zz") == .absent)
    }

    @Test("a repeated key is reported, not guessed")
    func repeated() throws {
        let value = try raw(#"{"id":"1","from":{},"id":"2"}"#)
        #expect(value.lookup("id") == .repeated)
        #expect(value.member("id") == nil)
        #expect(value.member("from")?.isObject == true)
    }

    @Test("elements come in order, and the walk stops when asked")
    func elements() throws {
        let list = try raw(#"[ {"id":"a"} , "[" , [1,[2]] , null ,{"id":"e"}]"#)
        var seen: [String] = []
        list.forEachElement { element in
            seen.append(String(decoding: element.document[element.range], as: UTF8.self))
            return true
        }
        #expect(seen == [#"{"id":"a"}"#, #""[""#, "[1,[2]]", "null", #"{"id":"e"}"#])
        var count = 0
        list.forEachElement { _ in
            count += 1
            return count < 2
        }
        #expect(count == 2)
        var none = 0
        try raw("[ ]").forEachElement { _ in
            none += 1
            return true
        }
        #expect(none == 0)
    }

    @Test("a value writes out as the service wrote it")
    func verbatim() throws {
        let text = #"{"activities":[{"text":"\u00e9\/"}],"watermark":"1"}"#
        let value = try raw(text)
        #expect(JSONValue.raw(value).serialized == text)
    }
}
