import Testing
@testable import DirectLine

@Suite("call options")
struct CallOptionsTests {
    @Test("wait options: defaults, limits and unknown keys")
    func waitOptions() throws {
        let defaults = try WaitOptions(json: nil)
        #expect(defaults.timeoutMs == 10_000 && defaults.intervalMs == 1_000 && defaults.afterSendMs == 300)
        #expect(defaults.userIds == nil && !defaults.includeOwn)
        let set = try WaitOptions(json: JSONParser.parse(
            #"{"timeoutMs":0,"intervalMs":50,"afterSendMs":0,"userId":"me","includeOwn":true}"#))
        #expect(set.timeoutMs == 0 && set.intervalMs == 50 && set.userIds == ["me"] && set.includeOwn)
        for bad in [#"{"timeout":1}"#, #"{"intervalMs":0}"#, #"{"timeoutMs":-1}"#, #"{"timeoutMs":"5"}"#,
                    #"{"userId":".."}"#, #"{"includeOwn":1}"#, #"[]"#] {
            #expect(throws: DirectLineError.self) { try WaitOptions(json: JSONParser.parse(bad)) }
        }
    }
}
