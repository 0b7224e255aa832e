import Testing
@testable import DirectLine

/// What the configuration suites share: a config from JSON text, and the
/// message of a refused one.
protocol ConfigParsing {}

extension ConfigParsing {
    func config(_ text: String) throws -> ClientConfig {
        try ClientConfig(json: JSONParser.parse(text))
    }

    /// The refusal's message (it must be DL_ERR_INVALID_ARGUMENT), or nil when accepted.
    func refusal(_ text: String) -> String? {
        do {
            _ = try config(text)
            return nil
        } catch let error as DirectLineError {
            #expect(error.status == .invalidArgument)
            return error.message
        } catch {
            return "unexpected \(error)"
        }
    }
}
