import Foundation
import KilnSystem
import Testing

@Suite struct ProcessRunnerTests {
    @Test func capturesOutputAndStatus() async throws {
        let r = try await ProcessRunner.run("sh", ["-c", "echo out; echo err >&2; exit 3"])
        #expect(r.status == 3 && r.stdout == "out\n" && r.stderr == "err\n")
        await #expect(throws: CommandError.self) { try await ProcessRunner.check("sh", ["-c", "exit 1"]) }
    }

    @Test func timesOut() async throws {
        let start = ContinuousClock.now
        do {
            _ = try await ProcessRunner.run("sleep", ["120"], timeout: .seconds(1))
            Issue.record("did not time out")
        } catch {
            #expect(error.reason?.contains("timed out") == true)
        }
        // Far below the sleep; generous, as the suite runs beside VM builds on two cores (12 s seen in CI).
        #expect(ContinuousClock.now - start < .seconds(60))
    }

    /// Both streams well past a pipe's 64 KiB, written interleaved: nothing lost, nothing deadlocked, lines whole.
    @Test func largeOutputOnBothStreams() async throws {
        let lines = LineCounter()
        let r = try await ProcessRunner.run(
            "sh", ["-c", "i=0; while [ $i -lt 20000 ]; do echo \"out $i\"; echo \"err $i\" >&2; i=$((i+1)); done"],
            onOutputLine: { lines.add($0) })
        #expect(r.status == 0)
        #expect(r.stdout.split(separator: "\n").count == 20000 && r.stdout.hasSuffix("out 19999\n"))
        #expect(r.stderr.split(separator: "\n").count == 20000 && r.stderr.hasPrefix("err 0\nerr 1\n"))
        #expect(lines.count == 40000)
    }

    /// Input, working directory and environment reach the child; a child that stops reading its input early
    /// costs nothing (EPIPE on the writer's side, no SIGPIPE for the process).
    @Test func inputDirectoryAndEnvironment() async throws {
        let echoed = try await ProcessRunner.check("cat", [], input: Data("piped in\n".utf8))
        #expect(echoed.stdout == "piped in\n")
        let big = Data(repeating: 0x61, count: 4 << 20)
        let head = try await ProcessRunner.check("head", ["-c", "5"], input: big)
        #expect(head.stdout == "aaaaa")
        let pwd = try await ProcessRunner.check("pwd", [], currentDirectory: "/tmp")
        #expect(pwd.stdout == "/tmp\n")
        let env = try await ProcessRunner.check("sh", ["-c", "echo $KILN_RUNNER_TEST"], environment: ["KILN_RUNNER_TEST": "from-kiln"])
        #expect(env.stdout == "from-kiln\n")
        let killed = try await ProcessRunner.run("sh", ["-c", "kill -TERM $$"])
        #expect(killed.status == 128 + SIGTERM)
    }

    /// The child starts with default signal handling and nothing blocked, whatever this process ignores
    /// (SIGPIPE, for libgit2) or blocks (Dispatch's threads block signals).
    @Test func childrenGetDefaultSignals() async throws {
        signal(SIGPIPE, SIG_IGN)
        let r = try await ProcessRunner.check("grep", ["-E", "^Sig(Ign|Blk):", "/proc/self/status"])
        let masks = Dictionary(
            uniqueKeysWithValues: r.stdout.split(separator: "\n").map { line -> (String, UInt64) in
                let f = line.split(separator: "\t")
                return (String(f[0]), UInt64(f[1], radix: 16) ?? .max)
            })
        let bit = { (sig: Int32) -> UInt64 in 1 << UInt64(sig - 1) }
        #expect(masks["SigIgn:"].map { $0 & (bit(SIGPIPE) | bit(SIGTERM) | bit(SIGINT)) } == 0, "\(r.stdout)")
        #expect(masks["SigBlk:"] == 0, "\(r.stdout)")
    }

    /// A command that leaves a process behind holding its output (a daemon) returns after the grace period
    /// with what it printed itself.
    @Test func aLeftBehindProcessDoesNotHoldTheCommand() async throws {
        let start = ContinuousClock.now
        let r = try await ProcessRunner.run("sh", ["-c", "sleep 60 & echo $!"])
        #expect(ContinuousClock.now - start < .seconds(30))
        let pid = try #require(pid_t(r.stdout.trimmingCharacters(in: .whitespacesAndNewlines)), "\(r.stdout)")
        #expect(r.status == 0 && kill(pid, 0) == 0, "the left-behind sleep is still running")
        kill(pid, SIGKILL)
    }

    /// Many short commands in flight at once, as a controller with several builds runs them. With
    /// `readabilityHandler` this churn crashed the process in libdispatch (`_dispatch_event_loop_drain`, a
    /// SIGSEGV at 0x30): twice in three runs of 4,000 commands here, and once in CI. (300 here: the suite runs
    /// in parallel, and more spawns slowed other tests enough to fail them.)
    @Test func manyConcurrentCommands() async throws {
        try await withThrowingTaskGroup(of: Void.self) { group in
            for i in 0..<300 {
                if i >= 8 { try await group.next() }
                group.addTask {
                    let r = try await ProcessRunner.run("sh", ["-c", "echo \(i); echo e\(i) >&2"])
                    #expect(r.stdout == "\(i)\n" && r.stderr == "e\(i)\n")
                }
            }
            try await group.waitForAll()
        }
    }

    @Test func missingProgramSaysHowToInstall() async {
        do {
            _ = try await ProcessRunner.run("kiln-no-such-tool", [])
            Issue.record("ran a missing program")
        } catch {
            #expect(error.description.contains("not installed"))
        }
    }
}

final class LineCounter: @unchecked Sendable {
    private let lock = NSLock()
    private var n = 0
    func add(_: String) { lock.withLock { n += 1 } }
    var count: Int { lock.withLock { n } }
}
