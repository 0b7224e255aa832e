/// The Direct Line protocol version a client speaks.
enum ProtocolVersion: String, Sendable {
    case v3 = "3.0"
    case v1 = "1.1"
}
