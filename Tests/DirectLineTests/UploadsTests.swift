import Foundation
import Testing
@testable import DirectLine

@Suite("uploads")
struct UploadsTests {
    @Test("file names cannot end the header: quote, CR and LF are escaped, and so are % and backslash")
    func quoting() {
        #expect(Uploads.quotedFilename("a.png") == "\"a.png\"")
        #expect(Uploads.quotedFilename("a\"b\r\nX: 1\n.png") == "\"a%22b%0D%0AX: 1%0A.png\"")
        #expect(Uploads.quotedFilename("50%22off\\") == "\"50%2522off\\\\\"")
        #expect(Uploads.quotedFilename("résumé.pdf") == "\"résumé.pdf\"")
    }

    @Test("content types must be media types without control characters", arguments: [
        ("image/png", true), ("text/plain; charset=utf-8", true), ("application/vnd.ms-excel", true),
        ("nonsense", false), ("text/", false), ("/plain", false), ("text/plain\r\nX: 1", false),
        ("te xt/plain", false), ("", false), ("a/b/c", false),
    ])
    func contentTypes(value: String, valid: Bool) {
        let accepted = (try? Uploads.validateContentType(value)) != nil
        #expect(accepted == valid)
    }

    @Test("content types are guessed from the extension, case-insensitively")
    func guessing() {
        #expect(Uploads.guessContentType(filename: "photo.JPG") == "image/jpeg")
        #expect(Uploads.guessContentType(filename: "a.b.png") == "image/png")
        #expect(Uploads.guessContentType(filename: "README") == "application/octet-stream")
        #expect(Uploads.guessContentType(filename: ".png") == "application/octet-stream")
        #expect(Uploads.guessContentType(filename: "x.unknownext") == "application/octet-stream")
    }

    @Test("the default file name is the path's last component")
    func lastComponent() {
        #expect(Uploads.lastComponent(of: "/tmp/photos/a.jpg") == "a.jpg")
        #expect(Uploads.lastComponent(of: "a.jpg") == "a.jpg")
        #expect(Uploads.lastComponent(of: "dir/") == "dir")
    }

    @Test("base64 is decoded strictly", arguments: [
        ("", [UInt8]()), ("aGVsbG8=", Array("hello".utf8)), ("aGk=", Array("hi".utf8)),
        ("YQ==", Array("a".utf8)), ("+/+/", [0xFB, 0xFF, 0xBF]),
    ])
    func base64Valid(text: String, expected: [UInt8]) {
        #expect(Base64.decode(text) == expected)
    }

    @Test("malformed base64 is refused", arguments: ["aGVsbG8", "aGVsbG8==", "a===", "aG Vs", "aGk-", "=aGk", "YR==", "aGl="])
    func base64Invalid(text: String) {
        #expect(Base64.decode(text) == nil)
    }

    @Test("a multipart body follows RFC 2046: delimiters, parts in order, closing boundary")
    func multipartLayout() throws {
        let files = [
            try Uploads.File.inMemory(Array("one".utf8), contentType: nil, filename: "a.txt"),
            try Uploads.File.inMemory([0, 1, 2], contentType: "image/png", filename: "q\"x"),
        ]
        let (body, contentType) = Uploads.multipart(files: files, activity: Array(#"{"type":"message"}"#.utf8),
                                                    activityType: "application/vnd.microsoft.activity", boundary: "B")
        #expect(contentType == "multipart/form-data; boundary=B")
        let expected = "--B\r\nContent-Type: application/vnd.microsoft.activity\r\nContent-Disposition: form-data; name=\"activity\"\r\n\r\n"
            + "{\"type\":\"message\"}\r\n"
            + "--B\r\nContent-Type: text/plain\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.txt\"\r\n\r\none\r\n"
            + "--B\r\nContent-Type: image/png\r\nContent-Disposition: form-data; name=\"file\"; filename=\"q%22x\"\r\n\r\n\u{0}\u{1}\u{2}\r\n"
            + "--B--\r\n"
        #expect(body.collected() == Array(expected.utf8))
        #expect(body.length == Int64(expected.utf8.count))
    }

    @Test("boundaries are random and long enough")
    func boundaries() {
        let first = Uploads.boundary()
        let second = Uploads.boundary()
        #expect(first != second)
        #expect(first.count >= 32 + "dl-boundary-".count)
    }

    @Test("a file segment streams the file; rewinding is allowed only before any byte left")
    func fileSegment() throws {
        let path = NSTemporaryDirectory() + "dl-upload-\(UUID().uuidString)"
        let content = (0..<200_000).map { UInt8(truncatingIfNeeded: $0 &* 7) }
        try Data(content).write(to: URL(fileURLWithPath: path))
        defer { try? FileManager.default.removeItem(atPath: path) }
        let file = try OpenFile(path: path)
        #expect(file.size == 200_000)
        let body = RequestBody(segments: [.bytes([9]), .file(file), .bytes([8])])
        #expect(body.collected() == [9] + content + [8])

        let source = BodySource(body)
        #expect(source.rewindAllowed(to: 0))
        var buffer = [UInt8](repeating: 0, count: 10)
        _ = buffer.withUnsafeMutableBytes { source.read(into: $0) }
        #expect(!source.rewindAllowed(to: 0))
    }

    @Test("a file that shrinks while it is read is reported, not padded")
    func shrinkingFile() throws {
        let path = NSTemporaryDirectory() + "dl-shrink-\(UUID().uuidString)"
        try Data(repeating: 1, count: 1000).write(to: URL(fileURLWithPath: path))
        defer { try? FileManager.default.removeItem(atPath: path) }
        let file = try OpenFile(path: path)
        truncate(path, 10)
        let source = BodySource(RequestBody(segments: [.file(file)]))
        var buffer = [UInt8](repeating: 0, count: 4096)
        #expect(buffer.withUnsafeMutableBytes { source.read(into: $0) } == -1)
        #expect(source.fileError?.contains("shorter") == true)
    }

    @Test("missing files and directories are refused with DL_ERR_IO")
    func unreadable() {
        for path in ["/nonexistent/file", NSTemporaryDirectory()] {
            do {
                _ = try OpenFile(path: path)
                Issue.record("\(path) was opened")
            } catch {
                #expect(error.status == .io)
            }
        }
    }
}
