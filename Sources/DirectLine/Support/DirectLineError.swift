/// Whether a failed request may have reached the service.
enum Delivery: String, Sendable {
    /// The request provably never reached the service: safe to send again.
    case notSent = "not_sent"
    /// It may have been processed: sending again may duplicate it.
    case unknown = "unknown"
}

/// Every failure inside the library, as it is reported across the C ABI.
struct DirectLineError: Error, Sendable {
    var status: Status
    var message: String
    var httpStatus: Int?
    var serviceCode: String?
    var serviceMessage: String?
    var retryAfterMs: Int?
    var attempts: Int = 0
    var delivery: Delivery = .notSent
    /// 3.0 sends and uploads: the activity's correlation id, so that an
    /// unknown outcome can be reconciled with `dl_conversation_confirm`.
    var clientActivityID: String?
    /// Internal: the failure proves the request was not processed, so the
    /// transport may send it again.
    var retryable = false

    init(_ status: Status, _ message: String, delivery: Delivery = .notSent) {
        self.status = status
        self.message = message
        self.delivery = delivery
    }

    static func invalidArgument(_ message: String) -> DirectLineError {
        DirectLineError(.invalidArgument, message)
    }

    static func internalError(_ message: String) -> DirectLineError {
        DirectLineError(.internalError, message)
    }

    /// The error with every credential in `secrets` (any the service or a
    /// transport message might echo back) replaced by "[redacted]".
    func redacting(_ secrets: [String]) -> DirectLineError {
        func clean(_ text: String) -> String {
            var text = text
            for secret in secrets where secret.count >= 4 {
                text = text.replacingAll(secret, with: "[redacted]")
            }
            return text
        }
        var error = self
        error.message = clean(message)
        error.serviceCode = serviceCode.map(clean)
        error.serviceMessage = serviceMessage.map(clean)
        return error
    }

    /// The error JSON of API.md: `{"error": {...}}`.
    var json: JSONValue {
        var error = JSONObject()
        error["status"] = .integer(status.rawValue)
        error["name"] = .string(status.name)
        error["message"] = .string(message)
        if let httpStatus { error["httpStatus"] = .integer(httpStatus) }
        if let serviceCode { error["serviceCode"] = .string(serviceCode) }
        if let serviceMessage { error["serviceMessage"] = .string(serviceMessage) }
        error["retryAfterMs"] = retryAfterMs.map { .integer($0) } ?? .null
        error["attempts"] = .integer(attempts)
        error["delivery"] = .string(delivery.rawValue)
        if let clientActivityID { error["clientActivityID"] = .string(clientActivityID) }
        return .object(JSONObject([("error", .object(error))]))
    }
}
