import Foundation
import Testing
@testable import DirectLine

@Suite("status codes")
struct StatusTests {
    @Test("each status's name matches its declaration in include/directline.h")
    func namesMatchHeader() throws {
        let header = try String(contentsOfFile: #filePath.replacingAll("Tests/DirectLineTests/StatusTests.swift", with: "include/directline.h"), encoding: .utf8)
        for status in Status.allCases {
            #expect(header.contains("    \(status.name) = \(status.rawValue),"), "\(status.name)")
        }
        #expect(Set(Status.allCases.map(\.name)).count == Status.allCases.count)
    }

    @Test("the Swift codes and their C faces agree: dl_status and dl_log_level")
    func cFacesAgree() {
        #expect(Status.allCases.map(\.rawValue) == dl_status.allCases.map(\.rawValue))
        for level in [LogLevel.off, .error, .warn, .info, .debug] {
            #expect(dl_log_level(rawValue: level.rawValue) != nil)
        }
        #expect(dl_log_level(rawValue: 5) == nil && LogLevel(rawValue: 5) == nil)
    }
}
