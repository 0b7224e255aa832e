#if canImport(Glibc)
import Glibc
#endif

/// Maps the opaque handles given to C to live objects.
///
/// A handle encodes a slot index and that slot's generation, scrambled with
/// a per-process key. Freeing a handle bumps the slot's generation, so a
/// stale copy, a double free, a forged value or a handle of the other kind
/// is recognised and refused; no handle is ever dereferenced as a pointer.
final class HandleTable: @unchecked Sendable {
    private struct Slot {
        var generation: UInt32 = 1
        var object: (any AnyObject & Sendable)?
    }

    private struct Storage {
        var slots: [Slot] = []
        var freeList: [Int] = []
    }

    /// Every call looks a handle up; only constructors and destructors change
    /// the table. A reader-writer lock lets concurrent calls look up without
    /// queueing behind each other.
    private let storage = ReadWriteLocked(Storage())
    private let key: UInt64

    init() {
        var generator = SystemRandomNumberGenerator()
        // Keep the top bit clear so a handle never looks like a kernel pointer.
        key = (generator.next() as UInt64) & 0x7FFF_FFFF_FFFF_FFF0
        storage.guardAcrossFork()
    }

    private func encode(index: Int, generation: UInt32) -> UInt64 {
        (UInt64(generation) << 32 | UInt64(index + 1)) ^ key
    }

    private func decode(_ handle: OpaquePointer) -> (index: Int, generation: UInt32)? {
        let raw = UInt64(UInt(bitPattern: handle)) ^ key
        let low = raw & 0xFFFF_FFFF
        guard low > 0 else { return nil }
        return (Int(low - 1), UInt32(truncatingIfNeeded: raw >> 32))
    }

    /// Registers an object; nil only if the table is full (2^31 live handles).
    func insert(_ object: any AnyObject & Sendable) -> OpaquePointer? {
        storage.write { storage -> OpaquePointer? in
            let index: Int
            if let reused = storage.freeList.popLast() {
                index = reused
            } else {
                guard storage.slots.count < Int(Int32.max) else { return nil }
                storage.slots.append(Slot())
                index = storage.slots.count - 1
            }
            storage.slots[index].object = object
            let value = encode(index: index, generation: storage.slots[index].generation)
            return OpaquePointer(bitPattern: UInt(value))
        }
    }

    /// The live object behind a handle, if it is of the expected type.
    func lookup<T: AnyObject & Sendable>(_ handle: OpaquePointer?, as type: T.Type) throws(DirectLineError) -> T {
        let object = storage.read { storage -> (any AnyObject & Sendable)? in
            guard let handle, let (index, generation) = decode(handle), index < storage.slots.count,
                  storage.slots[index].generation == generation else { return nil }
            return storage.slots[index].object
        }
        guard let typed = object as? T else { throw Self.invalid(handle, type) }
        return typed
    }

    /// Unregisters a handle and returns its object; the object lives on while
    /// calls already running on it finish.
    @discardableResult
    func remove<T: AnyObject & Sendable>(_ handle: OpaquePointer?, as type: T.Type) throws(DirectLineError) -> T {
        let object = storage.write { storage -> T? in
            guard let handle, let (index, generation) = decode(handle), index < storage.slots.count,
                  storage.slots[index].generation == generation,
                  let typed = storage.slots[index].object as? T else { return nil }
            storage.slots[index].object = nil
            storage.slots[index].generation = storage.slots[index].generation &+ 1
            if storage.slots[index].generation == 0 { storage.slots[index].generation = 1 }
            storage.freeList.append(index)
            return typed
        }
        guard let object else { throw Self.invalid(handle, type) }
        return object
    }

    private static func invalid<T>(_ handle: OpaquePointer?, _ type: T.Type) -> DirectLineError {
        let kind = type == Conversation.self ? "dl_conversation" : "dl_client"
        guard handle != nil else {
            return DirectLineError(.invalidHandle, "the \(kind) handle is NULL")
        }
        return DirectLineError(.invalidHandle,
                               "the \(kind) handle is not valid: it was freed, never issued, or is of another kind")
    }
}

/// Every handle this library has issued, clients and conversations alike.
let handles = HandleTable()

