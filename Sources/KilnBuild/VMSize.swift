import Foundation

/// Azure VM sizes mapped to a build VM's vCPUs and memory, capped by the host.
///
/// The table covers the sizes AIB templates use; an unknown size is read from its name where Azure's naming
/// says the vCPU count (`Standard_D8s_v5` → 8), with 4 GiB per vCPU, else 2 vCPUs and 4 GiB.
public struct VMSize: Sendable, Hashable {
    public var cpus: Int
    public var memoryMiB: Int

    static let table: [String: (Int, Int)] = [
        "standard_a1_v2": (1, 2048), "standard_a2_v2": (2, 4096), "standard_a4_v2": (4, 8192),
        "standard_b1s": (1, 1024), "standard_b1ms": (1, 2048), "standard_b2s": (2, 4096), "standard_b2ms": (2, 8192),
        "standard_d1_v2": (1, 3584), "standard_d2_v2": (2, 7168), "standard_d3_v2": (4, 14336), "standard_d4_v2": (8, 28672),
        "standard_ds1_v2": (1, 3584), "standard_ds2_v2": (2, 7168),
        "standard_d2s_v3": (2, 8192), "standard_d4s_v3": (4, 16384), "standard_d2_v3": (2, 8192), "standard_d4_v3": (4, 16384),
        "standard_d2ds_v4": (2, 8192), "standard_d4ds_v4": (4, 16384), "standard_d2s_v4": (2, 8192), "standard_d4s_v4": (4, 16384),
        "standard_d2s_v5": (2, 8192), "standard_d4s_v5": (4, 16384), "standard_d2ds_v5": (2, 8192), "standard_d4ds_v5": (4, 16384)
    ]

    /// The size for `vmSize` ("" → AIB's default for the generation), capped by the host.
    public static func resolve(
        _ vmSize: String, generation: HyperVGeneration, hostCPUs: Int = ProcessInfo.processInfo.activeProcessorCount,
        hostMemoryMiB: Int = HostMemory.availableMiB()
    ) -> VMSize {
        let name = vmSize.isEmpty ? (generation == .v1 ? "Standard_D1_v2" : "Standard_D2ds_v4") : vmSize
        var (cpus, mem) = table[name.lowercased()] ?? fromName(name)
        cpus = max(1, min(cpus, hostCPUs))
        // Leave the host at least half its memory; a TCG guest touches what it uses only.
        mem = max(512, min(mem, hostMemoryMiB / 2))
        return VMSize(cpus: cpus, memoryMiB: mem)
    }

    static func fromName(_ name: String) -> (Int, Int) {
        // Standard_<family><vcpus><features>_v<n>
        let parts = name.split(separator: "_")
        guard parts.count >= 2 else { return (2, 4096) }
        let digits = parts[1].drop(while: { $0.isLetter }).prefix(while: { $0.isNumber })
        guard let n = Int(digits), n > 0 else { return (2, 4096) }
        return (n, n * 4096)
    }
}

import KilnStore

/// The memory Kiln may use: the machine's, or less where a control group limits it — a container's memory
/// limit (Kubernetes `resources.limits.memory`), systemd's `MemoryMax=`. A VM sized from the physical memory
/// alone would get the process OOM-killed in a pod with a small limit.
public enum HostMemory {
    /// The smaller of the physical memory and the memory limit of this process's control group, in MiB.
    public static func availableMiB(
        physicalBytes: UInt64 = ProcessInfo.processInfo.physicalMemory,
        cgroupRoot: String = "/sys/fs/cgroup", selfCgroup: String = "/proc/self/cgroup"
    ) -> Int {
        let limit = cgroupLimitBytes(root: cgroupRoot, selfCgroup: selfCgroup) ?? .max
        return Int(min(physicalBytes, limit) >> 20)
    }

    /// The tightest memory limit on the way from this process's control group up to the root, or nil for none.
    /// cgroup v2 (`memory.max`, "max" for none) when the root is unified, else v1's memory controller
    /// (`memory.limit_in_bytes`, a huge number for none). Inside a container the group's path from
    /// /proc/self/cgroup may not exist under the mount (a cgroup namespace shows the group as the root): then the
    /// root itself is read.
    static func cgroupLimitBytes(root: String, selfCgroup: String) -> UInt64? {
        guard let table = try? String(contentsOfFile: selfCgroup, encoding: .utf8) else { return nil }
        let fm = FileManager.default
        let unified = fm.fileExists(atPath: root + "/cgroup.controllers")
        let mount = unified ? root : root + "/memory"
        let file = unified ? "memory.max" : "memory.limit_in_bytes"
        var path: String?
        for line in table.split(separator: "\n") {
            // hierarchy-id:controllers:path
            let fields = line.split(separator: ":", maxSplits: 2, omittingEmptySubsequences: false)
            guard fields.count == 3 else { continue }
            if unified ? fields[0] == "0" && fields[1].isEmpty : fields[1].split(separator: ",").contains("memory") {
                path = String(fields[2])
            }
        }
        guard var relative = path else { return nil }
        if !fm.fileExists(atPath: mount + relative) { relative = "/" }
        var best: UInt64?
        while true {
            let dir = relative == "/" ? mount : mount + relative
            if let text = try? String(contentsOfFile: dir + "/" + file, encoding: .utf8),
                let value = UInt64(text.trimmingCharacters(in: .whitespacesAndNewlines)), value < 1 << 62
            {
                best = min(best ?? value, value)
            }
            if relative == "/" || relative.isEmpty { break }
            relative = (relative as NSString).deletingLastPathComponent
        }
        return best
    }
}
