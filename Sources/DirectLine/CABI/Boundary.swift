#if canImport(Glibc)
import Glibc
#endif

/// The one path every exported function takes from C into Swift.
///
/// It clears the result slot, refuses re-entry from a callback, runs the
/// body, and turns its result or its error into a status and a JSON string
/// in `out`. Nothing thrown inside can cross into C.
enum Boundary {
    /// Input strings longer than this are refused before being parsed.
    static let maxInputBytes = 8 * 1024 * 1024

    typealias ResultSlot = UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>

    static func call<Result: SerializedResult>(_ out: ResultSlot?, _ body: () throws(DirectLineError) -> Result) -> Int32 {
        out?.pointee = nil
        do throws(DirectLineError) {
            guard !CallbackGuard.isInsideCallback else {
                throw DirectLineError(.DL_ERR_REENTRANT,
                                      "libdirectline was called from inside one of its own callbacks")
            }
            let result = try body()
            result.handOver(to: out)
            return dl_status.DL_OK.rawValue
        } catch {
            if let out { out.pointee = copyToC(error.json.serializedBytes) }
            return error.status.rawValue
        }
    }

    /// A malloc'd, NUL-terminated copy that the caller releases with
    /// `dl_string_free`. Serialized JSON never holds a raw NUL.
    static func copyToC(_ bytes: [UInt8]) -> UnsafeMutablePointer<CChar>? {
        guard let copy = malloc(bytes.count + 1)?.assumingMemoryBound(to: CChar.self) else { return nil }
        bytes.withUnsafeBytes { source in
            if let base = source.baseAddress { memcpy(copy, base, bytes.count) }
        }
        copy[bytes.count] = 0
        return copy
    }

    /// The bytes of a NUL-terminated argument, not yet checked to be UTF-8;
    /// NULL is nil.
    static func bytes(_ pointer: UnsafePointer<CChar>?, name: String) throws(DirectLineError) -> UnsafeBufferPointer<UInt8>? {
        guard let pointer else { return nil }
        let length = strnlen(pointer, maxInputBytes + 1)
        guard length <= maxInputBytes else {
            throw .invalidArgument("\(name) is longer than \(maxInputBytes) bytes")
        }
        return UnsafeRawPointer(pointer).withMemoryRebound(to: UInt8.self, capacity: length) {
            UnsafeBufferPointer(start: $0, count: length)
        }
    }

    static func requiredBytes(_ pointer: UnsafePointer<CChar>?, name: String) throws(DirectLineError) -> UnsafeBufferPointer<UInt8> {
        guard let bytes = try bytes(pointer, name: name) else { throw .invalidArgument("\(name) must not be NULL") }
        return bytes
    }

    /// An argument's bytes as a string, refused unless they are UTF-8.
    static func text(_ bytes: UnsafeBufferPointer<UInt8>, name: String) throws(DirectLineError) -> String {
        guard let string = String(validating: bytes, as: UTF8.self) else {
            throw .invalidArgument("\(name) is not valid UTF-8")
        }
        return string
    }

    /// A required or optional NUL-terminated UTF-8 argument.
    static func string(_ pointer: UnsafePointer<CChar>?, name: String) throws(DirectLineError) -> String? {
        guard let bytes = try bytes(pointer, name: name) else { return nil }
        return try text(bytes, name: name)
    }

    static func requiredString(_ pointer: UnsafePointer<CChar>?, name: String) throws(DirectLineError) -> String {
        guard let string = try string(pointer, name: name) else { throw .invalidArgument("\(name) must not be NULL") }
        return string
    }

    /// The `user_id` argument of sends and uploads.
    static func userId(_ pointer: UnsafePointer<CChar>?) throws(DirectLineError) -> String {
        let user = try requiredString(pointer, name: "user_id")
        try Validation.identifier(user, name: "user_id")
        return user
    }

    /// A JSON argument; NULL is nil, the caller decides whether that is allowed.
    static func json(_ pointer: UnsafePointer<CChar>?, name: String) throws(DirectLineError) -> JSONValue? {
        guard let text = try string(pointer, name: name) else { return nil }
        return try parse(text, name: name)
    }

    /// Parses a JSON argument already read with `string`.
    static func parse(_ text: String, name: String) throws(DirectLineError) -> JSONValue {
        do {
            return try JSONParser.parse(text)
        } catch {
            throw .invalidArgument("\(name) is not valid JSON: \(error.message) at byte \(error.offset)")
        }
    }

    static func requiredJSON(_ pointer: UnsafePointer<CChar>?, name: String) throws(DirectLineError) -> JSONValue {
        guard let value = try json(pointer, name: name) else { throw .invalidArgument("\(name) must not be NULL") }
        return value
    }
}

/// What an exported function hands back in `out_json`.
protocol SerializedResult {
    var serializedBytes: [UInt8] { get }
    /// Stores the result in `out` as a C string the caller frees with
    /// `dl_string_free` (nothing when `out` is NULL).
    func handOver(to out: Boundary.ResultSlot?)
}

extension SerializedResult {
    func handOver(to out: Boundary.ResultSlot?) {
        if let out { out.pointee = Boundary.copyToC(serializedBytes) }
    }
}

extension JSONValue: SerializedResult {}

/// A result already written as JSON (by a path that never built a tree):
/// as bytes, or as the C string itself, written in place so that it is
/// not copied again on the way out.
enum SerializedJSON: SerializedResult {
    case bytes([UInt8])
    /// malloc'd and NUL-terminated; owned until handed over.
    case cString(UnsafeMutablePointer<CChar>)

    var serializedBytes: [UInt8] {
        switch self {
        case .bytes(let bytes): bytes
        case .cString(let pointer): Array(UnsafeRawBufferPointer(start: pointer, count: strlen(pointer)))
        }
    }

    func handOver(to out: Boundary.ResultSlot?) {
        switch self {
        case .bytes(let bytes):
            if let out { out.pointee = Boundary.copyToC(bytes) }
        case .cString(let pointer):
            if let out { out.pointee = pointer } else { free(pointer) }
        }
    }
}

/// A thread-specific slot holding one pointer-sized word (no destructor);
/// nil if the process has run out of keys.
func makeThreadKey() -> pthread_key_t? {
    var key = pthread_key_t()
    return pthread_key_create(&key, nil) == 0 ? key : nil
}

/// Marks the threads that are running one of the caller's callbacks, so
/// that a call back into the library is refused instead of deadlocking.
enum CallbackGuard {
    private static let key = makeThreadKey()

    static var isInsideCallback: Bool {
        guard let key else { return false }
        return pthread_getspecific(key) != nil
    }

    /// Runs a caller's callback with re-entry refused on this thread.
    static func run<T>(_ callback: () -> T) -> T {
        guard let key else { return callback() }
        let previous = pthread_getspecific(key)
        pthread_setspecific(key, UnsafeRawPointer(bitPattern: 1))
        defer { pthread_setspecific(key, previous) }
        return callback()
    }
}
