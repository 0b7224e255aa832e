import CCurl
import CSystem
#if canImport(Glibc)
import Glibc
#endif

/// libcurl's WebSocket functions, looked up at run time in the very libcurl
/// this library is linked to, so that the library builds against and loads
/// with one that has none (Debian 12's 7.88): no WebSocket symbol is ever
/// referenced at link time.
///
/// Available when libcurl is 8.11 or later (its maintained WebSocket
/// client), lists both `ws` and `wss` among its protocols, and exports
/// `curl_ws_send` and `curl_ws_meta`. The lookup goes through the library
/// that holds `curl_easy_init` as we call it (`dladdr`, then `dlopen` with
/// `RTLD_NOLOAD`): a process may hold other libcurls, and ours may have
/// been loaded with `RTLD_LOCAL`, out of `dlsym(RTLD_DEFAULT, ...)`'s sight.
struct WebSocketAPI: @unchecked Sendable {
    let send: ccurl_ws_send_fn
    let meta: ccurl_ws_meta_fn

    /// The first libcurl version whose WebSocket client is no longer
    /// experimental.
    static let minimumVersion: UInt32 = 0x08_0B_00

    /// The functions, or why there are none.
    static let lookup: Result<WebSocketAPI, DirectLineError> = find()

    static var current: WebSocketAPI? { try? lookup.get() }

    private static func find() -> Result<WebSocketAPI, DirectLineError> {
        let number = ccurl_version_num()
        let version = "\(number >> 16).\((number >> 8) & 0xFF).\(number & 0xFF)"
        func missing(_ why: String) -> Result<WebSocketAPI, DirectLineError> {
            .failure(DirectLineError(.unsupported, "the libcurl in use (\(version)) \(why)"))
        }
        guard number >= minimumVersion else {
            return missing("has no WebSocket client: it needs libcurl 8.11 or later built with ws and wss")
        }
        var protocols: Set<String> = []
        if var list = ccurl_protocols() {
            while let name = list.pointee {
                protocols.insert(String(cString: name))
                list += 1
            }
        }
        guard protocols.contains("ws"), protocols.contains("wss") else {
            return missing("was built without the ws and wss protocols")
        }
        guard let path = csystem_object_path(ccurl_easy_init_address()),
              let library = dlopen(path, RTLD_LAZY | RTLD_NOLOAD) else {
            return missing("could not be found to look its WebSocket functions up")
        }
        // The handle stays open: the library is in use for the life of the process.
        guard let send = dlsym(library, "curl_ws_send"), let meta = dlsym(library, "curl_ws_meta") else {
            return missing("does not export curl_ws_send and curl_ws_meta")
        }
        return .success(WebSocketAPI(send: unsafeBitCast(send, to: ccurl_ws_send_fn.self),
                                     meta: unsafeBitCast(meta, to: ccurl_ws_meta_fn.self)))
    }
}
