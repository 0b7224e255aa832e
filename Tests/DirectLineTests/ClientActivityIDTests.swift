import Testing
@testable import DirectLine

@Suite("client activity ids")
struct ClientActivityIDTests {
    static let referenceKey: (UInt64, UInt64) = (0x0706_0504_0302_0100, 0x0F0E_0D0C_0B0A_0908)

    @Test("SipHash-2-4 gives the reference implementation's outputs")
    func sipHashVectors() {
        let siphash = SipHash(key: Self.referenceKey)
        #expect(siphash.hash64(bytes: []) == 0x726F_DB47_DD0E_0E31)
        #expect(siphash.hash64(bytes: Array(0..<15)) == 0xA129_CA61_49BE_45E5)
        #expect(siphash.hash128(bytes: []) == (0xE6A8_25BA_047F_81A3, 0x9302_55C7_1472_F66D))
        let counter: UInt64 = 0x0706_0504_0302_0100
        #expect(siphash.hash128(counter) == siphash.hash128(bytes: Array(0..<8)))
    }

    @Test("no part of an id repeats in the next: nothing to predict from ids seen")
    func unpredictable() {
        let ids = (0..<2000).map { _ in ClientActivityID.generate() }
        let firstHalves = Set(ids.map { $0.dropFirst(4).prefix(16) })
        let secondHalves = Set(ids.map { $0.suffix(16) })
        #expect(firstHalves.count == ids.count)
        #expect(secondHalves.count == ids.count)
        // Every one of the 128 bits is set in about half of the ids.
        for position in 4..<36 {
            var ones = [0, 0, 0, 0]
            for id in ids {
                let digit = Int(id.utf8[id.utf8.index(id.utf8.startIndex, offsetBy: position)])
                let value = digit >= 0x61 ? digit - 0x61 + 10 : digit - 0x30
                for bit in 0..<4 where value & (1 << bit) != 0 { ones[bit] += 1 }
            }
            #expect(ones.allSatisfy { (800...1200).contains($0) }, "hex digit \(position): \(ones)")
        }
    }

    @Test("generated client activity ids are unique and well formed")
    func generatedIds() {
        var seen = Set<String>()
        for _ in 0..<10_000 { seen.insert(ClientActivityID.generate()) }
        #expect(seen.count == 10_000)
        #expect(seen.allSatisfy { $0.hasPrefix("dlc-") && $0.utf8.count == 36 && ClientActivityID.isGenerated($0) })
        for other in ["mine", "dlc-", "dlc-" + String(repeating: "A", count: 32), "dlc-" + String(repeating: "0", count: 31) + "\"",
                      "xyz-" + String(repeating: "0", count: 32)] {
            #expect(!ClientActivityID.isGenerated(other), "\(other)")
        }
        let id = ClientActivityID.generate()
        let response = HTTPResponse(status: 200, body: Array(#"{"id":"a"}"#.utf8), attempts: 1)
        let written = JSONScannerTests.sendResult(response, id)
        #expect(written == #"{"id":"a","clientActivityID":""# + id + #""}"#)
    }
}
