import Foundation
import Testing
@testable import DirectLine

@Suite("callback slots")
struct CallbackSlotTests {
    final class Flag: @unchecked Sendable {
        private let lock = NSLock()
        private var value = false
        func set() { lock.lock(); value = true; lock.unlock() }
        var isSet: Bool { lock.lock(); defer { lock.unlock() }; return value }
    }

    @Test("replacing the callback waits until no call of the old one is in progress")
    func replacementWaits() throws {
        let slot = CallbackSlot<ProgressReporter>()
        slot.replace(with: ProgressReporter { _, _ in true })
        #expect(slot.isInstalled)
        let call = try #require(slot.pin())
        #expect(call.callback.report(1, 2), "the pin holds the installed callback")

        let returned = Flag()
        let done = DispatchSemaphore(value: 0)
        Thread.detachNewThread {
            slot.replace(with: nil)
            returned.set()
            done.signal()
        }
        Thread.sleep(forTimeInterval: 0.2)
        #expect(!returned.isSet, "the replacement returned while a call of the old callback was in progress")
        call.unpin()
        #expect(done.wait(timeout: .now() + 10) == .success)
        #expect(returned.isSet)
        // No callback: nothing to pin.
        #expect(slot.pin() == nil)
        #expect(!slot.isInstalled)
    }
}
