/// Building upload requests: one raw attachment, or multipart/form-data
/// (RFC 7578, RFC 2046) with files and an optional activity or message part.
enum Uploads {
    /// One file to upload, with the headers of its part.
    struct File: Sendable {
        /// Its bytes: an open file, streamed, or bytes in memory.
        var segment: RequestBody.Segment
        var contentType: String
        var filename: String

        /// A file on disk, opened now so that a missing one is refused with
        /// nothing sent; named by the path's last component by default.
        /// `pathName` names the argument in errors. A file that reports no
        /// size (under /proc, say) is read to its end now, up to
        /// `maxUnsizedFileBytes`; any other is streamed as it is sent.
        static func onDisk(path: String, pathName: String = "path", contentType: String?,
                           filename: String?) throws(DirectLineError) -> File {
            try onDisk(pathBytes: Array(path.utf8), pathName: pathName, contentType: contentType, filename: filename)
        }

        /// As `onDisk(path:...)`, for a path given as bytes, which need not
        /// be UTF-8; only the name sent must be (give `filename` when the
        /// path's last component is not).
        static func onDisk(pathBytes: [UInt8], pathName: String = "path", contentType: String?,
                           filename: String?) throws(DirectLineError) -> File {
            guard !pathBytes.isEmpty else { throw .invalidArgument("\(pathName) must not be empty") }
            var defaultName = ""
            if filename == nil {
                let component = Uploads.lastComponent(of: pathBytes)
                guard let name = String(validating: component, as: UTF8.self) else {
                    throw .invalidArgument("the file name taken from \(pathName) is not UTF-8; give the name to send "
                                           + "(filename)")
                }
                defaultName = name
            }
            let file = try OpenFile(pathBytes: pathBytes)
            let segment: RequestBody.Segment = file.size == 0
                ? .bytes(try file.readToEnd(limit: Uploads.maxUnsizedFileBytes)) : .file(file)
            return try File(segment: segment, contentType: contentType, filename: filename, defaultName: defaultName)
        }

        /// Bytes from memory, named "file" by default.
        static func inMemory(_ bytes: [UInt8], contentType: String?, filename: String?) throws(DirectLineError) -> File {
            try File(segment: .bytes(bytes), contentType: contentType, filename: filename, defaultName: "file")
        }

        /// Validates or fills in the content type and file name.
        private init(segment: RequestBody.Segment, contentType: String?, filename: String?,
                     defaultName: String) throws(DirectLineError) {
            self.segment = segment
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

    /// The most a file that reports no size is read into memory (the
    /// client's `maxUploadBytes` then applies as to any upload).
    static let maxUnsizedFileBytes = 64 * 1024 * 1024

    /// The last component of a path given as bytes.
    static func lastComponent(of path: [UInt8]) -> ArraySlice<UInt8> {
        var end = path.count
        if end > 1, path[end - 1] == UInt8(ascii: "/") { end -= 1 }
        let start = path[..<end].lastIndex(of: UInt8(ascii: "/")).map { $0 + 1 } ?? 0
        return path[start..<end]
    }

    /// The last component of a path, which names the uploaded file by default.
    static func lastComponent(of path: String) -> String {
        String(decoding: lastComponent(of: Array(path.utf8)), as: UTF8.self)
    }

    /// The file name as a quoted-string value: `"`, CR and LF are
    /// percent-escaped (as browsers do), so a name cannot end the header;
    /// `%` is escaped too (`%25`), so that a name which contains `%22`
    /// comes back as itself, and `\` is sent as the quoted pair `\\`, so
    /// that a name ending in one cannot swallow the closing quote.
    static func quotedFilename(_ name: String) -> String {
        var output = "\""
        for scalar in name.unicodeScalars {
            switch scalar {
            case "\"": output += "%22"
            case "\r": output += "%0D"
            case "\n": output += "%0A"
            case "%": output += "%25"
            case "\\": output += "\\\\"
            default: output.unicodeScalars.append(scalar)
            }
        }
        return output + "\""
    }

    /// A media type such as `image/png` or `text/plain; charset=utf-8`.
    static func validateContentType(_ value: String) throws(DirectLineError) {
        try Validation.singleLine(value, name: "the content type")
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

    /// A single raw attachment: the file is the body. Its name goes in an
    /// HTTP header, which carries ASCII: a name that is not plain ASCII
    /// also goes out as RFC 8187 `filename*` (RFC 6266 section 4.3), after
    /// an ASCII `filename` fallback with `_` for each other character.
    static func raw(_ file: File) -> (body: RequestBody, contentType: String, disposition: String) {
        let name = file.filename
        var disposition = "name=\"file\"; filename="
        if name.utf8.allSatisfy({ $0 < 0x80 }) {
            disposition += quotedFilename(name)
        } else {
            let fallback = String(String.UnicodeScalarView(name.unicodeScalars.map { $0.isASCII ? $0 : "_" }))
            disposition += "\(quotedFilename(fallback)); filename*=UTF-8''\(extendedValue(name))"
        }
        return (RequestBody(segments: [file.segment]), file.contentType, disposition)
    }

    /// RFC 8187's ext-value characters: the name's UTF-8 with every byte but
    /// an attr-char percent-encoded.
    static func extendedValue(_ name: String) -> String {
        let hex = Array("0123456789ABCDEF".unicodeScalars)
        var output = String.UnicodeScalarView()
        for byte in name.utf8 {
            let scalar = Unicode.Scalar(byte)
            if isAttrChar(byte) {
                output.append(scalar)
            } else {
                output.append("%")
                output.append(hex[Int(byte >> 4)])
                output.append(hex[Int(byte & 0x0F)])
            }
        }
        return String(output)
    }

    /// RFC 8187 attr-char: ALPHA, DIGIT and `!#$&+-.^_`|~`.
    private static func isAttrChar(_ byte: UInt8) -> Bool {
        Validation.isASCIIAlphanumeric(byte) || "!#$&+-.^_`|~".utf8.contains(byte)
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

/// `upload_json` of `dl_upload_multipart`:
/// `{"activity": {...}?, "files": [{"path" | "dataBase64", "contentType"?, "filename"?}]}`.
/// Every file is opened or decoded here, before anything is sent.
struct MultipartUpload {
    var files: [Uploads.File]
    /// The activity (3.0) or message (1.1) part, not yet checked against
    /// the protocol's rules (that needs the conversation's version).
    var activity: JSONObject?

    init(json: JSONValue) throws(DirectLineError) {
        let reader = try JSONReader(json, context: "upload")
        try reader.rejectUnknownKeys(["activity", "files"])
        guard let fileValues = reader.object["files"]?.arrayValue, !fileValues.isEmpty else {
            throw .invalidArgument("upload needs a non-empty \"files\" array")
        }
        files = []
        for (index, value) in fileValues.enumerated() {
            files.append(try Self.file(value, context: "upload.files[\(index)]"))
        }
        activity = try reader.object("activity")?.object
    }

    private static func file(_ value: JSONValue, context: String) throws(DirectLineError) -> Uploads.File {
        let reader = try JSONReader(value, context: context)
        try reader.rejectUnknownKeys(["path", "dataBase64", "contentType", "filename"])
        let contentType = try reader.string("contentType")
        let filename = try reader.string("filename")
        switch (try reader.string("path"), try reader.string("dataBase64")) {
        case let (path?, nil):
            return try .onDisk(path: path, pathName: "\(context).path", contentType: contentType, filename: filename)
        case let (nil, data?):
            guard let bytes = Base64.decode(data) else { throw .invalidArgument("\(context).dataBase64 is not valid base64") }
            return try .inMemory(bytes, contentType: contentType, filename: filename)
        default:
            throw .invalidArgument("\(context) needs exactly one of \"path\" and \"dataBase64\"")
        }
    }
}

extension Conversation {
    /// `dl_upload_file` and `dl_upload_bytes`: one raw attachment.
    func upload(userId: String, file: Uploads.File) throws(DirectLineError) -> SendResult {
        let (body, contentType, disposition) = Uploads.raw(file)
        return try upload(userId: userId, body: body, contentType: contentType, disposition: disposition,
                          clientActivityID: nil)
    }

    /// `dl_upload_multipart`: the files and, when given, the activity that
    /// carries them, as one multipart/form-data request.
    func upload(userId: String, multipart: MultipartUpload) throws(DirectLineError) -> SendResult {
        var activityBytes: [UInt8]?
        var clientActivityID: String?
        if let activity = multipart.activity {
            let outgoing = try OutgoingActivity(Self.completed(activity, userId: userId, version: client.version),
                                                version: client.version)
            activityBytes = try outgoing.serializedBody()
            clientActivityID = outgoing.clientActivityID
        }
        let partType = client.version == .v3 ? "application/vnd.microsoft.activity" : "application/vnd.microsoft.bot.message"
        let (body, contentType) = Uploads.multipart(files: multipart.files, activity: activityBytes, activityType: partType)
        return try upload(userId: userId, body: body, contentType: contentType, disposition: nil,
                          clientActivityID: clientActivityID)
    }

    /// An upload's activity may leave out what the upload already says:
    /// `from` defaults to the uploading user, and a 3.0 `type` to "message".
    private static func completed(_ activity: JSONObject, userId: String, version: ProtocolVersion) -> JSONValue {
        var activity = activity
        switch version {
        case .v3:
            if activity["type"] == nil { activity["type"] = .string("message") }
            if activity["from"] == nil { activity["from"] = .object(JSONObject([("id", .string(userId))])) }
        case .v1:
            if activity["from"] == nil { activity["from"] = .string(userId) }
        }
        return .object(activity)
    }

    /// Refuses an upload body over the client's `maxUploadBytes`.
    func checkUploadSize(_ length: Int64) throws(DirectLineError) {
        let limit = client.config.maxUploadBytes
        guard length <= limit else {
            throw DirectLineError(.tooLarge,
                                  "the upload is \(length) bytes; the limit is \(limit) (config maxUploadBytes; the service accepts about 4 MB)")
        }
    }

    private func upload(userId: String, body: RequestBody, contentType: String, disposition: String?,
                        clientActivityID: String?) throws(DirectLineError) -> SendResult {
        try checkUploadSize(body.length)
        let token = tokenForSend(recordingSender: userId, clientActivityID: clientActivityID)
        defer { noteSent() }
        let response = try post(client.requests.upload(conversationId: conversationID, userId: userId, body: body,
                                                       contentType: contentType, disposition: disposition,
                                                       bearer: token),
                                clientActivityID: clientActivityID)
        return try result(of: response, clientActivityID: clientActivityID, what: "upload")
    }
}
