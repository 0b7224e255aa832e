/// The outcome of every library call, as its code and the C name that
/// `Status` gives it in the header (CABI/CEnums.swift holds that C
/// face and its documentation; a test checks that the two agree).
/// Codes are only ever appended, never renumbered.
enum Status: Int32, CaseIterable, Sendable {
    case ok = 0
    case invalidArgument = 1
    case invalidHandle = 2
    case tooLarge = 3
    case io = 4
    case network = 5
    case timeout = 6
    case tls = 7
    case badRequest = 8
    case unauthorized = 9
    case forbidden = 10
    case tokenExpired = 11
    case notFound = 12
    case conflict = 13
    case throttled = 14
    case bot = 15
    case service = 16
    case http = 17
    case protocolViolation = 18
    case cancelled = 19
    case reentrant = 20
    case internalError = 21
    case unsupported = 22

    /// The code's C name, e.g. "DL_ERR_BOT".
    var name: String {
        switch self {
        case .ok: "DL_OK"
        case .invalidArgument: "DL_ERR_INVALID_ARGUMENT"
        case .invalidHandle: "DL_ERR_INVALID_HANDLE"
        case .tooLarge: "DL_ERR_TOO_LARGE"
        case .io: "DL_ERR_IO"
        case .network: "DL_ERR_NETWORK"
        case .timeout: "DL_ERR_TIMEOUT"
        case .tls: "DL_ERR_TLS"
        case .badRequest: "DL_ERR_BAD_REQUEST"
        case .unauthorized: "DL_ERR_UNAUTHORIZED"
        case .forbidden: "DL_ERR_FORBIDDEN"
        case .tokenExpired: "DL_ERR_TOKEN_EXPIRED"
        case .notFound: "DL_ERR_NOT_FOUND"
        case .conflict: "DL_ERR_CONFLICT"
        case .throttled: "DL_ERR_THROTTLED"
        case .bot: "DL_ERR_BOT"
        case .service: "DL_ERR_SERVICE"
        case .http: "DL_ERR_HTTP"
        case .protocolViolation: "DL_ERR_PROTOCOL"
        case .cancelled: "DL_ERR_CANCELLED"
        case .reentrant: "DL_ERR_REENTRANT"
        case .internalError: "DL_ERR_INTERNAL"
        case .unsupported: "DL_ERR_UNSUPPORTED"
        }
    }
}
