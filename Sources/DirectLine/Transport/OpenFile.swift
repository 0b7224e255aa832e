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
    let path: String

    init(path: String) throws(DirectLineError) {
        self.path = path
        // O_NONBLOCK: opening a FIFO (or a device) for reading must not wait
        // for a writer; such files are refused just below. Reads of regular
        // files ignore the flag.
        let descriptor = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK)
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
}
