/// SipHash-2-4 (Aumasson and Bernstein), a keyed pseudo-random function:
/// without the key, its outputs cannot be predicted from earlier ones.
struct SipHash {
    let key: (UInt64, UInt64)

    /// The 128-bit output for the 8 bytes of `message` (little-endian), as
    /// two 64-bit halves: the same as `hash128(bytes:)` of those bytes.
    func hash128(_ message: UInt64) -> (UInt64, UInt64) {
        var state = State(key: key, wide: true)
        state.absorb(message)
        state.absorb(UInt64(8) << 56)
        return state.finish128()
    }

    func hash128(bytes: [UInt8]) -> (UInt64, UInt64) {
        var state = State(key: key, wide: true)
        absorb(bytes, into: &state)
        return state.finish128()
    }

    func hash64(bytes: [UInt8]) -> UInt64 {
        var state = State(key: key, wide: false)
        absorb(bytes, into: &state)
        return state.finish64()
    }

    private func absorb(_ bytes: [UInt8], into state: inout State) {
        var index = 0
        while index + 8 <= bytes.count {
            state.absorb(Self.word(bytes[index..<(index + 8)]))
            index += 8
        }
        state.absorb(Self.word(bytes[index...]) | UInt64(truncatingIfNeeded: bytes.count) << 56)
    }

    /// Up to 8 bytes, little-endian.
    private static func word(_ bytes: ArraySlice<UInt8>) -> UInt64 {
        var value: UInt64 = 0
        for (shift, byte) in bytes.enumerated() { value |= UInt64(byte) << (8 * UInt64(shift)) }
        return value
    }

    private struct State {
        var v0, v1, v2, v3: UInt64

        init(key: (UInt64, UInt64), wide: Bool) {
            v0 = 0x736F_6D65_7073_6575 ^ key.0
            v1 = 0x646F_7261_6E64_6F6D ^ key.1 ^ (wide ? 0xEE : 0)
            v2 = 0x6C79_6765_6E65_7261 ^ key.0
            v3 = 0x7465_6462_7974_6573 ^ key.1
        }

        mutating func round() {
            v0 &+= v1; v1 = v1.rotated(13); v1 ^= v0; v0 = v0.rotated(32)
            v2 &+= v3; v3 = v3.rotated(16); v3 ^= v2
            v0 &+= v3; v3 = v3.rotated(21); v3 ^= v0
            v2 &+= v1; v1 = v1.rotated(17); v1 ^= v2; v2 = v2.rotated(32)
        }

        mutating func absorb(_ word: UInt64) {
            v3 ^= word
            round()
            round()
            v0 ^= word
        }

        mutating func finish64() -> UInt64 {
            v2 ^= 0xFF
            for _ in 0..<4 { round() }
            return v0 ^ v1 ^ v2 ^ v3
        }

        mutating func finish128() -> (UInt64, UInt64) {
            v2 ^= 0xEE
            for _ in 0..<4 { round() }
            let first = v0 ^ v1 ^ v2 ^ v3
            v1 ^= 0xDD
            for _ in 0..<4 { round() }
            return (first, v0 ^ v1 ^ v2 ^ v3)
        }
    }
}

extension UInt64 {
    fileprivate func rotated(_ bits: UInt64) -> UInt64 { self << bits | self >> (64 - bits) }
}
