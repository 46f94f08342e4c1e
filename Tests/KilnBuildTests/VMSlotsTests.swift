import Foundation
@testable import KilnBuild
import Testing

@Suite struct VMSlotsTests {
    @Test func aSlotIsHeldUntilReleasedAcrossDescriptors() async throws {
        let dir = NSTemporaryDirectory() + "kiln-slots-\(UUID().uuidString.prefix(6))"
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let slots = VMSlots(limit: 2, directory: dir)
        var a: VMSlots.Slot? = try await slots.acquire()
        let b = try await slots.acquire()
        #expect(a != nil && a?.index != b.index)
        #expect(try slots.tryAcquire() == nil, "both slots are taken (flock is per open file, so this process is refused too)")
        let waited = Task { try? await slots.acquire() }
        try await Task.sleep(for: .milliseconds(700))
        a = nil
        let c = await waited.value
        #expect(c != nil, "a freed slot is taken by the waiter")
        _ = b
    }

    /// A slot file that cannot be opened fails at once instead of waiting for ever (CI saw a build as another
    /// user wait 20 minutes on root's slot directory).
    @Test func aSlotDirectoryThatCannotBeUsedIsAnError() async throws {
        let file = NSTemporaryDirectory() + "kiln-slots-file-\(UUID().uuidString.prefix(6))"
        #expect(FileManager.default.createFile(atPath: file, contents: Data()))
        defer { try? FileManager.default.removeItem(atPath: file) }
        let slots = VMSlots(limit: 1, directory: file)  // a file, not a directory: open fails (ENOTDIR), also as root
        await #expect(throws: VMSlotsError.unusable(path: file + "/slot-0", reason: String(cString: strerror(ENOTDIR)))) {
            _ = try await slots.acquire()
        }
    }

    @Test func theEnvironmentTurnsItOn() {
        #expect(VMSlots.fromEnvironment([:]) == nil)
        #expect(VMSlots.fromEnvironment(["KILN_MAX_VMS": "0"]) == nil)
        #expect(VMSlots.fromEnvironment(["KILN_MAX_VMS": "2", "KILN_VM_SLOTS_DIR": "/tmp/x"])?.limit == 2)
        #expect(VMSlots.fromEnvironment(["KILN_MAX_VMS": "3"])?.directory == "/tmp/kiln-vm-slots-\(getuid())")
    }
}
