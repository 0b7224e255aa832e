import CCurl

/// A proxy setting read the way libcurl itself reads it (`curl_url`, with
/// the scheme guessed as for CURLOPT_PROXY), so that a check on where the
/// proxy is cannot be fooled by text that libcurl reads differently, such
/// as `http://host:3128#@127.0.0.1`.
struct ProxyURL {
    let scheme: String
    let host: String

    /// nil when libcurl cannot read `text` as a URL.
    init?(parsing text: String) {
        guard let url = curl_url() else { return nil }
        defer { curl_url_cleanup(url) }
        let flags = UInt32(CURLU_NON_SUPPORT_SCHEME | CURLU_GUESS_SCHEME)
        guard curl_url_set(url, CURLUPART_URL, text, flags) == CURLUE_OK else { return nil }
        func part(_ which: CURLUPart) -> String? {
            var value: UnsafeMutablePointer<CChar>?
            guard curl_url_get(url, which, &value, 0) == CURLUE_OK, let value else { return nil }
            defer { curl_free(value) }
            return String(cString: value)
        }
        guard let scheme = part(CURLUPART_SCHEME), let host = part(CURLUPART_HOST), !host.isEmpty else { return nil }
        self.scheme = scheme.lowercased()
        self.host = host.lowercased()
    }
}
