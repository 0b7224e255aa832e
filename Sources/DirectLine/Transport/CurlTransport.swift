import CCurl
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// libcurl is initialised once per process, on first use, before any
/// handle exists (Swift runs a global's initialiser exactly once).
private let curlGlobalInit: CURLcode = curl_global_init(Int(CURL_GLOBAL_DEFAULT))

/// Sends requests for one client over a pool of libcurl easy handles.
///
/// A handle keeps its connection alive between requests, so a client's
/// sequential calls share one TCP connection; concurrent calls each take
/// their own handle from the pool. No lock is held while a request runs.
final class CurlTransport: Sendable {
    /// The most idle handles (and so idle connections) a client keeps.
    static let maxIdleHandles = 16
    /// A response body larger than this is refused as a protocol error.
    static let maxResponseBytes = 64 * 1024 * 1024

    private let config: TransportConfig
    private let idleHandles = Mutex<[EasyHandle]>([])

    init(config: TransportConfig) {
        self.config = config
    }

    /// Sends the request, retrying only where it provably was not processed
    /// (connect or DNS failure, 429, 503). Any HTTP status is returned as a
    /// response; transport failures are thrown.
    func send(_ request: HTTPRequest) throws(DirectLineError) -> HTTPResponse {
        let policy = config.retry
        var attempt = 1
        while true {
            let outcome: Result<HTTPResponse, DirectLineError>
            do throws(DirectLineError) {
                outcome = .success(try sendOnce(request, attempt: attempt))
            } catch {
                outcome = .failure(error)
            }
            let retryAfterMs: Int?
            switch outcome {
            case .success(let response):
                guard response.status == 429 || response.status == 503, attempt < policy.maxAttempts else {
                    return response
                }
                retryAfterMs = response.header("Retry-After").flatMap {
                    RetryAfter.milliseconds($0, now: Int(time(nil)))
                }
            case .failure(let error):
                guard error.retryable, attempt < policy.maxAttempts else { throw error }
                retryAfterMs = nil
            }
            sleepMilliseconds(Backoff.delay(attempt: attempt, retryAfterMs: retryAfterMs, policy: policy))
            attempt += 1
        }
    }

    private func sendOnce(_ request: HTTPRequest, attempt: Int) throws(DirectLineError) -> HTTPResponse {
        guard curlGlobalInit == CURLE_OK else { throw .internal("libcurl could not be initialised") }
        let handle = try checkOut()
        defer { checkIn(handle) }
        return try handle.perform(request, config: config, attempt: attempt)
    }

    private func checkOut() throws(DirectLineError) -> EasyHandle {
        if let handle = idleHandles.withLock({ $0.popLast() }) { return handle }
        guard let handle = EasyHandle() else { throw .internal("libcurl could not create a handle") }
        return handle
    }

    private func checkIn(_ handle: EasyHandle) {
        idleHandles.withLock { idle in
            if idle.count < Self.maxIdleHandles { idle.append(handle) }
        }
    }
}

/// What the transport needs from the client's configuration.
struct TransportConfig: Sendable {
    var baseURL: String
    var timeoutMs: Int
    var connectTimeoutMs: Int
    var retry: RetryPolicy
    var userAgent: String
    var caFile: String?
    var proxy: String?
    var insecureSkipTlsVerify: Bool
}

enum Backoff {
    /// Retry-After when the service gave one (capped), else capped
    /// exponential backoff with full jitter.
    static func delay(attempt: Int, retryAfterMs: Int?, policy: RetryPolicy) -> Int {
        if let retryAfterMs { return min(retryAfterMs, policy.maxDelayMs) }
        let exponent = min(attempt - 1, 20)
        let ceiling = min(policy.baseDelayMs.multipliedReportingOverflow(by: 1 << exponent).partialValue, policy.maxDelayMs)
        guard ceiling > 0 else { return 0 }
        return Int.random(in: 0...ceiling)
    }
}

func sleepMilliseconds(_ milliseconds: Int) {
    guard milliseconds > 0 else { return }
    var request = timespec(tv_sec: milliseconds / 1000, tv_nsec: (milliseconds % 1000) * 1_000_000)
    var remaining = timespec()
    while nanosleep(&request, &remaining) != 0 && errno == EINTR { request = remaining }
}

/// One libcurl easy handle with the buffers a transfer writes into.
/// Used by one thread at a time (the pool guarantees it).
private final class EasyHandle: @unchecked Sendable {
    let curl: UnsafeMutableRawPointer

    init?() {
        guard let curl = curl_easy_init() else { return nil }
        self.curl = curl
    }

    deinit { curl_easy_cleanup(curl) }

    func perform(_ request: HTTPRequest, config: TransportConfig, attempt: Int) throws(DirectLineError) -> HTTPResponse {
        curl_easy_reset(curl)
        let sink = ResponseSink(limit: CurlTransport.maxResponseBytes)
        var headers: UnsafeMutablePointer<curl_slist>?
        defer { curl_slist_free_all(headers) }
        let sinkPointer = Unmanaged.passUnretained(sink).toOpaque()

        var url = config.baseURL + request.path
        for (index, item) in request.query.enumerated() {
            url += (index == 0 ? "?" : "&") + Validation.percentEncoded(item.name) + "=" + Validation.percentEncoded(item.value)
        }
        // "Expect:" and a bare "Content-Type:" remove libcurl's defaults
        // (100-continue, and a form content type on bodiless POSTs).
        let headerLines = ["Authorization: Bearer \(request.bearer)", "Accept: application/json", "Expect:",
                           "Content-Type: \(request.contentType ?? "")"]
        for line in headerLines { headers = curl_slist_append(headers, line) }

        var failed = false
        func set(_ result: CURLcode) { if result != CURLE_OK { failed = true } }
        set(dl_curl_set_string(curl, CURLOPT_URL, url))
        set(dl_curl_set_string(curl, CURLOPT_PROTOCOLS_STR, "http,https"))
        set(dl_curl_set_long(curl, CURLOPT_NOSIGNAL, 1))
        set(dl_curl_set_long(curl, CURLOPT_FOLLOWLOCATION, 0))
        set(dl_curl_set_long(curl, CURLOPT_TIMEOUT_MS, config.timeoutMs))
        set(dl_curl_set_long(curl, CURLOPT_CONNECTTIMEOUT_MS, config.connectTimeoutMs))
        set(dl_curl_set_string(curl, CURLOPT_USERAGENT, config.userAgent))
        // An empty proxy string turns off libcurl's reading of *_proxy
        // environment variables: proxies are used only when configured.
        set(dl_curl_set_string(curl, CURLOPT_PROXY, config.proxy ?? ""))
        if let caFile = config.caFile { set(dl_curl_set_string(curl, CURLOPT_CAINFO, caFile)) }
        set(dl_curl_set_long(curl, CURLOPT_SSL_VERIFYPEER, config.insecureSkipTlsVerify ? 0 : 1))
        set(dl_curl_set_long(curl, CURLOPT_SSL_VERIFYHOST, config.insecureSkipTlsVerify ? 0 : 2))
        set(dl_curl_set_slist(curl, CURLOPT_HTTPHEADER, headers))
        set(dl_curl_set_data_fn(curl, CURLOPT_WRITEFUNCTION, writeCallback))
        set(dl_curl_set_pointer(curl, CURLOPT_WRITEDATA, sinkPointer))
        set(dl_curl_set_data_fn(curl, CURLOPT_HEADERFUNCTION, headerCallback))
        set(dl_curl_set_pointer(curl, CURLOPT_HEADERDATA, sinkPointer))
        guard !failed else { throw .internal("libcurl refused a transfer option") }

        let source = BodySource(request.body)
        let sourcePointer = Unmanaged.passUnretained(source).toOpaque()
        switch request.method {
        case .get:
            set(dl_curl_set_long(curl, CURLOPT_HTTPGET, 1))
        case .post:
            // The body goes through a read callback, not POSTFIELDS, so that
            // libcurl cannot silently send it twice (see BodySource).
            set(dl_curl_set_long(curl, CURLOPT_POST, 1))
            set(dl_curl_set_off(curl, CURLOPT_POSTFIELDSIZE_LARGE, curl_off_t(request.body.count)))
            set(dl_curl_set_data_fn(curl, CURLOPT_READFUNCTION, readCallback))
            set(dl_curl_set_pointer(curl, CURLOPT_READDATA, sourcePointer))
            set(dl_curl_set_seek_fn(curl, seekCallback))
            set(dl_curl_set_pointer(curl, CURLOPT_SEEKDATA, sourcePointer))
        }
        guard !failed else { throw .internal("libcurl refused a transfer option") }
        let code = curl_easy_perform(curl)
        withExtendedLifetime(source) {}
        withExtendedLifetime(sink) {}

        guard code == CURLE_OK else {
            var requestBytes = 0
            _ = dl_curl_get_long(curl, CURLINFO_REQUEST_SIZE, &requestBytes)
            var error = Self.error(for: code, requestSent: requestBytes > 0, responseOverflow: sink.overflow)
            error.attempts = attempt
            throw error
        }
        var status = 0
        _ = dl_curl_get_long(curl, CURLINFO_RESPONSE_CODE, &status)
        return HTTPResponse(status: status, headers: sink.headers, body: sink.body, attempts: attempt)
    }

    /// Maps a libcurl failure to a status and says whether the request may
    /// have reached the service.
    static func error(for code: CURLcode, requestSent: Bool, responseOverflow: Bool) -> DirectLineError {
        let detail = String(cString: curl_easy_strerror(code))
        let delivery: Delivery = requestSent ? .unknown : .notSent
        switch code {
        case CURLE_COULDNT_RESOLVE_HOST, CURLE_COULDNT_RESOLVE_PROXY, CURLE_COULDNT_CONNECT:
            var error = DirectLineError(.DL_ERR_NETWORK, "could not connect to the service: \(detail)")
            error.retryable = true
            return error
        case CURLE_OPERATION_TIMEDOUT:
            return DirectLineError(.DL_ERR_TIMEOUT, "the request timed out: \(detail)", delivery: delivery)
        case CURLE_SSL_CONNECT_ERROR, CURLE_PEER_FAILED_VERIFICATION, CURLE_SSL_CERTPROBLEM,
             CURLE_SSL_CIPHER, CURLE_SSL_CACERT_BADFILE, CURLE_SSL_ISSUER_ERROR,
             CURLE_SSL_PINNEDPUBKEYNOTMATCH, CURLE_SSL_INVALIDCERTSTATUS, CURLE_SSL_CRL_BADFILE:
            return DirectLineError(.DL_ERR_TLS, "TLS failed: \(detail)")
        case CURLE_WRITE_ERROR where responseOverflow:
            return DirectLineError(.DL_ERR_PROTOCOL,
                                   "the response is larger than \(CurlTransport.maxResponseBytes) bytes",
                                   delivery: .unknown)
        case CURLE_SEND_FAIL_REWIND:
            return DirectLineError(.DL_ERR_NETWORK,
                                   "the connection closed after the request was sent; it was not sent again because it may have been processed",
                                   delivery: .unknown)
        case CURLE_ABORTED_BY_CALLBACK:
            return DirectLineError(.DL_ERR_CANCELLED, "the transfer was cancelled by a callback", delivery: delivery)
        case CURLE_UNSUPPORTED_PROTOCOL, CURLE_URL_MALFORMAT:
            return DirectLineError(.DL_ERR_INVALID_ARGUMENT, "the request URL was refused: \(detail)")
        case CURLE_OUT_OF_MEMORY, CURLE_FAILED_INIT, CURLE_BAD_FUNCTION_ARGUMENT:
            return DirectLineError(.DL_ERR_INTERNAL, "libcurl failed: \(detail)")
        default:
            return DirectLineError(.DL_ERR_NETWORK, "the connection failed: \(detail)", delivery: delivery)
        }
    }
}

/// Collects one transfer's response headers and body.
private final class ResponseSink {
    let limit: Int
    var body: [UInt8] = []
    var headers: [(name: String, value: String)] = []
    var overflow = false

    init(limit: Int) { self.limit = limit }
}

/// A request body handed to libcurl piece by piece.
///
/// libcurl resends a request on its own when a reused connection turns out
/// to be closed; for a POST whose body already left, that could deliver an
/// activity twice. The seek callback therefore allows a rewind only while
/// no byte has been handed out, and otherwise fails the transfer
/// (CURLE_SEND_FAIL_REWIND), which is reported with delivery "unknown".
private final class BodySource {
    let bytes: [UInt8]
    var offset = 0

    init(_ bytes: [UInt8]) { self.bytes = bytes }
}

private let readCallback: dl_curl_data_fn = { buffer, size, count, userdata in
    guard let buffer, let userdata else { return 0 }
    let source = Unmanaged<BodySource>.fromOpaque(userdata).takeUnretainedValue()
    let (capacity, overflow) = size.multipliedReportingOverflow(by: count)
    guard !overflow else { return Int(CURL_READFUNC_ABORT) }
    let length = min(capacity, source.bytes.count - source.offset)
    guard length > 0 else { return 0 }
    let copied = source.bytes.withUnsafeBytes { bytes -> Bool in
        guard let base = bytes.baseAddress else { return false }
        UnsafeMutableRawPointer(buffer).copyMemory(from: base + source.offset, byteCount: length)
        return true
    }
    guard copied else { return Int(CURL_READFUNC_ABORT) }
    source.offset += length
    return length
}

private let seekCallback: dl_curl_seek_fn = { userdata, offset, origin in
    guard let userdata else { return CURL_SEEKFUNC_FAIL }
    let source = Unmanaged<BodySource>.fromOpaque(userdata).takeUnretainedValue()
    guard source.offset == 0, offset == 0, origin == SEEK_SET else { return CURL_SEEKFUNC_FAIL }
    return CURL_SEEKFUNC_OK
}

private let writeCallback: dl_curl_data_fn = { buffer, size, count, userdata in
    guard let buffer, let userdata else { return 0 }
    let sink = Unmanaged<ResponseSink>.fromOpaque(userdata).takeUnretainedValue()
    let (total, overflow) = size.multipliedReportingOverflow(by: count)
    guard !overflow, total <= sink.limit - sink.body.count else {
        sink.overflow = true
        return 0
    }
    let bytes = UnsafeRawBufferPointer(start: buffer, count: total)
    sink.body.append(contentsOf: bytes)
    return total
}

private let headerCallback: dl_curl_data_fn = { buffer, size, count, userdata in
    guard let buffer, let userdata else { return 0 }
    let sink = Unmanaged<ResponseSink>.fromOpaque(userdata).takeUnretainedValue()
    let (total, overflow) = size.multipliedReportingOverflow(by: count)
    guard !overflow else { return 0 }
    let line = String(decoding: UnsafeRawBufferPointer(start: buffer, count: total), as: UTF8.self)
    if line.hasPrefix("HTTP/") {
        // A new response begins (after a 1xx, or a proxy's CONNECT answer).
        sink.headers.removeAll()
    } else if let colon = line.firstIndex(of: ":") {
        let name = String(line[..<colon])
        let value = String(line[line.index(after: colon)...]).trimmingASCIIWhitespace
        guard sink.headers.count < 200 else { return total }
        sink.headers.append((name, value))
    }
    return total
}
