import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// The correlation id a 3.0 send carries in `channelData.clientActivityID`,
/// by which `dl_conversation_confirm` finds an activity whose send had an
/// unknown outcome.
enum ClientActivityID {
    private static let counter = Atomic<UInt64>(0)

    /// A fresh correlation id: 128 bits of SipHash over a counter, under a
    /// random key that never leaves the process and is drawn again in a
    /// child after fork(). Whoever sees some ids cannot tell the next one
    /// (so cannot forge a sender's next id and make `confirm` lie), ids
    /// never repeat within a process (a keyed PRF of distinct counters),
    /// and a forked child's ids share nothing with its parent's.
    static func generate() -> String {
        let count = counter.wrappingAdd(1, ordering: .relaxed).newValue
        let halves = IDKey.shared.siphash.hash128(count)
        return String(unsafeUninitializedCapacity: 36) { output in
            output[0] = UInt8(ascii: "d")
            output[1] = UInt8(ascii: "l")
            output[2] = UInt8(ascii: "c")
            output[3] = UInt8(ascii: "-")
            writeHex(halves.0, to: UnsafeMutableBufferPointer(rebasing: output[4..<20]))
            writeHex(halves.1, to: UnsafeMutableBufferPointer(rebasing: output[20..<36]))
            return 36
        }
    }

    /// `value` as 16 lowercase hex digits into `output` (16 bytes).
    private static func writeHex(_ value: UInt64, to output: UnsafeMutableBufferPointer<UInt8>) {
        var rest = value
        for index in stride(from: 15, through: 0, by: -1) {
            let digit = UInt8(truncatingIfNeeded: rest & 0xF)
            output[index] = digit < 10 ? UInt8(ascii: "0") + digit : UInt8(ascii: "a") - 10 + digit
            rest >>= 4
        }
    }

    /// Whether `id` has the form `generate()` gives: "dlc-" and 32 lowercase
    /// hex digits (so it needs no JSON escaping).
    static func isGenerated(_ id: String) -> Bool {
        var text = id
        return text.withUTF8 { bytes in
            guard bytes.count == 36, bytes[0] == UInt8(ascii: "d"), bytes[1] == UInt8(ascii: "l"),
                  bytes[2] == UInt8(ascii: "c"), bytes[3] == UInt8(ascii: "-") else { return false }
            for index in 4..<36 {
                let byte = bytes[index]
                guard (byte >= 0x30 && byte <= 0x39) || (byte >= 0x61 && byte <= 0x66) else { return false }
            }
            return true
        }
    }

    /// splitmix64's finaliser: a bijection on 64 bits.
    static func mix(_ value: UInt64) -> UInt64 {
        var z = value &+ 0x9E37_79B9_7F4A_7C15
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    /// 16 lowercase hex digits.
    static func hex(_ value: UInt64) -> String {
        String(unsafeUninitializedCapacity: 16) { output in
            writeHex(value, to: output)
            return 16
        }
    }
}

/// The process's key for correlation ids: 128 bits from the system's secure
/// generator, drawn on first use and again in the child of every fork(), so
/// that parent and child never share ids.
final class IDKey: @unchecked Sendable {
    static let shared = IDKey()

    /// Written only here and by the fork handler, when the child is the only
    /// thread; read freely otherwise.
    private let key = UnsafeMutablePointer<(UInt64, UInt64)>.allocate(capacity: 1)

    var siphash: SipHash { SipHash(key: key.pointee) }

    private init() {
        key.initialize(to: Self.draw())
        ForkSafety.register(ForkSafety.Handlers(child: { IDKey.shared.redraw() }))
    }

    private func redraw() { key.pointee = Self.draw() }

    private static func draw() -> (UInt64, UInt64) {
        var generator = SystemRandomNumberGenerator()
        return (generator.next(), generator.next())
    }
}
