#if canImport(Glibc)
import Glibc
#endif

/// A credential the library keeps for as long as a handle lives (a
/// client's secret or token, a conversation's token): its bytes live in
/// memory excluded from core dumps (`MADV_DONTDUMP`) and are wiped when the
/// last reference goes.
///
/// Reading it makes a transient `String` for the request at hand; those
/// copies, like every block the library frees, are wiped when released
/// (Sources/CWipe/wipe.c), but a core dump taken while a request runs may
/// hold one.
final class SecretText: Sendable, CustomStringConvertible {
    private let slot: SecretArena.Slot
    let count: Int

    init(_ text: String) {
        var text = text
        count = text.utf8.count
        slot = SecretArena.shared.allocate(count)
        text.withUTF8 { bytes in
            if let base = bytes.baseAddress { memcpy(slot.pointer, base, count) }
        }
    }

    deinit {
        explicit_bzero(slot.pointer, count)
        SecretArena.shared.release(slot)
    }

    /// The text, as a transient copy.
    var string: String {
        String(decoding: UnsafeRawBufferPointer(start: slot.pointer, count: count), as: UTF8.self)
    }

    /// Compares without making a copy.
    static func == (lhs: SecretText, rhs: String) -> Bool {
        var rhs = rhs
        return rhs.withUTF8 { bytes in
            guard bytes.count == lhs.count else { return false }
            guard let base = bytes.baseAddress else { return true }
            return memcmp(lhs.slot.pointer, base, lhs.count) == 0
        }
    }

    /// Never the text itself: a credential interpolated by mistake stays out of messages.
    var description: String { "<credential>" }
}

/// Slots for credentials in memory mapped apart from the heap and marked
/// `MADV_DONTDUMP`: size classes of 64 bytes to 16 KiB, each carved from
/// 64 KiB chunks that are kept for reuse (a few hundred KiB at most for
/// thousands of handles); a larger credential gets a mapping of its own,
/// unmapped on release.
final class SecretArena: @unchecked Sendable {
    static let shared = SecretArena()

    struct Slot: @unchecked Sendable {
        let pointer: UnsafeMutableRawPointer
        /// The size class's index, or nil for a block of its own.
        let sizeClass: Int?
        /// A block of its own: its size, and whether it was mapped (or,
        /// when the system refused, taken from the heap).
        let ownBytes: Int
        let ownMapped: Bool
    }

    static let classSizes = [64, 256, 1024, 4096, 16384]
    static let chunkBytes = 65536

    private let free = Locked<[[UnsafeMutableRawPointer]]>(Array(repeating: [], count: classSizes.count))

    func allocate(_ count: Int) -> Slot {
        guard let index = Self.classSizes.firstIndex(where: { $0 >= count }) else {
            let bytes = (count + 4095) & ~4095
            let (pointer, mapped) = Self.map(bytes)
            return Slot(pointer: pointer, sizeClass: nil, ownBytes: bytes, ownMapped: mapped)
        }
        return free.withLock { lists in
            if lists[index].isEmpty {
                let size = Self.classSizes[index]
                let chunk = Self.map(Self.chunkBytes).pointer
                for offset in stride(from: 0, to: Self.chunkBytes, by: size) {
                    lists[index].append(chunk + offset)
                }
            }
            return Slot(pointer: lists[index].removeLast(), sizeClass: index, ownBytes: 0, ownMapped: false)
        }
    }

    func release(_ slot: Slot) {
        guard let index = slot.sizeClass else {
            if slot.ownMapped { munmap(slot.pointer, slot.ownBytes) } else { slot.pointer.deallocate() }
            return
        }
        free.withLock { $0[index].append(slot.pointer) }
    }

    /// Anonymous memory left out of core dumps. When the system refuses a
    /// mapping, the heap stands in (still wiped on release, but dumpable).
    private static func map(_ bytes: Int) -> (pointer: UnsafeMutableRawPointer, mapped: Bool) {
        let mapped = mmap(nil, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0)
        guard let mapped, mapped != UnsafeMutableRawPointer(bitPattern: -1) else {
            return (UnsafeMutableRawPointer.allocate(byteCount: bytes, alignment: 16), false)
        }
        _ = madvise(mapped, bytes, MADV_DONTDUMP)
        return (mapped, true)
    }
}
