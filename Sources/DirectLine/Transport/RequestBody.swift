#if canImport(Glibc)
import Glibc
#endif

/// What a request sends: a sequence of in-memory bytes and open files,
/// streamed in order, with its total length known before sending.
struct RequestBody: Sendable {
    enum Segment: Sendable {
        case bytes([UInt8])
        case file(OpenFile)

        var length: Int64 {
            switch self {
            case .bytes(let bytes): Int64(bytes.count)
            case .file(let file): file.size
            }
        }
    }

    /// A body of one in-memory piece (every request but an upload) is
    /// kept without an array around it.
    private enum Storage: Sendable {
        case bytes([UInt8])
        case segments([Segment])
    }

    private var storage: Storage

    init() { storage = .bytes([]) }
    init(_ bytes: [UInt8]) { storage = .bytes(bytes) }
    init(segments: [Segment]) { storage = .segments(segments) }

    var segments: [Segment] {
        switch storage {
        case .bytes(let bytes): bytes.isEmpty ? [] : [.bytes(bytes)]
        case .segments(let segments): segments
        }
    }

    /// The whole body when it is one piece in memory (or empty).
    var inMemoryBytes: [UInt8]? {
        switch storage {
        case .bytes(let bytes): bytes
        case .segments(let segments):
            switch segments.count {
            case 0: []
            case 1: if case .bytes(let bytes) = segments[0] { bytes } else { nil }
            default: nil
            }
        }
    }

    var length: Int64 {
        switch storage {
        case .bytes(let bytes): Int64(bytes.count)
        case .segments(let segments): segments.reduce(0) { $0 + $1.length }
        }
    }
    var isEmpty: Bool { length == 0 }

    /// The whole body in memory; for tests and small bodies only.
    func collected() -> [UInt8] {
        var output: [UInt8] = []
        let source = BodySource(self)
        var buffer = [UInt8](repeating: 0, count: 65_536)
        while true {
            let count = buffer.withUnsafeMutableBytes { source.read(into: $0) }
            guard count > 0 else { break }
            output += buffer[0..<count]
        }
        return output
    }
}

/// One attempt's read position in a `RequestBody`, handed to libcurl piece
/// by piece.
///
/// libcurl resends a request on its own when a reused connection turns out
/// to be closed; for a POST whose body already left, that could deliver an
/// activity twice. The seek callback therefore allows a rewind only while
/// no byte has been handed out, and otherwise fails the transfer
/// (CURLE_SEND_FAIL_REWIND), which is reported with delivery "unknown".
final class BodySource {
    private let segments: [RequestBody.Segment]
    private var segmentIndex = 0
    private var segmentOffset: Int64 = 0
    private(set) var bytesHandedOut: Int64 = 0
    /// Set when a file could not be read to its recorded size.
    private(set) var fileError: String?

    init(_ body: RequestBody) { segments = body.segments }

    /// Fills `buffer`; returns the count, 0 at the end, -1 on a file error.
    func read(into buffer: UnsafeMutableRawBufferPointer) -> Int {
        var written = 0
        while written < buffer.count, segmentIndex < segments.count {
            let segment = segments[segmentIndex]
            let remaining = segment.length - segmentOffset
            guard remaining > 0 else {
                segmentIndex += 1
                segmentOffset = 0
                continue
            }
            let wanted = Int(min(Int64(buffer.count - written), remaining))
            guard let target = buffer.baseAddress?.advanced(by: written) else { return -1 }
            let count: Int
            switch segment {
            case .bytes(let bytes):
                bytes.withUnsafeBytes { source in
                    if let base = source.baseAddress {
                        target.copyMemory(from: base + Int(segmentOffset), byteCount: wanted)
                    }
                }
                count = wanted
            case .file(let file):
                count = pread(file.descriptor, target, wanted, off_t(segmentOffset))
                if count < 0 && errno == EINTR { continue }
                guard count > 0 else {
                    fileError = count == 0 ? "\"\(file.path)\" became shorter while it was uploaded"
                        : "reading \"\(file.path)\" failed: \(String(cString: strerror(errno)))"
                    return -1
                }
            }
            written += count
            segmentOffset += Int64(count)
        }
        bytesHandedOut += Int64(written)
        return written
    }

    /// libcurl may rewind to the start only while nothing was handed out.
    func rewindAllowed(to offset: Int64) -> Bool { offset == 0 && bytesHandedOut == 0 }
}
