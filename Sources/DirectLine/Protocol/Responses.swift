/// Who a request is for. The same HTTP status means different things for
/// the two: 1.1 reports the bot's failure on a send as 500.
enum Recipient: Sendable {
    /// Sends and uploads: the service hands them to the bot before it
    /// answers, so a failure may be the bot's.
    case bot
    /// Everything else: the service answers by itself.
    case service
}

enum Responses {
    /// The response's body as a JSON value, or a protocol error.
    static func json(_ response: HTTPResponse, what: String) throws(DirectLineError) -> JSONValue {
        do {
            return try JSONParser.parse(bytes: response.body)
        } catch {
            throw notJSON(error, response, what: what)
        }
    }

    /// The response's body checked as JSON and read in place (`RawJSON`),
    /// or a protocol error: for answers that may be large (pages).
    static func checkedJSON(_ response: HTTPResponse, what: String) throws(DirectLineError) -> RawJSON {
        do {
            return try JSONParser.validate(bytes: response.body)
        } catch {
            throw notJSON(error, response, what: what)
        }
    }

    private static func notJSON(_ error: JSONParseError, _ response: HTTPResponse, what: String) -> DirectLineError {
        protocolError("the service's answer to \(what) is not valid JSON (\(error.message) at byte \(error.offset))", response)
    }

    static func protocolError(_ message: String, _ response: HTTPResponse) -> DirectLineError {
        var error = DirectLineError(.protocolViolation, message, delivery: .unknown)
        error.httpStatus = response.status
        error.attempts = response.attempts
        return error
    }

    /// Maps a non-success response to its status, with the service's code
    /// and message and whether the request may have been processed.
    static func failure(_ response: HTTPResponse, reaching recipient: Recipient,
                        version: ProtocolVersion) -> DirectLineError {
        let (code, serviceMessage) = serviceError(response.body)
        let status: Status
        var delivery = Delivery.notSent
        switch response.status {
        case 400: status = .badRequest
        case 401: status = .unauthorized
        case 403: status = code == "TokenExpired" ? .tokenExpired : .forbidden
        case 404: status = .notFound
        case 409: status = .conflict
        case 413: status = .tooLarge
        case 429: status = .throttled
        case 500 where version == .v1 && recipient == .bot:
            status = .bot
            delivery = .unknown
        case 502:
            status = .bot
            delivery = .unknown
        case 503:
            // Only the service's own 503 proves nothing was processed.
            status = .service
            if code == nil { delivery = .unknown }
        case 500...599:
            status = .service
            delivery = .unknown
        case 408:
            // The server gave up waiting for the request: it may have seen it.
            status = .http
            delivery = .unknown
        case 400...499:
            // Any other 4xx refuses the request.
            status = .http
        default:
            status = .http
            delivery = .unknown
        }
        var message = "\(describe(status)) (HTTP \(response.status)"
        if let code { message += " \(code)" }
        message += ")"
        var error = DirectLineError(status, message, delivery: delivery)
        error.httpStatus = response.status
        error.serviceCode = code
        error.serviceMessage = serviceMessage
        error.attempts = response.attempts
        error.retryAfterMs = response.retryAfterMs
        return error
    }

    private static func describe(_ status: Status) -> String {
        switch status {
        case .badRequest: "the service refused the request as malformed"
        case .unauthorized: "the service refused the credentials"
        case .forbidden: "the service forbade the request"
        case .tokenExpired: "the token has expired; start a new conversation or refresh before expiry"
        case .notFound: "the service does not know this conversation or path"
        case .conflict: "the conversation already exists"
        case .tooLarge: "the service refused the request as too large"
        case .throttled: "the service is throttling requests, still after the retries allowed"
        case .bot: "the bot returned an error or timed out"
        case .service: "the service failed"
        default: "the service answered with an unexpected status"
        }
    }

    /// Whether the service itself refused the request unprocessed: 429, or
    /// 503 with the service's error JSON. A bare 502, 503 or 504 may come
    /// from a gateway after it forwarded the request: not a refusal.
    @Sendable static func isServiceRefusal(_ response: HTTPResponse) -> Bool {
        response.status == 429 || (response.status == 503 && serviceError(response.body).code != nil)
    }

    /// `{"error": {"code": "...", "message": "..."}}`, tolerating anything else.
    static func serviceError(_ body: [UInt8]) -> (code: String?, message: String?) {
        guard body.count <= 65_536, let value = try? JSONParser.parse(bytes: body),
              let error = value.objectValue?["error"]?.objectValue else { return (nil, nil) }
        return (error["code"]?.stringValue, error["message"]?.stringValue)
    }
}

