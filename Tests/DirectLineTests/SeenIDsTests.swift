import Testing
@testable import DirectLine

@Suite("seen-id caches")
struct SeenIDsTests {
    @Test("recent ids drop repeats and forget the oldest beyond capacity")
    func recentIDs() {
        var seen = ReturnedActivityIDs()
        var results: [Bool] = []
        results.append(seen.insert("a"))
        results.append(seen.insert("a"))
        results.append(seen.insert(nil))
        results.append(seen.insert(nil))
        #expect(results == [true, false, true, true])
        var fresh = 0
        for index in 0..<ReturnedActivityIDs.defaultCapacity where seen.insert("id\(index)") { fresh += 1 }
        #expect(fresh == ReturnedActivityIDs.defaultCapacity)
        // "a" was the oldest and has been forgotten; the newest is remembered.
        let oldestAgain = seen.insert("a")
        let newestAgain = seen.insert("id\(ReturnedActivityIDs.defaultCapacity - 1)")
        #expect(oldestAgain && !newestAgain)
    }

    @Test("sent ids remember the newest sends and forget the oldest beyond capacity")
    func sentIDs() {
        var sent = SentClientActivityIDs(capacity: 4)
        #expect(!sent.contains("a"))
        for id in ["a", "b", "c", "d"] { sent.record(id) }
        #expect(["a", "b", "c", "d"].allSatisfy(sent.contains) && !sent.contains("e"))
        sent.record("e")
        sent.record("f")
        #expect(!sent.contains("a") && !sent.contains("b"))
        #expect(["c", "d", "e", "f"].allSatisfy(sent.contains))
        var full = SentClientActivityIDs()
        for index in 0...SentClientActivityIDs.defaultCapacity { full.record("dlc-\(index)") }
        #expect(!full.contains("dlc-0") && full.contains("dlc-1") && full.contains("dlc-\(SentClientActivityIDs.defaultCapacity)"))
    }
}
