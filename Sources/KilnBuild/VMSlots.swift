import Foundation

/// A host-wide limit on running build VMs, across every process (CLI, workers, the test runner): under TCG
/// each vCPU is a host thread, and more guests than cores starve each other until SSH handshakes and reboots
/// time out. `KILN_MAX_VMS=N` turns it on (`scripts/test` sets it to the number of cores); unset, there is
/// no limit beyond the worker pool's parallelism.
///
/// A slot is an exclusive `flock` on `slot-<i>` in `KILN_VM_SLOTS_DIR` (default `/tmp/kiln-vm-slots-<uid>`):
/// the kernel releases it when the holder closes it or dies, so a crashed process never leaks one.
public struct VMSlots: Sendable {
    public var limit: Int
    public var directory: String

    public init(limit: Int, directory: String) {
        self.limit = max(1, limit)
        self.directory = directory
    }

    /// From the environment; nil when no limit is set.
    public static func fromEnvironment(_ env: [String: String] = ProcessInfo.processInfo.environment) -> VMSlots? {
        guard let text = env["KILN_MAX_VMS"], let n = Int(text), n > 0 else { return nil }
        let dir = env["KILN_VM_SLOTS_DIR"].flatMap { $0.isEmpty ? nil : $0 } ?? "/tmp/kiln-vm-slots-\(getuid())"
        return VMSlots(limit: n, directory: dir)
    }

    /// A held slot; closing it (or the process ending) frees it.
    public final class Slot: Sendable {
        public let index: Int
        private let fd: Int32
        init(index: Int, fd: Int32) {
            self.index = index
            self.fd = fd
        }
        deinit { close(fd) }
    }

    /// Waits for a free slot; `onWait` is called once if it has to wait. Cancellation ends the wait. A slot
    /// file this process cannot open (another user's directory) is an error at once: waiting would never end.
    public func acquire(onWait: @Sendable () -> Void = {}) async throws(VMSlotsError) -> Slot {
        try? FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        var told = false
        while !Task.isCancelled {
            if let slot = try tryAcquire() { return slot }
            if !told {
                onWait()
                told = true
            }
            try? await Task.sleep(for: .milliseconds(500))
        }
        throw .canceled
    }

    func tryAcquire() throws(VMSlotsError) -> Slot? {
        for i in 0..<limit {
            let path = (directory as NSString).appendingPathComponent("slot-\(i)")
            let fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0o666)
            guard fd >= 0 else { throw .unusable(path: path, reason: String(cString: strerror(errno))) }
            if flock(fd, LOCK_EX | LOCK_NB) == 0 { return Slot(index: i, fd: fd) }
            close(fd)
        }
        return nil
    }
}

public enum VMSlotsError: Error, Sendable, Hashable, CustomStringConvertible {
    case canceled
    /// The slot file cannot be opened (KILN_VM_SLOTS_DIR belongs to another user, …).
    case unusable(path: String, reason: String)

    public var description: String {
        switch self {
        case .canceled: return "canceled while waiting for a free VM slot"
        case .unusable(let path, let reason): return "cannot use the VM slot \(path) (KILN_VM_SLOTS_DIR): \(reason)"
        }
    }
}
