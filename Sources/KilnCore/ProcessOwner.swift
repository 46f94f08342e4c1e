import Foundation
import KilnBuild
import KilnStore

extension RunOwner {
    /// This process.
    public static var current: RunOwner {
        let pid = getpid()
        return RunOwner(pid: pid, startTicks: startTicks(of: pid) ?? 0, bootId: currentBootId)
    }

    /// Whether the process that owns a run still exists: same boot, same pid, same start time (a pid alone
    /// may have been reused by an unrelated process after a crash).
    public var isAlive: Bool {
        guard bootId == Self.currentBootId else { return false }
        guard let ticks = Self.startTicks(of: pid) else { return false }
        return ticks == startTicks
    }

    static let currentBootId: String = {
        (try? String(contentsOfFile: "/proc/sys/kernel/random/boot_id", encoding: .utf8))?.trimmingCharacters(in: .whitespacesAndNewlines) ?? "unknown"
    }()

    /// Field 22 of `/proc/<pid>/stat` (after the parenthesised command name, which may contain spaces).
    static func startTicks(of pid: Int32) -> UInt64? {
        guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
            let close = stat.lastIndex(of: ")")
        else { return nil }
        let fields = stat[stat.index(after: close)...].split(separator: " ")
        // fields[0] is the state (field 3), so field 22 is fields[19].
        guard fields.count > 19 else { return nil }
        // A zombie has exited; it only waits for its parent.
        if fields[0] == "Z" { return nil }
        return UInt64(fields[19])
    }
}

/// Build VMs a run left behind: found by the pid files under its work directory.
enum Leftovers {
    /// Kills every QEMU process whose pid file is under `directory` and whose command line names the run.
    /// Returns the pids that were stopped.
    @discardableResult
    static func stopVMs(in directory: String, runId: String) -> [Int32] {
        guard let walker = FileManager.default.enumerator(atPath: directory) else { return [] }
        var stopped: [Int32] = []
        for case let rel as String in walker where (rel as NSString).lastPathComponent == "qemu.pid" {
            let file = (directory as NSString).appendingPathComponent(rel)
            guard let text = try? String(contentsOfFile: file, encoding: .utf8),
                let pid = Int32(text.trimmingCharacters(in: .whitespacesAndNewlines)), pid > 1
            else { continue }
            // Only a QEMU started for this run: never a process that reused the pid.
            guard VirtualMachine.isQEMU(pid: pid, name: runId) else { continue }
            kill(pid, SIGKILL)
            for _ in 0..<50 where kill(pid, 0) == 0 && RunOwner.startTicks(of: pid) != nil { usleep(100_000) }
            stopped.append(pid)
        }
        return stopped
    }
}
