/// What a token endpoint (`config.tokenEndpoint`) handed out.
struct EndpointToken: Sendable {
    var token: String
    var expiresIn: Int?
    /// The conversation the token is bound to, when it is.
    var conversationId: String?

    /// `{"token", "expires_in"?, "conversationId"?}`: `dl_token_generate`'s
    /// result for such a client.
    var json: JSONValue {
        var object = JSONObject([("token", .string(token))])
        if let expiresIn { object["expires_in"] = .number(String(expiresIn)) }
        if let conversationId { object["conversationId"] = .string(conversationId) }
        return .object(object)
    }
}

extension DirectLineClient {
    /// `GET tokenEndpoint`: a token, without a credential. Its failures
    /// map as the service's do, their messages naming the endpoint.
    func fetchEndpointToken() throws(DirectLineError) -> EndpointToken {
        guard let endpoint = config.tokenEndpoint else { throw .internalError("no tokenEndpoint configured") }
        // With headers of the caller's, the Direct Line host first: whether
        // they go to the token endpoint depends on its origin.
        if !config.transport.extraHeaderLines.isEmpty { _ = try serviceEndpoint() }
        let response = try outside(endpoint, what: "tokenEndpoint", for: nil)
        guard let answer = (try? JSONParser.parse(bytes: response.body))?.objectValue else {
            throw Responses.protocolError("tokenEndpoint answered with something other than a JSON object", response)
        }
        let token = try Self.usableToken(answer["token"], response,
                                         what: "tokenEndpoint's answer has no usable \"token\" string")
        // Some token services spell the lifetime expiresIn.
        let lifetime = (answer["expires_in"] ?? answer["expiresIn"])?.int64Value
        var issued = EndpointToken(token: token, expiresIn: lifetime.flatMap { (0...(Int64(1) << 31)).contains($0) ? Int($0) : nil })
        if let bound = answer["conversationId"], !bound.isNull {
            guard let id = bound.stringValue, (try? Validation.identifier(id, name: "conversationId")) != nil else {
                throw Responses.protocolError("tokenEndpoint's answer has an unusable \"conversationId\"", response)
            }
            issued.conversationId = id
        }
        return issued
    }

    /// The Direct Line host requests go to: `endpoint`, or the one the
    /// regional settings name, read on first use within the time and
    /// cancellation of `request` (the call that needs it). Two first uses at
    /// once may both read them; the first answer stays. A failure here sent
    /// nothing to the service.
    func serviceEndpoint(for request: HTTPRequest? = nil) throws(DirectLineError) -> Endpoint {
        guard let settings = config.regionalSettings else { return config.endpoint }
        if let known = regionalEndpoint.withLock({ $0 }) { return known }
        do throws(DirectLineError) {
            return try remember(regionalAnswer(try outside(settings, what: "regionalSettingsEndpoint", for: request)))
        } catch {
            var unsent = error
            unsent.delivery = .notSent
            throw unsent
        }
    }

    /// `serviceEndpoint` for the library's thread, which never waits on the
    /// network: when the host is not known yet, one attempt at reading it
    /// goes on the transfer loop, and `then` gets the outcome there.
    func serviceEndpoint(then: @escaping @Sendable (Result<Endpoint, DirectLineError>) -> Void) {
        guard let settings = config.regionalSettings else { return then(.success(config.endpoint)) }
        if let known = regionalEndpoint.withLock({ $0 }) { return then(.success(known)) }
        startNow(outsideRequest(settings, for: nil), reaching: .service) { [self] outcome in
            then(Result { () throws(DirectLineError) -> Endpoint in
                do throws(DirectLineError) {
                    return try remember(regionalAnswer(outcome.get()))
                } catch {
                    throw named(error, "regionalSettingsEndpoint")
                }
            })
        }
    }

    /// The Direct Line host in the regional settings' answer, checked as
    /// `endpoint` would be.
    private func regionalAnswer(_ response: HTTPResponse) throws(DirectLineError) -> Endpoint {
        let answer = try? JSONParser.parse(bytes: response.body)
        guard let url = answer?.objectValue?["channelUrlsById"]?.objectValue?["directline"]?.stringValue else {
            throw Responses.protocolError("regionalSettingsEndpoint's answer has no channelUrlsById.directline", response)
        }
        do throws(DirectLineError) {
            let endpoint = try Endpoint(parsing: url, allowInsecureHttp: config.allowInsecureHttp,
                                        name: "the Direct Line URL in the regional settings")
            if endpoint.scheme == "http", !config.allowInsecureHttp, let proxy = config.transport.proxy,
               ClientConfig.proxyIsPrivate(proxy) != true {
                throw DirectLineError.invalidArgument("the regional settings name a plain http:// Direct Line URL, "
                                                      + "which would cross the proxy unencrypted")
            }
            return endpoint
        } catch {
            throw Responses.protocolError(error.message, response)
        }
    }

    private func remember(_ endpoint: Endpoint) -> Endpoint {
        regionalEndpoint.withLock { known in
            if known == nil { known = endpoint }
            return known ?? endpoint
        }
    }

    /// Whether the request goes to the Direct Line host the regional
    /// settings name: a Direct Line request (not a whole URL) of a client
    /// that has regional settings. `located` then makes its URL whole.
    func goesToRegionalHost(_ request: HTTPRequest) -> Bool {
        config.regionalSettings != nil && !request.pathIsURL
    }

    /// The request with its URL made whole at `base`, the regional host.
    func located(_ request: HTTPRequest, at base: Endpoint) -> HTTPRequest {
        var located = request
        located.path = base.baseURL + request.path
        located.pathIsURL = true
        return located
    }

    /// `GET` of a URL outside the Direct Line API (token or regional
    /// settings endpoint), with no credential; the caller's `headers` go
    /// only to the origin they are meant for.
    private func outside(_ endpoint: Endpoint, what: String, for call: HTTPRequest?) throws(DirectLineError) -> HTTPResponse {
        do throws(DirectLineError) {
            return try execute(outsideRequest(endpoint, for: call), reaching: .service)
        } catch {
            throw named(error, what)
        }
    }

    /// The GET of `endpoint`, within the deadline and cancellation of the
    /// call it serves (`call`), when there is one.
    private func outsideRequest(_ endpoint: Endpoint, for call: HTTPRequest?) -> HTTPRequest {
        var request = HTTPRequest(method: .get, path: endpoint.url, bearer: "")
        request.pathIsURL = true
        request.deadlineMs = call?.deadlineMs
        request.cancellation = call?.cancellation
        let service: Endpoint? = config.regionalSettings == nil ? config.endpoint : regionalEndpoint.withLock { $0 }
        request.carriesClientHeaders = service?.origin == endpoint.origin
        return request
    }

    /// The error with the configuration key of the URL that failed first in its message.
    private func named(_ error: DirectLineError, _ what: String) -> DirectLineError {
        var named = error
        named.message = "\(what): \(error.message)"
        return named
    }
}
