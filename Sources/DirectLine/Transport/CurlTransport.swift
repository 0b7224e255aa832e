import CCurl
import CWipe
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// libcurl is initialised once per process, on first use, before any
/// handle exists (Swift runs a global's initialiser exactly once), with
/// memory functions that wipe each block they release, so that the request
/// lines and buffers holding credentials are zeroed when libcurl frees them.
/// If the host initialised libcurl first, its functions stay (libcurl only
/// counts a second initialisation).
let curlGlobalInit: CURLcode = curl_global_init_mem(Int(CURL_GLOBAL_DEFAULT), malloc, dlwipe_free,
                                                     dlwipe_realloc, dlwipe_strdup, calloc)

/// Header lines as the list libcurl takes (CURLOPT_HTTPHEADER), which the
/// caller frees with curl_slist_free_all once libcurl no longer uses it.
func curlHeaderList(_ lines: [String]) throws(DirectLineError) -> UnsafeMutablePointer<curl_slist>? {
    var list: UnsafeMutablePointer<curl_slist>?
    for line in lines {
        guard let longer = curl_slist_append(list, line) else {
            curl_slist_free_all(list)
            throw .internalError("libcurl could not build the request headers")
        }
        list = longer
    }
    return list
}

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
    private let idleHandles = Locked<[EasyHandle]>([])

    init(config: TransportConfig) {
        self.config = config
    }

    /// Sends the request, retrying only where it provably was not processed
    /// (a connect or DNS failure or connect timeout, or an answer the
    /// request's `isRefusal` accepts). Any HTTP status is returned as a
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
            let reason: String
            switch outcome {
            case .success(let response):
                let refused = request.isRefusal?(response) ?? request.refusedByDefault(response)
                guard refused, attempt < policy.maxAttempts else {
                    return response
                }
                retryAfterMs = response.retryAfterMs
                reason = "HTTP \(response.status)"
            case .failure(let error):
                guard error.retryable, attempt < policy.maxAttempts else {
                    Log.emit(.error, "\(request.method.rawValue) \(config.loggedURL(for: request)) failed: \(error.message)")
                    throw error
                }
                retryAfterMs = nil
                reason = error.message
            }
            let delay = Backoff.delay(attempt: attempt, retryAfterMs: retryAfterMs, policy: policy)
            if let deadline = request.deadlineMs, Clock.monotonicMs() + delay >= deadline {
                // No time left for another attempt: the last outcome stands.
                switch outcome {
                case .success(let response): return response
                case .failure(let error): throw error
                }
            }
            Log.emit(.warn, "\(request.method.rawValue) \(config.loggedURL(for: request)): \(reason); attempt \(attempt + 1) of \(policy.maxAttempts) in \(delay) ms")
            sleepMilliseconds(delay)
            attempt += 1
        }
    }

    private func sendOnce(_ request: HTTPRequest, attempt: Int) throws(DirectLineError) -> HTTPResponse {
        guard curlGlobalInit == CURLE_OK else { throw .internalError("libcurl could not be initialised") }
        let timeouts = try timeouts(for: request, overrides: ThreadTimeouts.current, attempt: attempt)
        let handle = try checkOut()
        defer { checkIn(handle) }
        return try handle.perform(request, config: config, timeouts: timeouts, attempt: attempt)
    }

    /// The client's time limits, or the thread's overrides, shortened to
    /// what is left of the request's deadline.
    private func timeouts(for request: HTTPRequest, overrides: (total: Int?, connect: Int?),
                          attempt: Int) throws(DirectLineError) -> Timeouts {
        var timeouts = Timeouts(total: overrides.total ?? config.timeoutMs,
                                connect: overrides.connect ?? config.connectTimeoutMs)
        if let deadline = request.deadlineMs {
            let left = deadline - Clock.monotonicMs()
            guard left > 0 else {
                var error = DirectLineError(.timeout, "the call's time ran out before the request was sent")
                error.attempts = attempt - 1
                throw error
            }
            timeouts.total = min(timeouts.total, left)
            timeouts.connect = min(timeouts.connect, left)
        }
        return timeouts
    }

    /// Sends one attempt of the request on `loop` and returns at once. The
    /// request waits for a free slot there, its handle comes from this
    /// client's pool, and `completion` gets the response (any HTTP status)
    /// or the error on the loop's thread, by the same rules as `send` but
    /// without retries: the caller decides when to try again, and must not
    /// block. The client's time limits apply, never a thread's overrides.
    func start(_ request: HTTPRequest, on loop: TransferLoop,
               completion: @escaping @Sendable (Result<HTTPResponse, DirectLineError>) -> Void) {
        loop.enqueue { [self] in
            let handle: EasyHandle
            let prepared: EasyHandle.Prepared
            do throws(DirectLineError) {
                guard curlGlobalInit == CURLE_OK else { throw .internalError("libcurl could not be initialised") }
                let timeouts = try timeouts(for: request, overrides: (nil, nil), attempt: 1)
                handle = try checkOut()
                do throws(DirectLineError) {
                    prepared = try handle.prepareDetached(request, config: config, timeouts: timeouts, attempt: 1)
                } catch {
                    checkIn(handle)
                    throw error
                }
            } catch {
                completion(.failure(error))
                return nil
            }
            return TransferLoop.Transfer(handle: handle) { [self] code in
                let outcome: Result<HTTPResponse, DirectLineError>
                do throws(DirectLineError) {
                    outcome = .success(try handle.finish(request, prepared, code: code, config: config))
                } catch {
                    outcome = .failure(error)
                }
                checkIn(handle)
                completion(outcome)
            }
        }
    }

    private func checkOut() throws(DirectLineError) -> EasyHandle {
        while let handle = idleHandles.withLock({ $0.popLast() }) {
            guard handle.inherited else { return handle }
            handle.abandon()
        }
        guard let handle = EasyHandle(config: config) else { throw .internalError("libcurl could not create a handle") }
        return handle
    }

    private func checkIn(_ handle: EasyHandle) {
        guard !handle.inherited else { return handle.abandon() }
        idleHandles.withLock { idle in
            if idle.count < Self.maxIdleHandles { idle.append(handle) }
        }
    }
}
