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
                retryAfterMs = response.retryAfterMs
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
        let headerLines: [String] = ["Authorization: Bearer \(request.bearer)", "Accept: application/json", "Expect:",
                           "Content-Type: \(request.contentType ?? "")"]
            + request.headers.map { "\($0.name): \($0.value)" }
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

        let transfer = TransferState(source: BodySource(request.body), progress: request.progress)
        let transferPointer = Unmanaged.passUnretained(transfer).toOpaque()
        switch request.method {
        case .get:
            set(dl_curl_set_long(curl, CURLOPT_HTTPGET, 1))
        case .post:
            // The body goes through a read callback, not POSTFIELDS, so that
            // libcurl cannot silently send it twice (see BodySource).
            set(dl_curl_set_long(curl, CURLOPT_POST, 1))
            set(dl_curl_set_off(curl, CURLOPT_POSTFIELDSIZE_LARGE, curl_off_t(request.body.length)))
            set(dl_curl_set_data_fn(curl, CURLOPT_READFUNCTION, readCallback))
            set(dl_curl_set_pointer(curl, CURLOPT_READDATA, transferPointer))
            set(dl_curl_set_seek_fn(curl, seekCallback))
            set(dl_curl_set_pointer(curl, CURLOPT_SEEKDATA, transferPointer))
            if request.body.length > 65_536 {
                set(dl_curl_set_long(curl, CURLOPT_UPLOAD_BUFFERSIZE, 512 * 1024))
            }
        }
        if request.progress != nil {
            set(dl_curl_set_long(curl, CURLOPT_NOPROGRESS, 0))
            set(dl_curl_set_xferinfo_fn(curl, progressCallback))
            set(dl_curl_set_pointer(curl, CURLOPT_XFERINFODATA, transferPointer))
        }
        guard !failed else { throw .internal("libcurl refused a transfer option") }
        let code = curl_easy_perform(curl)
        withExtendedLifetime(transfer) {}
        withExtendedLifetime(sink) {}

        guard code == CURLE_OK else {
            var requestBytes = 0
            _ = dl_curl_get_long(curl, CURLINFO_REQUEST_SIZE, &requestBytes)
            // A body cut short cannot be processed by the service.
            let bodyComplete = transfer.source.bytesHandedOut >= request.body.length
            var error: DirectLineError
            if let fileError = transfer.source.fileError {
                error = DirectLineError(.DL_ERR_IO, fileError)
            } else if transfer.cancelled {
                error = DirectLineError(.DL_ERR_CANCELLED, "the progress callback cancelled the transfer",
                                        delivery: bodyComplete ? .unknown : .notSent)
            } else {
                error = Self.error(for: code, requestSent: requestBytes > 0, responseOverflow: sink.overflow)
            }
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
        case CURLE_UNSUPPORTED_PROTOCOL, CURLE_URL_MALFORMAT:
            return DirectLineError(.DL_ERR_INVALID_ARGUMENT, "the request URL was refused: \(detail)")
        case CURLE_OUT_OF_MEMORY, CURLE_FAILED_INIT, CURLE_BAD_FUNCTION_ARGUMENT:
            return DirectLineError(.DL_ERR_INTERNAL, "libcurl failed: \(detail)")
        default:
            return DirectLineError(.DL_ERR_NETWORK, "the connection failed: \(detail)", delivery: delivery)
        }
    }
}

/// One transfer's body source and progress reporting, shared with the
/// libcurl callbacks through their userdata pointer.
private final class TransferState {
    let source: BodySource
    let progress: ProgressReporter?
    private(set) var cancelled = false
    private var lastReported: UInt64?

    init(source: BodySource, progress: ProgressReporter?) {
        self.source = source
        self.progress = progress
    }

    /// Tells the caller how much of the body left; false cancels.
    func reportProgress(uploaded: UInt64) -> Bool {
        guard let progress, !cancelled else { return !cancelled }
        let total = UInt64(source.body.length)
        let done = min(uploaded, total)
        guard done != lastReported else { return true }
        lastReported = done
        if !progress.report(done, total) { cancelled = true }
        return !cancelled
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

private let readCallback: dl_curl_data_fn = { buffer, size, count, userdata in
    guard let buffer, let userdata else { return Int(CURL_READFUNC_ABORT) }
    let transfer = Unmanaged<TransferState>.fromOpaque(userdata).takeUnretainedValue()
    let (capacity, overflow) = size.multipliedReportingOverflow(by: count)
    guard !overflow else { return Int(CURL_READFUNC_ABORT) }
    let read = transfer.source.read(into: UnsafeMutableRawBufferPointer(start: buffer, count: capacity))
    return read < 0 ? Int(CURL_READFUNC_ABORT) : read
}

private let seekCallback: dl_curl_seek_fn = { userdata, offset, origin in
    guard let userdata, origin == SEEK_SET else { return CURL_SEEKFUNC_FAIL }
    let transfer = Unmanaged<TransferState>.fromOpaque(userdata).takeUnretainedValue()
    return transfer.source.rewindAllowed(to: Int64(offset)) ? CURL_SEEKFUNC_OK : CURL_SEEKFUNC_FAIL
}

private let progressCallback: dl_curl_xferinfo_fn = { userdata, _, _, _, uploaded in
    guard let userdata else { return 0 }
    let transfer = Unmanaged<TransferState>.fromOpaque(userdata).takeUnretainedValue()
    return transfer.reportProgress(uploaded: UInt64(max(0, uploaded))) ? 0 : 1
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
    // Works on the bytes: this runs for every header line of every response.
    let line = UnsafeRawBufferPointer(start: buffer, count: total)
    if total >= 5 && memcmp(buffer, "HTTP/", 5) == 0 {
        // A new response begins (after a 1xx, or a proxy's CONNECT answer).
        sink.headers.removeAll()
    } else if let found = memchr(buffer, Int32(UInt8(ascii: ":")), total) {
        guard sink.headers.count < 200 else { return total }
        let colon = UnsafeRawPointer(found) - UnsafeRawPointer(buffer)
        func isSpace(_ byte: UInt8) -> Bool { byte == 0x20 || byte == 0x09 || byte == 0x0D || byte == 0x0A }
        var start = colon + 1
        var end = total
        while start < end && isSpace(line[start]) { start += 1 }
        while end > start && isSpace(line[end - 1]) { end -= 1 }
        sink.headers.append((String(decoding: UnsafeRawBufferPointer(rebasing: line[..<colon]), as: UTF8.self),
                             String(decoding: UnsafeRawBufferPointer(rebasing: line[start..<end]), as: UTF8.self)))
    }
    return total
}
