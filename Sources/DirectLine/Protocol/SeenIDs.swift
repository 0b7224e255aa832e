/// The two memories of ids a conversation handle keeps: which of its own
/// correlation ids it sent, and which activities `wait` already returned.
/// Both hold 64-bit fingerprints (`IDFingerprint`), not the ids: hashing 8
/// bytes is far cheaper than comparing 36-byte strings, and two ids share a
/// fingerprint with odds of about 2^-52 among 4,096.

/// The clientActivityIDs of a handle's most recent sends, in a ring. Every
/// send records one, so recording is a single store; `contains`, asked only
/// for the activities a `wait` reads, scans the ring.
struct SentClientActivityIDs: Sendable {
    static let defaultCapacity = 256
    private var ring: [UInt64]
    private var count = 0
    private var next = 0

    init(capacity: Int = defaultCapacity) { ring = Array(repeating: 0, count: max(1, capacity)) }

    /// Remembers `id`, forgetting the oldest one when the ring is full.
    mutating func record(_ id: String) {
        ring[next] = IDFingerprint.of(id)
        next = next + 1 == ring.count ? 0 : next + 1
        count = min(count + 1, ring.count)
    }

    func contains(_ id: String) -> Bool {
        let print = IDFingerprint.of(id)
        return ring[..<count].contains(print)
    }
}

/// The ids of the last `capacity` activities `wait` returned, so that an
/// activity the service delivers twice is returned once.
struct ReturnedActivityIDs: Sendable {
    static let defaultCapacity = 4096
    let capacity: Int
    private var members: Set<UInt64> = []
    private var order: [UInt64] = []
    private var oldest = 0

    init(capacity: Int = defaultCapacity) { self.capacity = max(1, capacity) }

    func contains(_ id: String) -> Bool { members.contains(IDFingerprint.of(id)) }

    /// False when `id` was returned already; an activity without an id is always new.
    mutating func insert(_ id: String?) -> Bool {
        guard let id else { return true }
        let print = IDFingerprint.of(id)
        guard members.insert(print).inserted else { return false }
        if order.count < capacity {
            order.append(print)
        } else {
            members.remove(order[oldest])
            order[oldest] = print
            oldest = (oldest + 1) % capacity
        }
        return true
    }
}

enum IDFingerprint {
    /// FNV-1a over the UTF-8 bytes, finished with a bit mixer.
    static func of(_ id: String) -> UInt64 {
        var hash: UInt64 = 0xCBF2_9CE4_8422_2325
        var text = id
        text.withUTF8 { bytes in
            for byte in bytes { hash = (hash ^ UInt64(byte)) &* 0x0000_0100_0000_01B3 }
        }
        return ClientActivityID.mix(hash)
    }
}
