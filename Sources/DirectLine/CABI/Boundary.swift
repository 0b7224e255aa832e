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
        // A thread cancelled (pthread_cancel) while it runs library code,
        // or a caller's callback, is cancelled once the call has returned:
        // cancelled in the middle, it would leave a lock or a pinned
        // callback behind for ever.
        var cancelState: Int32 = 0
        pthread_setcancelstate(Int32(PTHREAD_CANCEL_DISABLE), &cancelState)
        defer { pthread_setcancelstate(cancelState, nil) }
        do throws(DirectLineError) {
            guard !CallbackGuard.isInsideCallback else {
                throw DirectLineError(.reentrant,
                                      "libdirectline was called from inside one of its own callbacks")
            }
            let result = try body()
            result.handOver(to: out)
            return Status.ok.rawValue
        } catch {
            if let out { out.pointee = copyToC(error.json.serializedBytes) }
            return error.status.rawValue
        }
    }

    /// A malloc'd, NUL-terminated copy that the caller releases with
    /// `dl_string_free`. Serialized JSON never holds a raw NUL.
    static func copyToC(_ bytes: [UInt8]) -> UnsafeMutablePointer<CChar>? {
        bytes.withUnsafeBufferPointer { copyToC($0) }
    }

    static func copyToC(_ bytes: UnsafeBufferPointer<UInt8>) -> UnsafeMutablePointer<CChar>? {
        guard let copy = malloc(bytes.count + 1)?.assumingMemoryBound(to: CChar.self) else { return nil }
        if let base = bytes.baseAddress { memcpy(copy, base, bytes.count) }
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

    /// A required or optional NUL-terminated UTF-8 argument.
    static func string(_ pointer: UnsafePointer<CChar>?, name: String) throws(DirectLineError) -> String? {
        guard let bytes = try bytes(pointer, name: name) else { return nil }
        guard let string = String(validating: bytes, as: UTF8.self) else {
            throw .invalidArgument("\(name) is not valid UTF-8")
        }
        return string
    }

    static func requiredString(_ pointer: UnsafePointer<CChar>?, name: String) throws(DirectLineError) -> String {
        guard let string = try string(pointer, name: name) else { throw .invalidArgument("\(name) must not be NULL") }
        return string
    }

    /// A required id argument (`user_id`, `client_activity_id`), checked
    /// by the id rules before anything is sent.
    static func identifier(_ pointer: UnsafePointer<CChar>?, name: String) throws(DirectLineError) -> String {
        let id = try requiredString(pointer, name: name)
        try Validation.identifier(id, name: name)
        return id
    }

    /// A JSON argument; NULL is nil, the caller decides whether that is allowed.
    static func json(_ pointer: UnsafePointer<CChar>?, name: String) throws(DirectLineError) -> JSONValue? {
        guard let bytes = try bytes(pointer, name: name) else { return nil }
        return try JSONReader.parse(bytes, name: name)
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

extension JSONValue: SerializedResult {
    /// A page handed back as the service wrote it goes straight into the
    /// caller's C string: one copy of a page of up to 64 MiB, not two.
    func handOver(to out: Boundary.ResultSlot?) {
        guard let out else { return }
        guard case .raw(let raw) = self else {
            out.pointee = Boundary.copyToC(serializedBytes)
            return
        }
        out.pointee = raw.document.withUnsafeBufferPointer { bytes in
            Boundary.copyToC(UnsafeBufferPointer(rebasing: bytes[raw.range]))
        }
    }
}

/// A send's result is written straight into the caller's C string.
extension SendResult: SerializedResult {
    var serializedBytes: [UInt8] { bytes }

    func handOver(to out: Boundary.ResultSlot?) {
        guard let out else { return }
        let count = byteCount
        guard let output = malloc(count + 1)?.assumingMemoryBound(to: UInt8.self) else { return }
        write(into: output)
        output[count] = 0
        out.pointee = UnsafeMutableRawPointer(output).assumingMemoryBound(to: CChar.self)
    }
}
