import Testing
@testable import DirectLine

@Suite("ISO 8601")
struct ISO8601Tests {
    @Test("ISO-8601 expiry times round-trip, and impossible ones are refused")
    func roundTrip() {
        // 951_782_400 is 2000-02-29.
        for seconds in [0, 1_795_000_000, 951_782_400] {
            #expect(ISO8601.parse(ISO8601.format(seconds)) == seconds)
        }
        #expect(ISO8601.parse("2026-11-21T02:30:00Z") == 1_795_228_200)
        for bad in ["2026-02-31T00:00:00Z", "2026-11-21T24:00:00Z", "2026-11-21t02:30:00Z",
                    "2026-11-21T02:30:00", "2026-11-21T02:30:00+01:00", "1969-12-31T23:59:59Z",
                    "2026-11-21T02:30:0aZ", " 2026-11-21T02:30:00Z", ""] {
            #expect(ISO8601.parse(bad) == nil, "\(bad)")
        }
    }

    @Test("ISO-8601 timestamps")
    func format() {
        #expect(ISO8601.format(0) == "1970-01-01T00:00:00Z")
        #expect(ISO8601.format(1_795_000_000) == "2026-11-18T11:06:40Z")
    }
}
