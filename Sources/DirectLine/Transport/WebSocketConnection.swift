import CCurl
#if canImport(Glibc)
import Glibc
#endif

/// One WebSocket connection to a conversation's stream URL, run by the
/// transfer loop (`TransferLoop.attachStream`) on its own easy handle in
/// libcurl's callback mode: libcurl does the upgrade and the framing, and
/// hands each frame's payload to the write callback, which puts whole
/// messages together and passes them on.
///
/// Everything but `init` runs on the loop's thread: the callbacks (inside
/// `curl_multi_perform`), the completion (`complete`), and the owner's timer
/// actions. The owner (`WebSocketSource`) is told of what happens through
/// `events`, `ended` exactly once.
///
/// Closing is a handshake (RFC 6455 7.1): whoever closes sends a close
/// frame, the other answers with one, and the server closes TCP. Cutting
/// the connection right after our close frame would reset it while the
/// server's frames are still unread, and the server might never see ours.
/// So `closeGracefully` sends the frame and reads on (dropping what comes)
/// until the server's answer and its end of the connection, or
/// `closingTimeoutMs`, whichever is first; a close frame from the server is
/// answered the same way. libcurl sends a frame from inside a callback
/// blocking, outside one without blocking (a close frame is a few bytes).
final class WebSocketConnection: LoopTransferHandle, @unchecked Sendable {
    /// What the connection reports to its owner.
    struct Events {
        /// The server answered 101: the stream is open.
        var opened: () -> Void
        /// A whole text or binary message (empty for a keep-alive), not
        /// after the closing began.
        var message: ([UInt8]) -> Void
        /// The end, once, with why.
        var ended: (Ending) -> Void
    }

    /// Why the connection ended.
    enum Ending {
        /// The server sent a close frame (answered with one).
        case closedByServer(code: Int?, reason: String)
        /// The upgrade was refused: the HTTP status and its Retry-After.
        case refused(status: Int, retryAfterMs: Int?)
        /// The owner closed it (`closeGracefully`, `forceEnd`).
        case endedByOwner
        /// A message over `maxMessageBytes`.
        case tooLarge
        /// Anything else: libcurl's failure (a reset, a timeout...).
        case failed(DirectLineError)
    }

    let curl: UnsafeMutableRawPointer
    private let api: WebSocketAPI
    private let events: Events
    private var attachedTo: UnsafeMutableRawPointer?
    private let generation = ProcessGeneration.current
    /// The message being put together from frames.
    private var message: [UInt8] = []
    /// A close frame's payload, which control frames keep apart from it.
    private var closing: [UInt8] = []
    private var closeFrame: (code: Int?, reason: String)?
    /// We began the closing handshake.
    private var closedByUs = false
    private var tooLarge = false
    private var isOpen = false
    private var done = false
    private var closeTimer: TransferLoop.Timer?
    /// When anything (a frame, the upgrade's answer) last came (monotonic ms).
    private(set) var lastHeardMs = Clock.monotonicMs()
    /// The bytes libcurl had received at the last `heard()`.
    private var lastReceived: Int64 = 0
    /// The upgrade request's own header lines (libcurl reads them in place).
    private var headerList: UnsafeMutablePointer<curl_slist>?

    /// The largest message taken: the same limit as an HTTP answer's.
    static let maxMessageBytes = CurlTransport.maxResponseBytes
    /// How long a closing handshake may take before the connection is cut.
    static let closingTimeoutMs = 2_000

    /// A handle set up for `url` (`ws://` or `wss://`) with the client's
    /// TLS, proxy, user agent and connect timeout; nil when libcurl refused.
    init?(url: String, config: TransportConfig, api: WebSocketAPI, events: Events) {
        guard curlGlobalInit == CURLE_OK, let curl = curl_easy_init() else { return nil }
        self.curl = curl
        self.api = api
        self.events = events
        let me = Unmanaged.passUnretained(self).toOpaque()
        var failed = false
        func set(_ result: CURLcode) { if result != CURLE_OK { failed = true } }
        set(ccurl_set_string(curl, CURLOPT_URL, url))
        set(ccurl_set_string(curl, CURLOPT_PROTOCOLS_STR, "ws,wss"))
        set(ccurl_set_long(curl, CURLOPT_NOSIGNAL, 1))
        set(ccurl_set_long(curl, CURLOPT_FOLLOWLOCATION, 0))
        set(ccurl_set_string(curl, CURLOPT_USERAGENT, config.userAgent))
        set(ccurl_set_string(curl, CURLOPT_PROXY, config.proxy ?? ""))
        set(ccurl_set_string(curl, CURLOPT_NOPROXY, ""))
        if let caFile = config.caFile { set(ccurl_set_string(curl, CURLOPT_CAINFO, caFile)) }
        set(ccurl_set_long(curl, CURLOPT_SSL_VERIFYPEER, config.insecureSkipTlsVerify ? 0 : 1))
        set(ccurl_set_long(curl, CURLOPT_SSL_VERIFYHOST, config.insecureSkipTlsVerify ? 0 : 2))
        set(ccurl_set_long(curl, CURLOPT_CONNECTTIMEOUT_MS, config.connectTimeoutMs))
        // The upgrade request identifies the client and carries the
        // caller's headers, as every Direct Line request does.
        do throws(DirectLineError) {
            headerList = try curlHeaderList([config.botAgentLine] + config.extraHeaderLines)
            set(ccurl_set_slist(curl, CURLOPT_HTTPHEADER, headerList))
        } catch {
            failed = true
        }
        // A stream is never reused for a request, nor a request's
        // connection for a stream.
        set(ccurl_set_long(curl, CURLOPT_FRESH_CONNECT, 1))
        set(ccurl_set_long(curl, CURLOPT_FORBID_REUSE, 1))
        set(ccurl_set_data_fn(curl, CURLOPT_WRITEFUNCTION, webSocketWrite))
        set(ccurl_set_pointer(curl, CURLOPT_WRITEDATA, me))
        set(ccurl_set_data_fn(curl, CURLOPT_HEADERFUNCTION, webSocketHeader))
        set(ccurl_set_pointer(curl, CURLOPT_HEADERDATA, me))
        // A failed initializer of a class still runs deinit, which cleans up.
        guard !failed else { return nil }
    }

    deinit {
        // libcurl keeps pointing at the list until the handle is cleaned
        // up; an inherited handle is never cleaned up, so its list stays.
        guard !inherited else { return }
        defer { curl_slist_free_all(headerList) }
        if let attachedTo { curl_multi_remove_handle(attachedTo, curl) }
        curl_easy_cleanup(curl)
    }

    private var inherited: Bool { generation != ProcessGeneration.current }

    func attach(to multi: UnsafeMutableRawPointer) -> Bool {
        lastHeardMs = Clock.monotonicMs()
        guard curl_multi_add_handle(multi, curl) == CURLM_OK else { return false }
        attachedTo = multi
        return true
    }

    func abandon() {
        _ = Unmanaged.passRetained(self)
    }

    /// Whether anything came since the last call (or `silenceMs` before):
    /// libcurl never calls the write callback for a frame without payload,
    /// as the service's keep-alives are, but counts its bytes as received.
    func heard(withinMs silenceMs: Int) -> Bool {
        var received: curl_off_t = 0
        if attachedTo != nil, ccurl_get_off(curl, CURLINFO_SIZE_DOWNLOAD_T, &received) == CURLE_OK,
           Int64(received) != lastReceived {
            lastReceived = Int64(received)
            lastHeardMs = Clock.monotonicMs()
        }
        return Clock.monotonicMs() - lastHeardMs < silenceMs
    }

    /// The loop's completion: libcurl ended the transfer with `code`.
    func complete(_ code: CURLcode) {
        guard !done else { return }
        done = true
        let ending = ending(code)
        end()
        events.ended(ending)
    }

    private func ending(_ code: CURLcode) -> Ending {
        if let closeFrame { return .closedByServer(code: closeFrame.code, reason: closeFrame.reason) }
        if tooLarge { return .tooLarge }
        if closedByUs { return .endedByOwner }
        var status = 0
        _ = ccurl_get_long(curl, CURLINFO_RESPONSE_CODE, &status)
        if !isOpen, status != 0, status != 101 {
            var retryAfterMs: Int?
            if let value = ccurl_last_header(curl, "Retry-After") {
                retryAfterMs = RetryAfter.milliseconds(String(cString: value), now: Clock.now())
            }
            return .refused(status: status, retryAfterMs: retryAfterMs)
        }
        if code == CURLE_OK {
            return .failed(DirectLineError(.network, "the stream's connection closed without a close frame"))
        }
        return .failed(EasyHandle.error(for: code, requestSent: true, responseOverflow: false))
    }

    /// Begins the closing handshake (see the type's comment); callable from
    /// the connection's own callbacks too. Not yet open: cut at once (from
    /// a timer, as a handle cannot leave its multi handle in a callback).
    func closeGracefully() {
        guard !done, !closedByUs else { return }
        closedByUs = true
        message = []
        if isOpen, closeFrame == nil {
            send(close: [0x03, 0xE8])  // 1000, normal
        }
        let delay = isOpen ? Self.closingTimeoutMs : 0
        closeTimer = TransferLoop.shared.schedule(atMs: Clock.monotonicMs() + delay) { [self] _ in forceEnd() }
    }

    /// Cuts the connection now (a silent stream, a closing that took too
    /// long), from a timer on the loop's thread, never from a callback.
    func forceEnd() {
        guard !done else { return }
        done = true
        closedByUs = true
        let ending = closeFrame.map { Ending.closedByServer(code: $0.code, reason: $0.reason) } ?? .endedByOwner
        TransferLoop.shared.detachStream(self)
        end()
        events.ended(ending)
    }

    private func end() {
        isOpen = false
        if let closeTimer { TransferLoop.shared.cancel(closeTimer) }
        closeTimer = nil
        if let attachedTo, !inherited { curl_multi_remove_handle(attachedTo, curl) }
        attachedTo = nil
    }

    private func send(close payload: [UInt8]) {
        guard !inherited else { return }
        var sent = 0
        _ = payload.withUnsafeBytes { bytes in
            ccurl_ws_send(api.send, curl, bytes.baseAddress, bytes.count, &sent, UInt32(CCURL_WS_CLOSE))
        }
    }

    // MARK: the callbacks

    fileprivate func headerLine(_ bytes: UnsafeRawBufferPointer) {
        lastHeardMs = Clock.monotonicMs()
        // The blank line that ends the upgrade's answer.
        guard bytes.count <= 2, bytes.allSatisfy({ $0 == 0x0D || $0 == 0x0A }) else { return }
        var status = 0
        _ = ccurl_get_long(curl, CURLINFO_RESPONSE_CODE, &status)
        guard status == 101, !isOpen, !done else { return }
        isOpen = true
        events.opened()
    }

    /// Answers false to fail the transfer (libcurl could not tell us the
    /// frame's shape).
    fileprivate func frame(_ bytes: UnsafeRawBufferPointer) -> Bool {
        lastHeardMs = Clock.monotonicMs()
        guard let meta = ccurl_ws_meta(api.meta, curl)?.pointee else { return false }
        let flags = Int32(meta.flags)
        if flags & Int32(CCURL_WS_CLOSE) != 0 {
            closing.append(contentsOf: bytes.prefix(max(0, 125 - closing.count)))
            guard meta.bytesleft == 0, closeFrame == nil else { return true }
            var code: Int?
            var reason = ""
            if closing.count >= 2 {
                code = Int(closing[0]) << 8 | Int(closing[1])
                reason = String(decoding: closing[2...], as: UTF8.self)
            }
            closeFrame = (code, reason)
            if !closedByUs {
                // The answer, echoing the code; then the server ends the
                // connection (or the timer does).
                send(close: code.map { [UInt8($0 >> 8), UInt8($0 & 0xFF)] } ?? [])
                closedByUs = true
                closeTimer = TransferLoop.shared.schedule(atMs: Clock.monotonicMs() + Self.closingTimeoutMs) { [self] _ in
                    forceEnd()
                }
            }
            return true
        }
        // Pings are answered by libcurl; pongs need nothing; nothing more
        // is taken once the closing began.
        guard flags & Int32(CCURL_WS_TEXT | CCURL_WS_BINARY) != 0, !closedByUs, !done else { return true }
        guard message.count + bytes.count <= Self.maxMessageBytes else {
            tooLarge = true
            closeGracefully()
            return true
        }
        message.append(contentsOf: bytes)
        // More of this frame, or more frames of this message, to come.
        if meta.bytesleft > 0 || flags & Int32(CCURL_WS_CONT) != 0 { return true }
        let whole = message
        message = []
        events.message(whole)
        return true
    }
}

private let webSocketWrite: ccurl_data_fn = { buffer, size, count, userdata in
    guard let userdata else { return Int(CURL_WRITEFUNC_ERROR) }
    let connection = Unmanaged<WebSocketConnection>.fromOpaque(userdata).takeUnretainedValue()
    let total = size &* count
    let bytes = UnsafeRawBufferPointer(start: buffer, count: buffer == nil ? 0 : total)
    return connection.frame(bytes) ? total : Int(CURL_WRITEFUNC_ERROR)
}

private let webSocketHeader: ccurl_data_fn = { buffer, size, count, userdata in
    guard let userdata else { return 0 }
    let connection = Unmanaged<WebSocketConnection>.fromOpaque(userdata).takeUnretainedValue()
    let total = size &* count
    connection.headerLine(UnsafeRawBufferPointer(start: buffer, count: buffer == nil ? 0 : total))
    return total
}
