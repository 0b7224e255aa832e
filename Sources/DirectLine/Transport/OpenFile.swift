#if canImport(Glibc)
import Glibc
#endif

/// A file opened for an upload. It is opened before anything is sent (so a
/// missing or unreadable file is reported with nothing on the wire), read
/// with `pread` (so a retried attempt starts over without seeking), and
/// closed when the last request using it is done.
final class OpenFile: @unchecked Sendable {
    let descriptor: Int32
    let size: Int64
    /// The path as messages show it (bytes that are not UTF-8 replaced).
    let path: String

    convenience init(path: String) throws(DirectLineError) {
        try self.init(pathBytes: Array(path.utf8))
    }

    /// A path is bytes to the kernel: it need not be UTF-8.
    init(pathBytes: [UInt8]) throws(DirectLineError) {
        path = String(decoding: pathBytes, as: UTF8.self)
        // O_NONBLOCK: opening a FIFO (or a device) for reading must not wait
        // for a writer; such files are refused just below. Reads of regular
        // files ignore the flag.
        let descriptor = (pathBytes + [0]).withUnsafeBufferPointer { bytes in
            bytes.withMemoryRebound(to: CChar.self) { path -> Int32 in
                guard let base = path.baseAddress else { return -1 }
                return open(base, O_RDONLY | O_CLOEXEC | O_NONBLOCK)
            }
        }
        guard descriptor >= 0 else {
            throw DirectLineError(.io, "cannot open \"\(path)\": \(String(cString: strerror(errno)))")
        }
        var info = stat()
        guard fstat(descriptor, &info) == 0, (info.st_mode & S_IFMT) == S_IFREG else {
            close(descriptor)
            throw DirectLineError(.io, "\"\(path)\" is not a regular file")
        }
        self.descriptor = descriptor
        size = Int64(info.st_size)
    }

    deinit { close(descriptor) }

    /// The whole file, read to its end: for files whose size says nothing
    /// (those under /proc and /sys report 0). Refused past `limit` bytes.
    func readToEnd(limit: Int) throws(DirectLineError) -> [UInt8] {
        var content: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 65_536)
        while true {
            let count = chunk.withUnsafeMutableBytes { read(descriptor, $0.baseAddress, $0.count) }
            if count < 0 {
                if errno == EINTR { continue }
                throw DirectLineError(.io, "reading \"\(path)\" failed: \(String(cString: strerror(errno)))")
            }
            if count == 0 { return content }
            guard content.count + count <= limit else {
                throw DirectLineError(.tooLarge, "\"\(path)\" reports no size and is longer than \(limit) bytes")
            }
            content.append(contentsOf: chunk[..<count])
        }
    }
}
