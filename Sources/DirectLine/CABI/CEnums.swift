/// Status codes returned by every libdirectline operation.
///
/// Codes are only ever appended, never renumbered. `dl_status_name` gives a
/// code's name; the error JSON written to `out_json` carries the same code
/// and name with a human-readable message.
@c public enum dl_status: Int32, CaseIterable, Sendable {
    /// Success.
    case DL_OK = 0
    /// A bad pointer, invalid UTF-8, ill-formed JSON, JSON of the wrong shape,
    /// an unknown or bad option, or an unsafe id or header value. Nothing was sent.
    case DL_ERR_INVALID_ARGUMENT = 1
    /// An unknown, freed, forged or wrong-kind handle.
    case DL_ERR_INVALID_HANDLE = 2
    /// Over the activity or upload size limit (or HTTP 413); refused before sending.
    case DL_ERR_TOO_LARGE = 3
    /// A local file could not be read.
    case DL_ERR_IO = 4
    /// DNS, connect, reset or proxy failure.
    case DL_ERR_NETWORK = 5
    /// The connect or request timeout expired.
    case DL_ERR_TIMEOUT = 6
    /// TLS handshake or certificate verification failed.
    case DL_ERR_TLS = 7
    /// HTTP 400: the service found the request malformed.
    case DL_ERR_BAD_REQUEST = 8
    /// HTTP 401: missing or malformed credentials.
    case DL_ERR_UNAUTHORIZED = 9
    /// HTTP 403 other than an expired token.
    case DL_ERR_FORBIDDEN = 10
    /// HTTP 403 with service code TokenExpired: refresh or start anew.
    case DL_ERR_TOKEN_EXPIRED = 11
    /// HTTP 404: unknown path or conversation.
    case DL_ERR_NOT_FOUND = 12
    /// HTTP 409: the conversation already exists.
    case DL_ERR_CONFLICT = 13
    /// HTTP 429, still after the retries allowed.
    case DL_ERR_THROTTLED = 14
    /// The bot failed or timed out: 502 (3.0, and 1.1), 500 on a 1.1 send.
    case DL_ERR_BOT = 15
    /// Any other 5xx from the service.
    case DL_ERR_SERVICE = 16
    /// Any other unexpected HTTP status.
    case DL_ERR_HTTP = 17
    /// The response is not what the protocol says.
    case DL_ERR_PROTOCOL = 18
    /// A progress callback asked to stop, or the handle was freed during a read
    /// (dl_conversation_wait(), dl_conversation_confirm(), dl_get_activities(),
    /// dl_conversation_next()), or unlistened during a blocked dl_conversation_next().
    case DL_ERR_CANCELLED = 19
    /// Called from inside one of this library's callbacks.
    case DL_ERR_REENTRANT = 20
    /// A bug in this library; please report it.
    case DL_ERR_INTERNAL = 21
    /// Not possible here: a WebSocket stream asked for where there is none
    /// (Direct Line 1.1, a libcurl without WebSocket support, or a build
    /// without the stream). Nothing was started or sent.
    case DL_ERR_UNSUPPORTED = 22
}

/// How much `dl_set_log_callback` reports. Each level includes the ones
/// above it.
@c public enum dl_log_level: Int32, Sendable {
    /// Logging off (the default).
    case DL_LOG_OFF = 0
    /// Calls that failed: transport failures, refreshes that stopped.
    case DL_LOG_ERROR = 1
    /// Retries and their delays, refreshes that will be tried again.
    case DL_LOG_WARN = 2
    /// One line per HTTP request: method, URL, status, time, sizes, attempt.
    case DL_LOG_INFO = 3
    /// libcurl's own trace of each transfer: connections, request and
    /// response headers (never bodies). `Authorization` values and `t=`
    /// query values are replaced with `[redacted]`.
    case DL_LOG_DEBUG = 4
}
