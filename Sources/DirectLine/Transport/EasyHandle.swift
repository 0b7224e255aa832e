import CCurl
#if canImport(Glibc)
import Glibc
#endif

/// One libcurl easy handle, configured once for its client.
///
/// Options that never change for the client (protocols, TLS, proxy, user
/// agent, callbacks, the response sink) are set when the handle is made;
/// a request sets only what differs from the previous one on this handle.
/// The URL and the header list are kept and reused when the next request
/// has the same ones, as a conversation's sends do, so libcurl does not
/// parse them again. Used by one thread at a time (the pool guarantees it).
final class EasyHandle: @unchecked Sendable {
    let curl: UnsafeMutableRawPointer
    /// The handle's own multi handle, which runs its blocking transfers
    /// (`perform`) and keeps their connections. A blocking perform could not
    /// be woken: driving the transfer here lets freeing the conversation wake
    /// the poll (curl_multi_wakeup) and abort at once. Made on the first
    /// blocking transfer (a handle that only runs on the transfer loop needs
    /// none, nor its two descriptors). Nil if libcurl could not make one;
    /// transfers then run in curl_easy_perform and a free is noticed at
    /// libcurl's next progress call, within about a second.
    private var ownMulti: UnsafeMutableRawPointer?
    private var ownMultiFailed = false
    /// The multi handle the running transfer is attached to (its own, or the
    /// transfer loop's), until `finish` detaches it.
    private var attachedTo: UnsafeMutableRawPointer?
    private let sink = ResponseSink(limit: CurlTransport.maxResponseBytes)
    /// Hidden from the trace; libcurl holds a pointer to it (DEBUGDATA).
    private let traceSecrets: TraceSecrets
    /// The running transfer's state, shared with the callbacks.
    private let transfer = TransferState()
    /// What the URL and the header list libcurl currently holds were made from.
    private var currentPath = ""
    private var currentURLIsPath = false
    private var currentBearer = ""
    private var currentContentType: String?
    private var currentExtraHeaders: [(name: String, value: String)] = []
    private var currentStreamed = false
    private var currentClientHeaders = true
    private var headerList: UnsafeMutablePointer<curl_slist>?
    private var progressOn = false
    private var traceOn = false
    private var largeUploadBuffer = false
    private var currentTimeouts: Timeouts?
    /// The User-Agent header line, when it goes in the header list.
    private var userAgentLine: String?

    static func proxied(_ config: TransportConfig) -> Bool { !(config.proxy ?? "").isEmpty }

    /// The process generation the handle was made in: a forked child
    /// starts a new one (`ProcessGeneration`).
    private let generation = ProcessGeneration.current

    /// Made before a fork(): its connections are the parent's too.
    var inherited: Bool { generation != ProcessGeneration.current }

    /// Lets go of a handle inherited from the parent without closing it:
    /// curl_easy_cleanup would end its connections (a TLS close_notify on a
    /// socket the parent still uses), so it is left as it is, for good.
    func abandon() {
        _ = Unmanaged.passRetained(self)
    }

    init?(config: TransportConfig) {
        guard let curl = curl_easy_init() else { return nil }
        self.curl = curl
        traceSecrets = TraceSecrets(config.traceSecrets)
        let sinkPointer = Unmanaged.passUnretained(sink).toOpaque()
        var failed = false
        func set(_ result: CURLcode) { if result != CURLE_OK { failed = true } }
        set(ccurl_set_string(curl, CURLOPT_PROTOCOLS_STR, "http,https"))
        set(ccurl_set_long(curl, CURLOPT_NOSIGNAL, 1))
        set(ccurl_set_long(curl, CURLOPT_FOLLOWLOCATION, 0))
        // Without a proxy the user agent is one of the cached header lines:
        // CURLOPT_USERAGENT would have libcurl format it again for every
        // request. A proxy's CONNECT carries only CURLOPT_USERAGENT, so
        // with a proxy that option is used instead.
        if Self.proxied(config) {
            set(ccurl_set_string(curl, CURLOPT_USERAGENT, config.userAgent))
        } else if !config.userAgent.isEmpty {
            userAgentLine = "User-Agent: \(config.userAgent)"
        }
        // An empty proxy string turns off libcurl's reading of *_proxy
        // environment variables: proxies are used only when configured.
        set(ccurl_set_string(curl, CURLOPT_PROXY, config.proxy ?? ""))
        // An empty no-proxy list: no_proxy in the environment cannot route
        // requests around the configured proxy either.
        set(ccurl_set_string(curl, CURLOPT_NOPROXY, ""))
        if let caFile = config.caFile { set(ccurl_set_string(curl, CURLOPT_CAINFO, caFile)) }
        set(ccurl_set_long(curl, CURLOPT_SSL_VERIFYPEER, config.insecureSkipTlsVerify ? 0 : 1))
        set(ccurl_set_long(curl, CURLOPT_SSL_VERIFYHOST, config.insecureSkipTlsVerify ? 0 : 2))
        set(ccurl_set_data_fn(curl, CURLOPT_WRITEFUNCTION, writeCallback))
        set(ccurl_set_pointer(curl, CURLOPT_WRITEDATA, sinkPointer))
        set(ccurl_set_data_fn(curl, CURLOPT_READFUNCTION, readCallback))
        set(ccurl_set_seek_fn(curl, seekCallback))
        set(ccurl_set_xferinfo_fn(curl, progressCallback))
        set(ccurl_set_long(curl, CURLOPT_NOPROGRESS, 1))
        set(ccurl_set_prereq_fn(curl, prereqCallback))
        set(ccurl_set_opensocket_fn(curl, openSocketCallback))
        set(ccurl_set_pointer(curl, CURLOPT_DEBUGDATA, Unmanaged.passUnretained(traceSecrets).toOpaque()))
        let transferPointer = Unmanaged.passUnretained(transfer).toOpaque()
        for option in [CURLOPT_PREREQDATA, CURLOPT_READDATA, CURLOPT_SEEKDATA, CURLOPT_XFERINFODATA,
                       CURLOPT_OPENSOCKETDATA] {
            set(ccurl_set_pointer(curl, option, transferPointer))
        }
        // A failed initializer of a class still runs deinit, which cleans up
        // (cleaning up here as well would free the handle twice).
        guard !failed else { return nil }
    }

    deinit {
        curl_slist_free_all(headerList)
        // One made before a fork(): its connections are the parent's too, and
        // cleaning up would end them (see `abandon`).
        guard !inherited else { return }
        // The multi handle holds the connections: it goes first.
        if let ownMulti { curl_multi_cleanup(ownMulti) }
        curl_easy_cleanup(curl)
    }

    /// Bodies up to this size are sent from memory together with the headers.
    static let maxInlineBody = 1 << 20

    /// What `finish` needs of the transfer `prepare` set up.
    struct Prepared {
        /// The body libcurl sends from memory (POSTFIELDS), or nil when it is
        /// streamed through the read callback.
        let inMemory: [UInt8]?
        let attempt: Int
        /// When the transfer was prepared (ns), for the info log; 0 when
        /// that is not wanted.
        let startedNs: UInt64
    }

    /// Runs one attempt of `request` to its end on this thread: `prepare`,
    /// the transfer on the handle's own multi handle, `finish`.
    func perform(_ request: HTTPRequest, config: TransportConfig, timeouts: Timeouts,
                 attempt: Int) throws(DirectLineError) -> HTTPResponse {
        let prepared = try prepare(request, config: config, timeouts: timeouts, attempt: attempt)
        let code: CURLcode
        if request.method == .post, let inMemory = prepared.inMemory {
            // libcurl reads the bytes in place; they stay alive and unmoved
            // for the whole transfer.
            code = inMemory.withUnsafeBytes { bytes in
                let base = bytes.baseAddress.map { UnsafeMutableRawPointer(mutating: $0) }
                guard ccurl_set_pointer(curl, CURLOPT_POSTFIELDS, base ?? emptyBody) == CURLE_OK else {
                    return CURLE_FAILED_INIT
                }
                return run(cancellation: request.cancellation)
            }
        } else {
            code = run(cancellation: request.cancellation)
        }
        return try finish(request, prepared, code: code, config: config)
    }

    /// Prepares the transfer of one attempt for another thread's multi
    /// handle (the transfer loop): as `perform` does, except that a body
    /// sent from memory is copied into libcurl (the request's bytes could
    /// not be pinned for a transfer that outlives this call). Then
    /// `attach(to:)`, run, and `finish` with libcurl's result.
    func prepareDetached(_ request: HTTPRequest, config: TransportConfig, timeouts: Timeouts,
                         attempt: Int) throws(DirectLineError) -> Prepared {
        let prepared = try prepare(request, config: config, timeouts: timeouts, attempt: attempt)
        if request.method == .post, let inMemory = prepared.inMemory {
            let set = inMemory.withUnsafeBytes { bytes -> CURLcode in
                guard let base = bytes.baseAddress, !bytes.isEmpty else {
                    return ccurl_set_pointer(curl, CURLOPT_POSTFIELDS, emptyBody)
                }
                return ccurl_set_pointer(curl, CURLOPT_COPYPOSTFIELDS, UnsafeMutableRawPointer(mutating: base))
            }
            guard set == CURLE_OK else {
                transfer.end()
                throw .internalError("libcurl could not take the request body")
            }
        }
        return prepared
    }

    /// Sets every option of `request` on the handle; the transfer itself is
    /// started by the caller. A POST body held in memory is left to the
    /// caller (POSTFIELDS), which `finish` clears again.
    private func prepare(_ request: HTTPRequest, config: TransportConfig, timeouts: Timeouts,
                         attempt: Int) throws(DirectLineError) -> Prepared {
        sink.reset()
        var failed = false
        func set(_ result: CURLcode) { if result != CURLE_OK { failed = true } }

        // The URL and headers libcurl holds are compared with the request's
        // parts first, so a conversation's repeated sends build neither.
        if request.query.isEmpty ? request.path != currentPath || !currentURLIsPath : true {
            set(ccurl_set_string(curl, CURLOPT_URL, config.url(for: request)))
            currentPath = request.path
            currentURLIsPath = request.query.isEmpty && !failed
        }
        // A body held in memory goes out with the request's headers, in one
        // write (CURLOPT_POSTFIELDS); files and large bodies are streamed
        // through the read callback. Either way libcurl must not send a POST
        // twice on its own: see `prereqCallback` and `BodySource`.
        let inMemory = request.body.inMemoryBytes.flatMap { $0.count <= Self.maxInlineBody ? $0 : nil }
        // libcurl asks for 100-continue only before a streamed body of over
        // 1 MiB, so "Expect:" (which turns that off) is listed only for
        // streamed bodies: each header line costs libcurl work per request.
        let streamed = request.method == .post && inMemory == nil
        let headersMatch = headerList != nil && request.bearer == currentBearer && streamed == currentStreamed
            && request.contentType == currentContentType && request.headers.elementsEqual(currentExtraHeaders, by: ==)
            && request.carriesClientHeaders == currentClientHeaders
        if !headersMatch {
            // A bare "Content-Type:" removes libcurl's default form content
            // type on bodiless POSTs.
            var headerLines = request.bearer.isEmpty ? [] : ["Authorization: Bearer \(request.bearer)"]
            headerLines += ["Accept: application/json", "Content-Type: \(request.contentType ?? "")", config.botAgentLine]
            if streamed { headerLines.append("Expect:") }
            if let userAgentLine { headerLines.append(userAgentLine) }
            if request.carriesClientHeaders { headerLines += config.extraHeaderLines }
            for header in request.headers { headerLines.append("\(header.name): \(header.value)") }
            let list = try curlHeaderList(headerLines)
            set(ccurl_set_slist(curl, CURLOPT_HTTPHEADER, list))
            curl_slist_free_all(headerList)
            headerList = list
            currentBearer = request.bearer
            currentContentType = request.contentType
            currentExtraHeaders = request.headers
            currentClientHeaders = request.carriesClientHeaders
            currentStreamed = streamed
        }
        if timeouts != currentTimeouts {
            set(ccurl_set_long(curl, CURLOPT_TIMEOUT_MS, timeouts.total))
            set(ccurl_set_long(curl, CURLOPT_CONNECTTIMEOUT_MS, timeouts.connect))
            currentTimeouts = failed ? nil : timeouts
        }
        switch request.method {
        case .get:
            set(ccurl_set_long(curl, CURLOPT_HTTPGET, 1))
        case .post:
            set(ccurl_set_long(curl, CURLOPT_POST, 1))
            // POSTFIELDS stays NULL unless set just around the transfer
            // (and cleared by `finish`), so a streamed body goes through
            // the read callback.
            set(ccurl_set_off(curl, CURLOPT_POSTFIELDSIZE_LARGE, curl_off_t(request.body.length)))
            let large = request.body.length > 65_536
            if large != largeUploadBuffer {
                set(ccurl_set_long(curl, CURLOPT_UPLOAD_BUFFERSIZE, large ? 512 * 1024 : 65_536))
                largeUploadBuffer = large
            }
        }
        let tracing = Log.wants(.debug)
        if tracing != traceOn {
            set(ccurl_set_long(curl, CURLOPT_VERBOSE, tracing ? 1 : 0))
            set(ccurl_set_debug_fn(curl, tracing ? debugCallback : nil))
            traceOn = tracing
        }
        let wantsProgress = request.progress != nil || request.cancellation != nil
        if wantsProgress != progressOn {
            set(ccurl_set_long(curl, CURLOPT_NOPROGRESS, wantsProgress ? 0 : 1))
            progressOn = wantsProgress
        }
        guard !failed else { throw .internalError("libcurl refused a transfer option") }
        transfer.start(source: inMemory == nil ? BodySource(request.body) : nil,
                       bodyLength: request.body.length, progress: request.progress,
                       cancellation: request.cancellation, refusesResend: request.method == .post)
        return Prepared(inMemory: inMemory, attempt: attempt, startedNs: Log.wants(.info) ? Clock.monotonicNs() : 0)
    }

    /// Adds the prepared transfer to `multi`, which then runs it; false when
    /// libcurl refused (then `finish` with CURLE_FAILED_INIT).
    func attach(to multi: UnsafeMutableRawPointer) -> Bool {
        guard curl_multi_add_handle(multi, curl) == CURLM_OK else { return false }
        attachedTo = multi
        return true
    }

    /// Turns libcurl's result of the prepared transfer into the response or
    /// the error, by the rules every transfer shares (what may have been
    /// delivered, the status of each libcurl failure, Retry-After), and ends
    /// the transfer: the handle leaves the multi handle it ran on and may
    /// take the next request.
    func finish(_ request: HTTPRequest, _ prepared: Prepared, code: CURLcode,
                config: TransportConfig) throws(DirectLineError) -> HTTPResponse {
        // The response's headers and counters are read before the handle
        // leaves its multi handle.
        defer {
            if let attachedTo { curl_multi_remove_handle(attachedTo, curl) }
            attachedTo = nil
            if request.method == .post, prepared.inMemory != nil {
                _ = ccurl_set_pointer(curl, CURLOPT_POSTFIELDS, nil)
            }
            transfer.end()
        }
        let attempt = prepared.attempt
        let started = prepared.startedNs
        guard code == CURLE_OK else {
            var requestBytes = 0
            _ = ccurl_get_long(curl, CURLINFO_REQUEST_SIZE, &requestBytes)
            // A body cut short cannot be processed by the service.
            let bodyComplete: Bool
            if prepared.inMemory != nil {
                var uploaded: curl_off_t = 0
                _ = ccurl_get_off(curl, CURLINFO_SIZE_UPLOAD_T, &uploaded)
                bodyComplete = requestBytes > 0 && Int64(uploaded) >= request.body.length
            } else {
                bodyComplete = (transfer.source?.bytesHandedOut ?? 0) >= request.body.length
            }
            var error: DirectLineError
            if let fileError = transfer.source?.fileError {
                error = DirectLineError(.io, fileError)
            } else if transfer.resendRefused {
                error = Self.error(for: CURLE_SEND_FAIL_REWIND, requestSent: true, responseOverflow: false)
            } else if let refusal = tunnelRefusal() {
                error = refusal
            } else if transfer.abandoned {
                error = DirectLineError(.cancelled, "the handle was freed while the request ran",
                                        delivery: requestBytes > 0 ? .unknown : .notSent)
            } else if transfer.cancelled {
                error = DirectLineError(.cancelled, "the progress callback cancelled the transfer",
                                        delivery: bodyComplete ? .unknown : .notSent)
            } else {
                error = Self.error(for: code, requestSent: requestBytes > 0, responseOverflow: sink.overflow,
                                   socketError: transfer.socketError)
            }
            // libcurl may have sent a GET again by itself on a fresh connection.
            error.attempts = attempt + max(0, transfer.starts - 1)
            if started != 0 {
                Log.emit(.info, "\(request.method.rawValue) \(config.loggedURL(for: request)) failed after \(Log.elapsed(since: started)) (attempt \(attempt)): \(error.message)")
            }
            throw error
        }
        var status = 0
        _ = ccurl_get_long(curl, CURLINFO_RESPONSE_CODE, &status)
        if started != 0 {
            Log.emit(.info, "\(request.method.rawValue) \(config.loggedURL(for: request)) -> \(status) in \(Log.elapsed(since: started)) (attempt \(attempt), \(request.body.length) bytes sent, \(sink.body.count) received)")
        }
        // The only header the library reads is Retry-After, and only on a
        // failure; libcurl keeps the headers, so nothing is collected as
        // they arrive.
        var retryAfterMs: Int?
        if !(200..<300).contains(status), let value = ccurl_last_header(curl, "Retry-After") {
            retryAfterMs = RetryAfter.milliseconds(String(cString: value), now: Clock.now())
        }
        return HTTPResponse(status: status, body: sink.takeBody(), attempts: attempt + max(0, transfer.starts - 1),
                            retryAfterMs: retryAfterMs)
    }

    /// Runs the prepared transfer to its end on the handle's own multi
    /// handle and gives libcurl's result; the wait for the socket is woken
    /// when the request's cancellation is raised, and the transfer is
    /// abandoned then. `finish` detaches the handle.
    private func run(cancellation: Cancellation?) -> CURLcode {
        if ownMulti == nil, !ownMultiFailed {
            ownMulti = curl_multi_init()
            ownMultiFailed = ownMulti == nil
        }
        guard let multi = ownMulti else { return curl_easy_perform(curl) }
        guard attach(to: multi) else { return CURLE_FAILED_INIT }
        // The multi handle outlives the waker, which is withdrawn below.
        let address = UInt(bitPattern: multi)
        let waker = cancellation.map { cancellation in
            cancellation.register { _ = curl_multi_wakeup(UnsafeMutableRawPointer(bitPattern: address)) }
        }
        defer { if let waker { cancellation?.withdraw(waker) } }
        while true {
            var running: Int32 = 0
            let performed = curl_multi_perform(multi, &running)
            guard performed == CURLM_OK else { return CURLE_OUT_OF_MEMORY }
            if running == 0 {
                var queued: Int32 = 0
                while let message = curl_multi_info_read(multi, &queued) {
                    if message.pointee.msg == CURLMSG_DONE { return message.pointee.data.result }
                }
                return CURLE_FAILED_INIT
            }
            if cancellation?.isRaised == true {
                transfer.markAbandoned()
                return CURLE_ABORTED_BY_CALLBACK
            }
            // libcurl shortens the wait to its own next timeout.
            guard curl_multi_poll(multi, nil, 0, 1000, nil) == CURLM_OK else { return CURLE_OUT_OF_MEMORY }
        }
    }

    /// The failure when a proxy answered CONNECT with anything but 2xx: the
    /// tunnel never opened, so nothing reached the service (libcurl counts
    /// the CONNECT in the request size, which would otherwise make the
    /// delivery "unknown"). A proxy's 5xx may pass and is retried.
    private func tunnelRefusal() -> DirectLineError? {
        var code = 0
        guard ccurl_get_long(curl, CURLINFO_HTTP_CONNECTCODE, &code) == CURLE_OK,
              code != 0, !(200..<300).contains(code) else { return nil }
        var error = DirectLineError(.network, "the proxy refused to open a tunnel to the service: HTTP \(code)")
        error.retryable = code >= 500
        return error
    }

    /// CURLE_TOO_LARGE, which libcurl 8.6 and later give for an oversized
    /// answer (older headers do not name it).
    private static let tooLarge: UInt32 = 100

    /// Maps a libcurl failure to a status and says whether the request may
    /// have reached the service.
    static func error(for code: CURLcode, requestSent: Bool, responseOverflow: Bool,
                      socketError: Int32 = 0) -> DirectLineError {
        let detail = String(cString: curl_easy_strerror(code))
        let delivery: Delivery = requestSent ? .unknown : .notSent
        switch code {
        case CURLE_COULDNT_CONNECT where socketError == EMFILE || socketError == ENFILE:
            // The process (or the system) is out of file descriptors: no
            // socket could be made, which libcurl reports as a failed connect.
            return DirectLineError(.network, "no connection could be opened: too many open files ("
                                   + (socketError == EMFILE ? "the process's limit" : "the system's limit") + ")")
        case CURLE_COULDNT_RESOLVE_HOST, CURLE_COULDNT_RESOLVE_PROXY, CURLE_COULDNT_CONNECT:
            var error = DirectLineError(.network, "could not connect to the service: \(detail)")
            error.retryable = true
            return error
        case CURLE_OPERATION_TIMEDOUT:
            var error = DirectLineError(.timeout, "the request timed out: \(detail)", delivery: delivery)
            // Nothing left before the time ran out (a connect timeout, say):
            // as safe to try again as a refused connection.
            error.retryable = !requestSent
            return error
        case CURLE_SSL_CONNECT_ERROR, CURLE_PEER_FAILED_VERIFICATION, CURLE_SSL_CERTPROBLEM,
             CURLE_SSL_CIPHER, CURLE_SSL_CACERT_BADFILE, CURLE_SSL_ISSUER_ERROR,
             CURLE_SSL_PINNEDPUBKEYNOTMATCH, CURLE_SSL_INVALIDCERTSTATUS, CURLE_SSL_CRL_BADFILE:
            return DirectLineError(.tls, "TLS failed: \(detail)")
        case CURLE_WRITE_ERROR where responseOverflow:
            return DirectLineError(.protocolViolation,
                                   "the response is larger than \(CurlTransport.maxResponseBytes) bytes",
                                   delivery: .unknown)
        case CURLE_SEND_FAIL_REWIND:
            return DirectLineError(.network,
                                   "the connection closed after the request was sent; it was not sent again because it may have been processed",
                                   delivery: .unknown)
        case CURLE_UNSUPPORTED_PROTOCOL, CURLE_URL_MALFORMAT:
            return DirectLineError(.invalidArgument, "the request URL was refused: \(detail)")
        case CURLE_OUT_OF_MEMORY where requestSent, CURLcode(rawValue: tooLarge) where requestSent:
            // libcurl refuses an answer whose header is over its limit with
            // these codes: the request left, so it may have been processed.
            return DirectLineError(.protocolViolation, "the service's answer could not be read: \(detail)",
                                   delivery: .unknown)
        case CURLE_OUT_OF_MEMORY, CURLE_FAILED_INIT, CURLE_BAD_FUNCTION_ARGUMENT:
            return DirectLineError(.internalError, "libcurl failed: \(detail)")
        default:
            return DirectLineError(.network, "the connection failed: \(detail)", delivery: delivery)
        }
    }
}

/// One transfer's body source and progress reporting, shared with the
/// libcurl callbacks through their userdata pointer.
/// A handle keeps one for its whole life (its address is the callbacks'
/// userdata, set once); each transfer starts it afresh and ends it, which
/// lets go of the body source (and so of an uploaded file).
private final class TransferState {
    /// The streamed body; nil when libcurl sends it from memory.
    private(set) var source: BodySource?
    private(set) var bodyLength: Int64 = 0
    private(set) var progress: ProgressReporter?
    private(set) var cancellation: Cancellation?
    /// The request's cancellation was raised and the transfer aborted.
    private(set) var abandoned = false
    /// errno of a socket that could not be made (EMFILE, say), or 0.
    var socketError: Int32 = 0
    /// A POST: libcurl may not start it over by itself.
    private(set) var refusesResend = false
    private(set) var cancelled = false
    /// libcurl tried to send the request a second time, and was stopped.
    private(set) var resendRefused = false
    /// How many times libcurl began sending this request (a refused
    /// resend not counted).
    private(set) var starts = 0
    private var lastReported: UInt64?

    func start(source: BodySource?, bodyLength: Int64, progress: ProgressReporter?, cancellation: Cancellation?,
               refusesResend: Bool) {
        self.source = source
        self.bodyLength = bodyLength
        self.progress = progress
        self.cancellation = cancellation
        self.refusesResend = refusesResend
        abandoned = false
        socketError = 0
        cancelled = false
        resendRefused = false
        starts = 0
        lastReported = nil
    }

    /// The request's cancellation was raised: the transfer stops here.
    func markAbandoned() {
        abandoned = true
    }

    /// Drops what the transfer held; the counters stay readable.
    func end() {
        source = nil
        progress = nil
        cancellation = nil
    }

    /// Called as each attempt's request is about to go out; false stops a
    /// second one. libcurl starts a request over on its own when a reused
    /// connection closes without an answer, and by then the first copy of
    /// the POST may have been processed: the bot would get it twice.
    func mayStart() -> Bool {
        guard starts == 0 || !refusesResend else {
            resendRefused = true
            return false
        }
        starts += 1
        return true
    }

    /// Tells the caller how much of the body left; false cancels. libcurl
    /// calls it at least about once a second, also while nothing moves; a
    /// freed handle's transfer is abandoned here too when no multi handle
    /// could wake it.
    func reportProgress(uploaded: UInt64) -> Bool {
        if cancellation?.isRaised == true {
            abandoned = true
            return false
        }
        guard let progress, !cancelled else { return !cancelled }
        let total = UInt64(bodyLength)
        let done = min(uploaded, total)
        guard done != lastReported else { return true }
        lastReported = done
        if !progress.report(done, total) { cancelled = true }
        return !cancelled
    }
}

/// Collects one transfer's response body. A handle keeps its sink for its
/// whole life; each request starts it empty.
private final class ResponseSink {
    let limit: Int
    // One thread at a time uses a handle's sink (the pool sees to it), so
    // Swift's dynamic exclusivity checks on it would only cost time.
    @exclusivity(unchecked) var body: [UInt8] = []
    @exclusivity(unchecked) var overflow = false

    init(limit: Int) { self.limit = limit }

    func reset() {
        body = []
        overflow = false
    }

    /// The body, leaving the sink without one (no copy).
    func takeBody() -> [UInt8] {
        defer { body = [] }
        return body
    }
}

/// Makes libcurl's sockets: close-on-exec, so that a child the host spawns
/// does not keep the service's connections open, and with the reason kept
/// when none can be made (libcurl reports only a failed connect).
private let openSocketCallback: ccurl_opensocket_fn = { userdata, _, address in
    guard let address else { return CURL_SOCKET_BAD }
    let made = socket(address.pointee.family, address.pointee.socktype | Int32(SOCK_CLOEXEC.rawValue),
                      address.pointee.protocol)
    if made < 0, let userdata {
        Unmanaged<TransferState>.fromOpaque(userdata).takeUnretainedValue().socketError = errno
    }
    return made < 0 ? CURL_SOCKET_BAD : made
}

private let prereqCallback: ccurl_prereq_fn = { userdata, _, _, _, _ in
    guard let userdata else { return Int32(CURL_PREREQFUNC_OK) }
    let transfer = Unmanaged<TransferState>.fromOpaque(userdata).takeUnretainedValue()
    return transfer.mayStart() ? Int32(CURL_PREREQFUNC_OK) : Int32(CURL_PREREQFUNC_ABORT)
}

/// What CURLOPT_POSTFIELDS points at for an empty body (never read).
private nonisolated(unsafe) let emptyBody = UnsafeMutableRawPointer.allocate(byteCount: 1, alignment: 1)

private let readCallback: ccurl_data_fn = { buffer, size, count, userdata in
    guard let buffer, let userdata else { return Int(CURL_READFUNC_ABORT) }
    let transfer = Unmanaged<TransferState>.fromOpaque(userdata).takeUnretainedValue()
    let (capacity, overflow) = size.multipliedReportingOverflow(by: count)
    guard !overflow else { return Int(CURL_READFUNC_ABORT) }
    guard let source = transfer.source else { return Int(CURL_READFUNC_ABORT) }
    let read = source.read(into: UnsafeMutableRawBufferPointer(start: buffer, count: capacity))
    return read < 0 ? Int(CURL_READFUNC_ABORT) : read
}

private let seekCallback: ccurl_seek_fn = { userdata, offset, origin in
    guard let userdata, origin == SEEK_SET else { return CURL_SEEKFUNC_FAIL }
    let transfer = Unmanaged<TransferState>.fromOpaque(userdata).takeUnretainedValue()
    return transfer.source?.rewindAllowed(to: Int64(offset)) == true ? CURL_SEEKFUNC_OK : CURL_SEEKFUNC_FAIL
}

private let progressCallback: ccurl_xferinfo_fn = { userdata, _, _, _, uploaded in
    guard let userdata else { return 0 }
    let transfer = Unmanaged<TransferState>.fromOpaque(userdata).takeUnretainedValue()
    return transfer.reportProgress(uploaded: UInt64(max(0, uploaded))) ? 0 : 1
}

private let writeCallback: ccurl_data_fn = { buffer, size, count, userdata in
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

/// What a handle's trace hides besides credentials (`TransportConfig.traceSecrets`).
final class TraceSecrets: Sendable {
    let texts: [String]

    init(_ texts: [String]) {
        // Short values would blank out unrelated text; they are not keys.
        self.texts = texts.filter { $0.utf8.count >= 4 }
    }

    func redact(_ line: String) -> String {
        texts.reduce(line) { $0.replacingAll($1, with: "[redacted]") }
    }
}

/// libcurl's trace at DL_LOG_DEBUG: informational text and headers, one
/// log call per line, redacted by `Log.emit` and the handle's `TraceSecrets`
/// (its DEBUGDATA). Bodies are never logged.
private let debugCallback: ccurl_debug_fn = { _, type, data, size, userdata in
    guard let data else { return 0 }
    let prefix: String
    switch type {
    case CURLINFO_TEXT: prefix = "* "
    case CURLINFO_HEADER_IN: prefix = "< "
    case CURLINFO_HEADER_OUT: prefix = "> "
    default: return 0
    }
    let text = String(decoding: UnsafeRawBufferPointer(start: data, count: size), as: UTF8.self)
    let secrets = userdata.map { Unmanaged<TraceSecrets>.fromOpaque($0).takeUnretainedValue() }
    for line in text.split(whereSeparator: { $0 == "\r" || $0 == "\n" || $0 == "\r\n" }) where !line.isEmpty {
        Log.emit(.debug, secrets?.redact(prefix + line) ?? prefix + line)
    }
    return 0
}
