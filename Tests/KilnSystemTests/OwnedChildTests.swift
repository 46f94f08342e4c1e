import Foundation
import KilnSystem
import Testing

/// Children bound to this process (build VMs): their guard kills them when told this process died, lets them go
/// when released, and both are reaped as soon as they exit.
@Suite struct OwnedChildTests {
    static func alive(_ pid: pid_t) -> Bool {
        guard kill(pid, 0) == 0, let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
            let close = stat.lastIndex(of: ")")
        else { return false }
        return !stat[stat.index(after: close)...].trimmingCharacters(in: .whitespaces).hasPrefix("Z")
    }

    /// Whether `pid` has a handler for SIGTERM installed (the guard's trap is set).
    static func catchesTERM(_ pid: pid_t) -> Bool {
        guard let status = try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8),
            let line = status.split(separator: "\n").first(where: { $0.hasPrefix("SigCgt:") }),
            let mask = UInt64(line.dropFirst("SigCgt:".count).trimmingCharacters(in: .whitespaces), radix: 16)
        else { return false }
        return mask & (1 << (UInt64(SIGTERM) - 1)) != 0
    }

    static func eventually(_ timeout: Duration, _ condition: () -> Bool) async -> Bool {
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            if condition() { return true }
            try? await Task.sleep(for: .milliseconds(50))
        }
        return condition()
    }

    @Test func theGuardKillsTheChildWhenTheOwnerDies() async throws {
        let child = try BackgroundProcess.spawnOwned("/bin/sleep", ["300"], output: "/dev/null")
        let guardPid = try #require(child.guardPid, "setpriv (util-linux) is missing")
        #expect(Self.alive(child.pid) && Self.alive(guardPid))
        #expect(await Self.eventually(.seconds(5)) { Self.catchesTERM(guardPid) }, "the guard set its trap")
        // What the kernel's parent-death signal does when this process dies.
        kill(guardPid, SIGTERM)
        #expect(await Self.eventually(.seconds(5)) { !Self.alive(child.pid) }, "the child outlived its owner")
        #expect(await Self.eventually(.seconds(5)) { kill(child.pid, 0) != 0 && kill(guardPid, 0) != 0 }, "both are reaped, no zombie left")
    }

    @Test func aReleasedChildOutlivesItsGuard() async throws {
        let child = try BackgroundProcess.spawnOwned("/bin/sleep", ["300"], output: "/dev/null")
        let guardPid = try #require(child.guardPid)
        child.release()
        #expect(await Self.eventually(.seconds(5)) { kill(guardPid, 0) != 0 }, "the guard is gone and reaped")
        try await Task.sleep(for: .milliseconds(300))
        #expect(Self.alive(child.pid), "a released child keeps running")
        kill(child.pid, SIGKILL)
        #expect(await Self.eventually(.seconds(5)) { kill(child.pid, 0) != 0 }, "reaped when it exits")
    }

    @Test func theGuardEndsWithTheChild() async throws {
        let child = try BackgroundProcess.spawnOwned("/bin/sleep", ["0.2"], output: "/dev/null")
        let guardPid = try #require(child.guardPid)
        #expect(await Self.eventually(.seconds(5)) { kill(child.pid, 0) != 0 && kill(guardPid, 0) != 0 })
    }

    /// Spawned from several tasks at once, every child gets its own guard.
    @Test func concurrentSpawns() async throws {
        let children = try await withThrowingTaskGroup(of: OwnedChild.self) { group in
            for _ in 0..<8 { group.addTask { try BackgroundProcess.spawnOwned("/bin/sleep", ["300"], output: "/dev/null") } }
            return try await group.reduce(into: []) { $0.append($1) }
        }
        #expect(Set(children.map(\.pid)).count == 8 && Set(children.compactMap(\.guardPid)).count == 8)
        #expect(await Self.eventually(.seconds(5)) { children.allSatisfy { Self.catchesTERM($0.guardPid!) } })
        for c in children { kill(c.guardPid!, SIGTERM) }
        #expect(await Self.eventually(.seconds(5)) { children.allSatisfy { kill($0.pid, 0) != 0 } })
    }
}
