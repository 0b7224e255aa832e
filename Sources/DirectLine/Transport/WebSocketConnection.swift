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
/// `curl_multi_perform`), the completion, and the owner's timer actions
/// (`close`). The owner (`WebSocketSource`) is told of
/// what happens through `events`; an event may ask to end the connection,
/// which the write callback does by failing the transfer (a handle cannot
/// leave its multi handle inside its own callback).
final class WebSocketConnection: LoopTransferHandle, @unchecked Sendable {
    /// What the connection reports to its owner.
    struct Events {
        /// The server answered 101: the stream is open.
        var opened: () -> Void
        /// A whole text or binary message (empty for a keep-alive). Answers
        /// whether to go on (false: end the connection now).
        var message: ([UInt8]) -> Bool
    }

    /// Why the connection ended, as the completion sees it.
    enum Ending {
        /// The server sent a close frame (answered with one).
        case closedByServer(code: Int?, reason: String)
        /// The upgrade was refused: the HTTP status and its Retry-After.
        case refused(status: Int, retryAfterMs: Int?)
        /// The owner asked for the end (a message answered false).
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
    private var endedByOwner = false
    private var tooLarge = false
    private var isOpen = false
    /// When anything (a frame, the upgrade's answer) last came (monotonic ms).
    private(set) var lastHeardMs = Clock.monotonicMs()

    /// The largest message taken: the same limit as an HTTP answer's.
    static let maxMessageBytes = CurlTransport.maxResponseBytes

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
        // A stream is never reused for a request, nor a request's
        // connection for a stream.
        set(ccurl_set_long(curl, CURLOPT_FRESH_CONNECT, 1))
        set(ccurl_set_long(curl, CURLOPT_FORBID_REUSE, 1))
        set(ccurl_set_data_fn(curl, CURLOPT_WRITEFUNCTION, webSocketWrite))
        set(ccurl_set_pointer(curl, CURLOPT_WRITEDATA, me))
        set(ccurl_set_data_fn(curl, CURLOPT_HEADERFUNCTION, webSocketHeader))
        set(ccurl_set_pointer(curl, CURLOPT_HEADERDATA, me))
        guard !failed else {
            curl_easy_cleanup(curl)
            return nil
        }
    }

    deinit {
        if let attachedTo, !inherited { curl_multi_remove_handle(attachedTo, curl) }
        guard !inherited else { return }
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

    /// In the completion: why it ended, and the handle leaves the loop.
    func finish(_ code: CURLcode) -> Ending {
        let wasOpen = isOpen
        isOpen = false
        defer { detach() }
        if let closeFrame { return .closedByServer(code: closeFrame.code, reason: closeFrame.reason) }
        if endedByOwner { return .endedByOwner }
        if tooLarge { return .tooLarge }
        var status = 0
        _ = ccurl_get_long(curl, CURLINFO_RESPONSE_CODE, &status)
        if !wasOpen, status != 0, status != 101 {
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

    /// Off the loop before its end (the owner's timer): says goodbye and
    /// lets go.
    func close() {
        sayGoodbye()
        TransferLoop.shared.detachStream(self)
        detach()
    }

    /// A close frame (1000, normal) when the stream is open; callable from
    /// the connection's own callbacks too.
    func sayGoodbye() {
        guard isOpen, !inherited, closeFrame == nil else { return }
        isOpen = false
        var sent = 0
        let normal: [UInt8] = [0x03, 0xE8]
        _ = normal.withUnsafeBytes { bytes in
            ccurl_ws_send(api.send, curl, bytes.baseAddress, bytes.count, &sent, UInt32(CCURL_WS_CLOSE))
        }
    }

    private func detach() {
        if let attachedTo { curl_multi_remove_handle(attachedTo, curl) }
        attachedTo = nil
    }

    // MARK: the callbacks

    fileprivate func headerLine(_ bytes: UnsafeRawBufferPointer) {
        lastHeardMs = Clock.monotonicMs()
        // The blank line that ends the upgrade's answer.
        guard bytes.count <= 2, bytes.allSatisfy({ $0 == 0x0D || $0 == 0x0A }) else { return }
        var status = 0
        _ = ccurl_get_long(curl, CURLINFO_RESPONSE_CODE, &status)
        guard status == 101, !isOpen else { return }
        isOpen = true
        events.opened()
    }

    /// Answers false to end the connection.
    fileprivate func frame(_ bytes: UnsafeRawBufferPointer) -> Bool {
        lastHeardMs = Clock.monotonicMs()
        guard let meta = ccurl_ws_meta(api.meta, curl)?.pointee else { return false }
        let flags = Int32(meta.flags)
        if flags & Int32(CCURL_WS_CLOSE) != 0 {
            closing.append(contentsOf: bytes.prefix(125))
            guard meta.bytesleft == 0 else { return true }
            var code: Int?
            var reason = ""
            if closing.count >= 2 {
                code = Int(closing[0]) << 8 | Int(closing[1])
                reason = String(decoding: closing[2...], as: UTF8.self)
            }
            closeFrame = (code, reason)
            // The closing handshake's answer, echoing the code.
            var sent = 0
            let answer: [UInt8] = code.map { [UInt8($0 >> 8), UInt8($0 & 0xFF)] } ?? []
            _ = answer.withUnsafeBytes { out in
                ccurl_ws_send(api.send, curl, out.baseAddress, out.count, &sent, UInt32(CCURL_WS_CLOSE))
            }
            return false
        }
        // Pings are answered by libcurl; pongs need nothing.
        guard flags & Int32(CCURL_WS_TEXT | CCURL_WS_BINARY) != 0 else { return true }
        guard message.count + bytes.count <= Self.maxMessageBytes else {
            tooLarge = true
            return false
        }
        message.append(contentsOf: bytes)
        // More of this frame, or more frames of this message, to come.
        if meta.bytesleft > 0 || flags & Int32(CCURL_WS_CONT) != 0 { return true }
        let whole = message
        message = []
        guard events.message(whole) else {
            endedByOwner = true
            return false
        }
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
