import Foundation
import Testing
@testable import DirectLine

@Suite("progress callback replacement")
struct CallbackSlotTests {
    final class Flag: @unchecked Sendable {
        private let lock = NSLock()
        private var value = false
        func set() { lock.lock(); value = true; lock.unlock() }
        var isSet: Bool { lock.lock(); defer { lock.unlock() }; return value }
    }

    @Test("replacing the callback waits until no running transfer uses the old one")
    func replacementWaits() throws {
        let client = DirectLineClient(config: try ClientConfig(json: JSONParser.parse(#"{"secret":"s"}"#)))
        let conversation = try client.openConversation(JSONParser.parse(#"{"conversationId":"c"}"#))
        conversation.setProgress(ProgressReporter { _, _ in true })
        let transfer = try #require(conversation.pinProgress())
        #expect(transfer.callback.report(1, 2), "the pin holds the installed callback")

        let returned = Flag()
        let done = DispatchSemaphore(value: 0)
        Thread.detachNewThread {
            conversation.setProgress(nil)
            returned.set()
            done.signal()
        }
        Thread.sleep(forTimeInterval: 0.2)
        #expect(!returned.isSet, "setProgress returned while a transfer still used the old callback")
        transfer.unpin()
        #expect(done.wait(timeout: .now() + 10) == .success)
        #expect(returned.isSet)
        // No callback: nothing to pin.
        #expect(conversation.pinProgress() == nil)
    }
}
