import Foundation
@testable import KilnBuild
import Testing

@Suite struct VMSlotsTests {
    @Test func aSlotIsHeldUntilReleasedAcrossDescriptors() async throws {
        let dir = NSTemporaryDirectory() + "kiln-slots-\(UUID().uuidString.prefix(6))"
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let slots = VMSlots(limit: 2, directory: dir)
        var a = await slots.acquire()
        let b = await slots.acquire()
        #expect(a != nil && b != nil && a?.index != b?.index)
        #expect(slots.tryAcquire() == nil, "both slots are taken (flock is per open file, so this process is refused too)")
        let waited = Task { await slots.acquire() }
        try await Task.sleep(for: .milliseconds(700))
        a = nil
        let c = await waited.value
        #expect(c != nil, "a freed slot is taken by the waiter")
        _ = b
    }

    @Test func theEnvironmentTurnsItOn() {
        #expect(VMSlots.fromEnvironment([:]) == nil)
        #expect(VMSlots.fromEnvironment(["KILN_MAX_VMS": "0"]) == nil)
        #expect(VMSlots.fromEnvironment(["KILN_MAX_VMS": "2", "KILN_VM_SLOTS_DIR": "/tmp/x"])?.limit == 2)
        #expect(VMSlots.fromEnvironment(["KILN_MAX_VMS": "3"])?.directory == "/tmp/kiln-vm-slots-\(getuid())")
    }
}
