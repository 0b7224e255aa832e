/// The `options_json` arguments of the calls that take one, parsed and
/// checked before anything is sent.

/// `options_json` of `dl_conversation_wait`.
struct WaitOptions {
    var timeoutMs = 10_000
    var intervalMs = 1_000
    var afterSendMs = 300
    /// Whose activities do not end the wait; nil: the users this handle sent as.
    var userIds: [String]?
    var includeOwn = false
    /// The most page bytes the result holds activities from before the wait
    /// returns with `"more": true` (`Conversation.defaultMaximumHeldBytes`).
    var maxBytes = Conversation.defaultMaximumHeldBytes

    init(json: JSONValue?) throws(DirectLineError) {
        guard let json else { return }
        let reader = try JSONReader(json, context: "options")
        try reader.rejectUnknownKeys(["timeoutMs", "intervalMs", "afterSendMs", "userId", "includeOwn", "maxBytes"])
        if let value = try reader.integer("maxBytes", in: 1...Int64(CurlTransport.maxResponseBytes)) { maxBytes = Int(value) }
        if let value = try reader.integer("timeoutMs", in: 0...86_400_000) { timeoutMs = Int(value) }
        if let value = try reader.integer("intervalMs", in: 50...3_600_000) { intervalMs = Int(value) }
        if let value = try reader.integer("afterSendMs", in: 0...60_000) { afterSendMs = Int(value) }
        if let value = try reader.string("userId") {
            try Validation.identifier(value, name: "options.userId")
            userIds = [value]
        }
        includeOwn = try reader.bool("includeOwn") ?? false
    }
}

/// `options_json` of `dl_conversation_listen`.
struct ListenOptions: Sendable {
    enum Mode: String, Sendable {
        case auto
        case websocket
        case polling
    }

    var mode = Mode.auto
    var pollIntervalMs = 1_000
    var includeOwn = false
    var maxQueued = 10_000
    /// How long the WebSocket stream may bring nothing, not even a
    /// keep-alive, before it counts as dropped (`streamSilenceMs`).
    var silenceLimitMs = 90_000

    init(json: JSONValue?) throws(DirectLineError) {
        guard let json else { return }
        let reader = try JSONReader(json, context: "options")
        try reader.rejectUnknownKeys(["mode", "pollIntervalMs", "includeOwn", "maxQueued", "streamSilenceMs"])
        if let text = try reader.string("mode") {
            guard let known = Mode(rawValue: text) else {
                throw .invalidArgument("options.mode must be \"auto\", \"websocket\" or \"polling\"")
            }
            mode = known
        }
        if let value = try reader.integer("pollIntervalMs", in: 50...3_600_000) { pollIntervalMs = Int(value) }
        includeOwn = try reader.bool("includeOwn") ?? false
        if let value = try reader.integer("maxQueued", in: 1...1_000_000) { maxQueued = Int(value) }
        if let value = try reader.integer("streamSilenceMs", in: 200...3_600_000) { silenceLimitMs = Int(value) }
    }
}

/// `options_json` of `dl_conversation_confirm`: how long to keep looking.
struct ConfirmOptions {
    var timeoutMs = 0

    init(json: JSONValue?) throws(DirectLineError) {
        guard let json else { return }
        let reader = try JSONReader(json, context: "options")
        try reader.rejectUnknownKeys(["timeoutMs"])
        timeoutMs = Int(try reader.integer("timeoutMs", in: 0...3_600_000) ?? 0)
    }
}

/// `options_json` of `dl_set_thread_timeouts`: nil members mean the
/// client's own values.
struct ThreadTimeoutOptions {
    var total: Int?
    var connect: Int?

    init(json: JSONValue?) throws(DirectLineError) {
        guard let json else { return }
        let reader = try JSONReader(json, context: "options_json")
        try reader.rejectUnknownKeys(["timeoutMs", "connectTimeoutMs"])
        total = try reader.integer("timeoutMs", in: 1...86_400_000).map { Int($0) }
        connect = try reader.integer("connectTimeoutMs", in: 1...86_400_000).map { Int($0) }
    }

    /// Makes these the calling thread's timeouts.
    func apply() throws(DirectLineError) {
        guard ThreadTimeouts.set(total: total, connect: connect) else {
            throw .internalError("the thread's timeouts could not be stored")
        }
    }

    /// `{"timeoutMs": N | null, "connectTimeoutMs": N | null}`.
    var json: JSONValue {
        .object(JSONObject([("timeoutMs", total.map { .integer($0) } ?? .null),
                            ("connectTimeoutMs", connect.map { .integer($0) } ?? .null)]))
    }
}
