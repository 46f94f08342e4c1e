import Foundation
import Testing
import KilnStore
@testable import KilnBuild

@Suite struct VMSizeTests {
    @Test func sizesFromTheTableAndFromTheName() {
        let big = 64 * 1024
        #expect(VMSize.resolve("Standard_D4s_v3", generation: .v2, hostCPUs: 16, hostMemoryMiB: big) == VMSize(cpus: 4, memoryMiB: 16384))
        #expect(VMSize.resolve("standard_b1s", generation: .v2, hostCPUs: 16, hostMemoryMiB: big) == VMSize(cpus: 1, memoryMiB: 1024))
        #expect(VMSize.resolve("Standard_D8s_v5", generation: .v2, hostCPUs: 16, hostMemoryMiB: big) == VMSize(cpus: 8, memoryMiB: 32768))
        #expect(VMSize.resolve("Odd", generation: .v2, hostCPUs: 16, hostMemoryMiB: big) == VMSize(cpus: 2, memoryMiB: 4096))
        // AIB's defaults per generation.
        #expect(VMSize.resolve("", generation: .v1, hostCPUs: 16, hostMemoryMiB: big) == VMSize(cpus: 1, memoryMiB: 3584))
        #expect(VMSize.resolve("", generation: .v2, hostCPUs: 16, hostMemoryMiB: big) == VMSize(cpus: 2, memoryMiB: 8192))
    }

    @Test func cappedByTheHost() {
        #expect(VMSize.resolve("Standard_D8s_v5", generation: .v2, hostCPUs: 2, hostMemoryMiB: 4096) == VMSize(cpus: 2, memoryMiB: 2048))
        #expect(VMSize.resolve("Standard_D8s_v5", generation: .v2, hostCPUs: 2, hostMemoryMiB: 600) == VMSize(cpus: 2, memoryMiB: 512))
    }

    /// A fake /sys/fs/cgroup and /proc/self/cgroup: the parsing, both versions, the walk up to the root.
    @Test func cgroupLimitsV1AndV2() throws {
        let dir = NSTemporaryDirectory() + "kiln-cgroup-\(UUID().uuidString.prefix(8))"
        defer { try? FileManager.default.removeItem(atPath: dir) }
        func write(_ path: String, _ text: String) throws {
            try FileManager.default.createDirectory(atPath: (dir + path as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
            try text.write(toFile: dir + path, atomically: true, encoding: .utf8)
        }
        let gib: UInt64 = 1 << 30
        // v2: the limit of a parent group applies to its children.
        try write("/v2/cgroup.controllers", "cpu memory\n")
        try write("/v2/kubepods/memory.max", "\(3 * gib)\n")
        try write("/v2/kubepods/pod1/memory.max", "max\n")
        try write("/v2/kubepods/pod1/kiln/memory.max", "max\n")
        try write("/self-v2", "0::/kubepods/pod1/kiln\n")
        #expect(HostMemory.cgroupLimitBytes(root: dir + "/v2", selfCgroup: dir + "/self-v2") == 3 * gib)
        #expect(HostMemory.availableMiB(physicalBytes: 24 * gib, cgroupRoot: dir + "/v2", selfCgroup: dir + "/self-v2") == 3072)
        #expect(HostMemory.availableMiB(physicalBytes: 2 * gib, cgroupRoot: dir + "/v2", selfCgroup: dir + "/self-v2") == 2048)
        // v2 inside a cgroup namespace: the path is not under the mount; the mount's root is the container's group.
        try write("/v2ns/cgroup.controllers", "memory\n")
        try write("/v2ns/memory.max", "\(2 * gib)\n")
        try write("/self-v2ns", "0::/kubepods/pod9/abc\n")
        #expect(HostMemory.cgroupLimitBytes(root: dir + "/v2ns", selfCgroup: dir + "/self-v2ns") == 2 * gib)
        // v1: the memory controller's line; "unlimited" is a huge number.
        try write("/v1/memory/memory.limit_in_bytes", "9223372036854771712\n")
        try write("/v1/memory/docker/c1/memory.limit_in_bytes", "\(gib)\n")
        try write("/self-v1", "12:pids:/docker/c1\n4:cpu,memory:/docker/c1\n0::/\n")
        #expect(HostMemory.cgroupLimitBytes(root: dir + "/v1", selfCgroup: dir + "/self-v1") == gib)
        try write("/self-v1-free", "4:memory:/\n")
        #expect(HostMemory.cgroupLimitBytes(root: dir + "/v1", selfCgroup: dir + "/self-v1-free") == nil)
        #expect(HostMemory.availableMiB(physicalBytes: 24 * gib, cgroupRoot: dir + "/v1", selfCgroup: dir + "/self-v1-free") == 24 * 1024)
        // No cgroup information at all.
        #expect(HostMemory.cgroupLimitBytes(root: dir + "/none", selfCgroup: dir + "/missing") == nil)
    }

    /// The real kernel: a process put in a new memory cgroup limited to 1 GiB is seen with 1 GiB, and a build
    /// VM for it gets half of that, not half of the machine.
    @Test func aRealCgroupLimitCapsTheVM() throws {
        guard geteuid() == 0 else {
            print("skipped: creating a cgroup needs root")
            return
        }
        let table = try String(contentsOfFile: "/proc/self/cgroup", encoding: .utf8)
        let root = "/sys/fs/cgroup"
        let unified = FileManager.default.fileExists(atPath: root + "/cgroup.controllers")
        let mount = unified ? root : root + "/memory"
        let own =
            table.split(separator: "\n").compactMap { line -> String? in
                let f = line.split(separator: ":", maxSplits: 2, omittingEmptySubsequences: false)
                guard f.count == 3 else { return nil }
                return (unified ? f[0] == "0" : f[1].split(separator: ",").contains("memory")) ? String(f[2]) : nil
            }.first ?? "/"
        let parent = FileManager.default.fileExists(atPath: mount + own) ? mount + own : mount
        let group = parent + "/kiln-test-\(getpid())"
        guard mkdir(group, 0o755) == 0 else {
            print("skipped: cannot create a cgroup under \(parent): \(String(cString: strerror(errno)))")
            return
        }
        let sleeper = Process()
        sleeper.executableURL = URL(fileURLWithPath: "/bin/sleep")
        sleeper.arguments = ["60"]
        try sleeper.run()
        defer {
            kill(sleeper.processIdentifier, SIGKILL)
            sleeper.waitUntilExit()
            rmdir(group)
        }
        try "\(1 << 30)\n".write(toFile: group + (unified ? "/memory.max" : "/memory.limit_in_bytes"), atomically: false, encoding: .utf8)
        try "\(sleeper.processIdentifier)\n".write(toFile: group + "/cgroup.procs", atomically: false, encoding: .utf8)
        let mib = HostMemory.availableMiB(selfCgroup: "/proc/\(sleeper.processIdentifier)/cgroup")
        #expect(mib == 1024)
        #expect(VMSize.resolve("", generation: .v2, hostCPUs: 2, hostMemoryMiB: mib).memoryMiB == 512)
        // This process, outside the group, still sees the machine's memory (or its own limit).
        #expect(HostMemory.availableMiB() > 1024)
    }
}
