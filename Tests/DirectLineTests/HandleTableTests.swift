import Foundation
import Testing
@testable import DirectLine

@Suite("handle table")
struct HandleTableTests {
    final class Thing: Sendable {}

    @Test("a freed handle, a forged one and NULL are refused; slots are reused safely")
    func lifecycle() throws {
        let table = HandleTable()
        let client = DirectLineClient(config: try ClientConfig(json: JSONParser.parse(#"{"secret":"s"}"#)))
        let handle = try #require(table.insert(client))
        #expect(try table.lookup(handle, as: DirectLineClient.self) === client)
        #expect(throws: DirectLineError.self) { try table.lookup(handle, as: Conversation.self) }
        try table.remove(handle, as: DirectLineClient.self)
        #expect(throws: DirectLineError.self) { try table.lookup(handle, as: DirectLineClient.self) }
        #expect(throws: DirectLineError.self) { try table.remove(handle, as: DirectLineClient.self) }
        let reused = try #require(table.insert(client))
        #expect(reused != handle)
        #expect(throws: DirectLineError.self) { try table.lookup(handle, as: DirectLineClient.self) }
        #expect(throws: DirectLineError.self) { try table.lookup(nil, as: DirectLineClient.self) }
        for forged in [1, 0xdead_beef, UInt.max, 0x7fff_0000_1234] as [UInt] {
            #expect(throws: DirectLineError.self) { try table.lookup(OpaquePointer(bitPattern: forged), as: DirectLineClient.self) }
        }
    }
}
