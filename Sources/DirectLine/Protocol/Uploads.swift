/// Building upload requests: one raw attachment, or multipart/form-data
/// (RFC 7578, RFC 2046) with files and an optional activity or message part.
enum Uploads {
    /// One file to upload, with the headers of its part.
    struct File: Sendable {
        enum Content: Sendable {
            case file(OpenFile)
            case bytes([UInt8])
        }

        var content: Content
        var contentType: String
        var filename: String

        var segment: RequestBody.Segment {
            switch content {
            case .file(let file): .file(file)
            case .bytes(let bytes): .bytes(bytes)
            }
        }

        /// Validates or fills in the content type and file name.
        init(content: Content, contentType: String?, filename: String?, defaultName: String) throws(DirectLineError) {
            self.content = content
            let name = filename ?? defaultName
            guard !name.isEmpty else { throw .invalidArgument("the file name must not be empty") }
            guard !name.unicodeScalars.contains(where: { $0.value == 0 }) else {
                throw .invalidArgument("the file name contains NUL")
            }
            // CR and LF are escaped in the header (quotedFilename); any other
            // control character has no place in a header value.
            guard !name.unicodeScalars.contains(where: { $0 != "\r" && $0 != "\n" && $0 != "\t" && Validation.isControl($0) }) else {
                throw .invalidArgument("the file name contains a control character")
            }
            self.filename = name
            if let contentType {
                try Uploads.validateContentType(contentType)
                self.contentType = contentType
            } else {
                self.contentType = Uploads.guessContentType(filename: name)
            }
        }
    }

    /// The last component of a path, which names the uploaded file by default.
    static func lastComponent(of path: String) -> String {
        let trimmed = path.hasSuffix("/") ? String(path.dropLast()) : path
        return trimmed.split(separator: "/", omittingEmptySubsequences: false).last.map(String.init) ?? path
    }

    /// The file name as a quoted-string value: `"`, CR and LF are
    /// percent-escaped (as browsers do), so a name cannot end the header.
    static func quotedFilename(_ name: String) -> String {
        var output = "\""
        for scalar in name.unicodeScalars {
            switch scalar {
            case "\"": output += "%22"
            case "\r": output += "%0D"
            case "\n": output += "%0A"
            default: output.unicodeScalars.append(scalar)
            }
        }
        return output + "\""
    }

    /// A media type such as `image/png` or `text/plain; charset=utf-8`.
    static func validateContentType(_ value: String) throws(DirectLineError) {
        try Validation.headerValue(value, name: "the content type")
        let essence = value.split(separator: ";", maxSplits: 1).first.map { String($0).trimmingASCIIWhitespace } ?? ""
        let parts = essence.split(separator: "/", omittingEmptySubsequences: false)
        let token = { (part: Substring) in
            !part.isEmpty && part.unicodeScalars.allSatisfy { $0.isASCII && $0.value > 0x20 && !"()<>@,;:\\\"/[]?={}".unicodeScalars.contains($0) }
        }
        guard parts.count == 2, token(parts[0]), token(parts[1]) else {
            throw .invalidArgument("the content type \"\(value)\" is not a media type like \"image/png\"")
        }
    }

    private static let typesByExtension: [String: String] = [
        "jpg": "image/jpeg", "jpeg": "image/jpeg", "png": "image/png", "gif": "image/gif",
        "webp": "image/webp", "bmp": "image/bmp", "svg": "image/svg+xml", "tif": "image/tiff", "tiff": "image/tiff",
        "heic": "image/heic", "ico": "image/vnd.microsoft.icon",
        "txt": "text/plain", "md": "text/markdown", "csv": "text/csv", "htm": "text/html", "html": "text/html",
        "xml": "application/xml", "json": "application/json", "pdf": "application/pdf", "zip": "application/zip",
        "gz": "application/gzip", "doc": "application/msword",
        "docx": "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
        "xls": "application/vnd.ms-excel",
        "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
        "ppt": "application/vnd.ms-powerpoint",
        "pptx": "application/vnd.openxmlformats-officedocument.presentationml.presentation",
        "mp3": "audio/mpeg", "wav": "audio/wav", "ogg": "audio/ogg", "m4a": "audio/mp4",
        "mp4": "video/mp4", "mov": "video/quicktime", "webm": "video/webm",
    ]

    /// From the file name's extension; `application/octet-stream` otherwise.
    static func guessContentType(filename: String) -> String {
        guard let dot = filename.lastIndex(of: "."), dot != filename.startIndex else { return "application/octet-stream" }
        let ext = filename[filename.index(after: dot)...].lowercased()
        return typesByExtension[ext] ?? "application/octet-stream"
    }

    /// A boundary with 128 random bits from the system's secure generator.
    static func boundary() -> String {
        var generator = SystemRandomNumberGenerator()
        return "dl-boundary-" + ClientActivityID.hex(generator.next()) + ClientActivityID.hex(generator.next())
    }

    /// A single raw attachment: the file is the body.
    static func raw(_ file: File) -> (body: RequestBody, contentType: String, disposition: String) {
        (RequestBody(segments: [file.segment]), file.contentType,
         "name=\"file\"; filename=\(quotedFilename(file.filename))")
    }

    /// multipart/form-data with the activity (or message) part first, then the files.
    static func multipart(files: [File], activity: [UInt8]?, activityType: String,
                          boundary: String = boundary()) -> (body: RequestBody, contentType: String) {
        var segments: [RequestBody.Segment] = []
        func text(_ string: String) { segments.append(.bytes(Array(string.utf8))) }
        if let activity {
            text("--\(boundary)\r\nContent-Type: \(activityType)\r\nContent-Disposition: form-data; name=\"activity\"\r\n\r\n")
            segments.append(.bytes(activity))
            text("\r\n")
        }
        for file in files {
            text("--\(boundary)\r\nContent-Type: \(file.contentType)\r\n"
                 + "Content-Disposition: form-data; name=\"file\"; filename=\(quotedFilename(file.filename))\r\n\r\n")
            segments.append(file.segment)
            text("\r\n")
        }
        text("--\(boundary)--\r\n")
        return (RequestBody(segments: segments), "multipart/form-data; boundary=\(boundary)")
    }
}

/// Strict RFC 4648 base64 (standard alphabet, padded, no whitespace).
enum Base64 {
    static func decode(_ text: String) -> [UInt8]? {
        let input = Array(text.utf8)
        guard input.count % 4 == 0 else { return nil }
        var output: [UInt8] = []
        output.reserveCapacity(input.count / 4 * 3)
        var index = 0
        while index < input.count {
            let isLast = index + 4 == input.count
            var values: [UInt32] = []
            var padding = 0
            for offset in 0..<4 {
                let byte = input[index + offset]
                if byte == UInt8(ascii: "=") {
                    guard isLast, offset >= 2 else { return nil }
                    padding += 1
                    continue
                }
                guard padding == 0, let value = sextet(byte) else { return nil }
                values.append(value)
            }
            let group = values.enumerated().reduce(UInt32(0)) { $0 | $1.element << (18 - 6 * UInt32($1.offset)) }
            output.append(UInt8(truncatingIfNeeded: group >> 16))
            if padding < 2 { output.append(UInt8(truncatingIfNeeded: group >> 8)) }
            if padding < 1 { output.append(UInt8(truncatingIfNeeded: group)) }
            // Bits beyond the data must be zero, or two texts decode alike.
            if padding == 1, group & 0xFF != 0 { return nil }
            if padding == 2, group & 0xFFFF != 0 { return nil }
            index += 4
        }
        return output
    }

    private static func sextet(_ byte: UInt8) -> UInt32? {
        switch byte {
        case UInt8(ascii: "A")...UInt8(ascii: "Z"): UInt32(byte - UInt8(ascii: "A"))
        case UInt8(ascii: "a")...UInt8(ascii: "z"): UInt32(byte - UInt8(ascii: "a") + 26)
        case UInt8(ascii: "0")...UInt8(ascii: "9"): UInt32(byte - UInt8(ascii: "0") + 52)
        case UInt8(ascii: "+"): 62
        case UInt8(ascii: "/"): 63
        default: nil
        }
    }
}
