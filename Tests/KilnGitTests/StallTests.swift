import Foundation
@testable import KilnGit
import KilnTestSupport
import Testing

/// A TCP port on loopback that completes connections (the kernel's backlog does) and never says a word: an SSH
/// server that hangs before its banner, a TLS server that never sends its hello, an HTTP server that never
/// answers. libgit2 1.5 would wait on it for ever.
final class MuteServer {
    let fd: Int32
    let port: Int

    init() throws {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        self.fd = fd
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        var len = socklen_t(MemoryLayout<sockaddr_in>.size)
        let bound = withUnsafeMutablePointer(to: &addr) { p in
            p.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, len) == 0 && listen(fd, 16) == 0 && getsockname(fd, $0, &len) == 0 }
        }
        try #require(bound, "cannot listen on 127.0.0.1")
        port = Int(UInt16(bigEndian: addr.sin_port))
    }

    deinit { close(fd) }
}

/// Durations are asserted loosely here: the suite runs beside VM builds on two cores, and a test task can wait
/// many seconds for a thread (20 s seen in CI). What tells a cut at the timeout from the keepalive rule's cut at
/// ten timeouts is the error text, not the clock.
@Suite struct StallTests {
    /// Every transport, and each of ls-remote, fetch and push: given up after the timeout, with an error that
    /// says so, and the repository usable afterwards.
    @Test(arguments: ["ssh://git@127.0.0.1:PORT/images.git", "https://127.0.0.1:PORT/images.git", "http://127.0.0.1:PORT/images.git"])
    func aMuteServerTimesOut(_ pattern: String) async throws {
        let server = try MuteServer()
        let url = pattern.replacingOccurrences(of: "PORT", with: "\(server.port)")
        let dir = try scratch()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try "".write(toFile: dir + "/known_hosts", atomically: true, encoding: .utf8)
        let hosts = try KnownHosts(path: dir + "/known_hosts")
        let repo = try GitRepository.initBare(dir + "/mirror.git")

        var start = ContinuousClock.now
        await #expect {
            _ = try await repo.remoteHeads(url, knownHosts: hosts, timeout: .seconds(2))
        } throws: { error in
            guard let e = error as? GitError else { return false }
            return e.timedOut && e.description.contains("timed out: no progress for 2.0 seconds, connection closed")
                && !e.description.contains("trickle") && e.operation.hasPrefix("connect to")
        }
        var took = ContinuousClock.now - start
        #expect(took >= .seconds(2) && took < .seconds(120), "took \(took)")

        start = .now
        await #expect {
            try await repo.fetch(url, refspecs: ["+refs/heads/main:refs/heads/main"], knownHosts: hosts, timeout: .seconds(1))
        } throws: { ($0 as? GitError).map { $0.timedOut && !$0.description.contains("trickle") } == true }
        took = ContinuousClock.now - start
        #expect(took >= .seconds(1) && took < .seconds(120), "took \(took)")

        let work = dir + "/work"
        _ = try git("init", "-q", work, in: dir)
        try "x\n".write(toFile: work + "/x", atomically: true, encoding: .utf8)
        _ = try git("add", "x", in: work)
        _ = try git("commit", "-qm", "x", in: work)
        let local = try GitRepository.open(work)
        start = .now
        await #expect {
            try await local.push(url, refspecs: ["refs/heads/main:refs/heads/main"], knownHosts: hosts, timeout: .seconds(1))
        } throws: { error in
            guard case .failed(let e) = error as? PushError else { return false }
            return e.timedOut && !e.description.contains("trickle")
        }
        took = ContinuousClock.now - start
        #expect(took < .seconds(120), "took \(took)")

        // The repository's thread is free again: local work goes on.
        #expect(try await local.resolve("HEAD") != nil)
    }

    /// A server that keeps sending a byte now and then but never gets anywhere (like keepalives in front of a
    /// hung git): the socket looks active, yet with no callback for ten timeouts the call is cut.
    @Test func keepalivesDoNotHoldACallForEver() async throws {
        let server = try MuteServer()
        let listener = server.fd
        Thread {
            let peer = accept(listener, nil, nil)
            guard peer >= 0 else { return }
            defer { close(peer) }
            var request = [UInt8](repeating: 0, count: 4096)
            _ = recv(peer, &request, request.count, 0)
            let head = "HTTP/1.1 200 OK\r\nContent-Type: application/x-git-upload-pack-advertisement\r\nContent-Length: 100000\r\n\r\nfff0"
            guard send(peer, head, head.utf8.count, Int32(MSG_NOSIGNAL)) > 0 else { return }
            // One byte of a pkt-line that never ends, every 200 ms, until the client goes away.
            while send(peer, "a", 1, Int32(MSG_NOSIGNAL)) == 1 { usleep(200_000) }
        }.start()
        let dir = try scratch()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let repo = try GitRepository.initBare(dir + "/mirror.git")
        let start = ContinuousClock.now
        await #expect {
            _ = try await repo.remoteHeads("http://127.0.0.1:\(server.port)/images.git", timeout: .seconds(1))
        } throws: { ($0 as? GitError).map { $0.timedOut && $0.description.contains("moved only a trickle of bytes for 10.0 seconds") } == true }
        let took = ContinuousClock.now - start
        #expect(took >= .seconds(9) && took < .seconds(120), "cut after ten timeouts, not one and not never: \(took)")
    }

    /// The mechanism on its own: a thread blocked in `recv` and one blocked in `poll` on a socket are released
    /// by `interrupt(thread:)`; a thread that waits on something else (a pipe) is left alone.
    @Test func interruptReleasesABlockedSocketCallOnly() async throws {
        var pair: [Int32] = [0, 0]
        #expect(socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0, &pair) == 0)
        defer { close(pair[0]); close(pair[1]) }
        var pipeFDs: [Int32] = [0, 0]
        #expect(pipe(&pipeFDs) == 0)
        defer { close(pipeFDs[0]); close(pipeFDs[1]) }

        final class Blocked: @unchecked Sendable {
            let lock = NSLock()
            var tid: pid_t = 0
            var result: Int?
            func set(_ t: pid_t) { lock.withLock { tid = t } }
            func finish(_ r: Int) { lock.withLock { result = r } }
            var snapshot: (pid_t, Int?) { lock.withLock { (tid, result) } }
        }
        func start(_ body: @escaping @Sendable () -> Int) -> Blocked {
            let b = Blocked()
            let t = Thread {
                b.set(StallWatchdog.currentThreadID() ?? 0)
                b.finish(body())
            }
            t.start()
            return b
        }
        let sock = pair[0], readEnd = pipeFDs[0]
        let viaRecv = start {
            var byte: UInt8 = 0
            return recv(sock, &byte, 1, 0)
        }
        let viaPipe = start {
            var byte: UInt8 = 0
            return read(readEnd, &byte, 1)
        }
        // Let both block.
        func waitingOn(_ b: Blocked) -> [Int32]? { StallWatchdog.blockedCall(of: b.snapshot.0).map { StallWatchdog.descriptors(of: $0) } }
        #expect(waitUntil { waitingOn(viaRecv) == [sock] && waitingOn(viaPipe) == [readEnd] })
        let (recvTid, r0) = viaRecv.snapshot
        let (pipeTid, p0) = viaPipe.snapshot
        #expect(r0 == nil && p0 == nil)
        #expect(StallWatchdog.blockedCall(of: recvTid).map { StallWatchdog.descriptors(of: $0) } == [sock])
        #expect(StallWatchdog.interrupt(thread: pipeTid) == .notBlocked, "a pipe is not a socket")
        #expect(StallWatchdog.interrupt(thread: recvTid, unlessActiveWithin: .seconds(60)) == .cut, "not TCP: no activity to go by")
        #expect(waitUntil { viaRecv.snapshot.1 != nil })
        #expect(viaRecv.snapshot.1 == 0, "recv returns end-of-file once the socket is shut down")
        #expect(viaPipe.snapshot.1 == nil, "the pipe reader still waits")
        _ = write(pipeFDs[1], "x", 1)

        // poll: the descriptor is found in the array on the blocked thread's stack.
        var pair2: [Int32] = [0, 0]
        #expect(socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0, &pair2) == 0)
        defer { close(pair2[0]); close(pair2[1]) }
        let sock2 = pair2[0]
        let viaPoll = start {
            var fds = [pollfd(fd: -1, events: 0, revents: 0), pollfd(fd: sock2, events: Int16(POLLIN), revents: 0)]
            return Int(poll(&fds, 2, -1))
        }
        #expect(waitUntil { waitingOn(viaPoll) == [sock2] })
        let pollTid = viaPoll.snapshot.0
        #expect(StallWatchdog.blockedCall(of: pollTid).map { StallWatchdog.descriptors(of: $0) } == [sock2])
        #expect(StallWatchdog.interrupt(thread: pollTid) == .cut)
        #expect(waitUntil { viaPoll.snapshot.1 != nil })
        #expect(viaPoll.snapshot.1 == 1, "poll reports the shut-down socket")
    }

    /// TCP: a socket that keeps receiving is "active" and left alone; once it has been quiet for the window it is cut.
    @Test func aTCPSocketThatMovesDataIsLeftAlone() async throws {
        let server = try MuteServer()
        let client = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(client) }
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        addr.sin_port = in_port_t(UInt16(server.port).bigEndian)
        let connected = withUnsafePointer(to: &addr) { p in
            p.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(client, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        #expect(connected == 0)
        let peer = accept(server.fd, nil, nil)
        #expect(peer >= 0)
        defer { close(peer) }

        final class Reader: @unchecked Sendable {
            let lock = NSLock()
            var tid: pid_t = 0
            var ended = false
        }
        let reader = Reader()
        Thread {
            reader.lock.withLock { reader.tid = StallWatchdog.currentThreadID() ?? 0 }
            var buffer = [UInt8](repeating: 0, count: 16)
            while recv(client, &buffer, 16, 0) > 0 {}
            reader.lock.withLock { reader.ended = true }
        }.start()
        // A byte every 100 ms, from a thread of its own, until told to stop.
        final class Flag: @unchecked Sendable {
            let lock = NSLock()
            var value = false
            var isSet: Bool { lock.withLock { value } }
        }
        let stop = Flag()
        Thread {
            while !stop.isSet {
                _ = send(peer, "x", 1, Int32(MSG_NOSIGNAL))
                usleep(100_000)
            }
        }.start()
        #expect(
            waitUntil {
                let t = reader.lock.withLock { reader.tid }
                return t != 0 && StallWatchdog.blockedCall(of: t).map { StallWatchdog.descriptors(of: $0) } == [client]
            })
        let tid = reader.lock.withLock { reader.tid }
        #expect(waitUntil { StallWatchdog.quietMilliseconds(client).map { $0 < 500 } == true })
        #expect(StallWatchdog.interrupt(thread: tid, unlessActiveWithin: .seconds(5)) == .active)
        #expect(reader.lock.withLock { !reader.ended })
        // Quiet for longer than the window: cut.
        stop.lock.withLock { stop.value = true }
        #expect(waitUntil { (StallWatchdog.quietMilliseconds(client) ?? 0) > 1200 })
        #expect(StallWatchdog.interrupt(thread: tid, unlessActiveWithin: .seconds(1)) == .cut)
        #expect(waitUntil { reader.lock.withLock { reader.ended } })
    }

    @Test func parsesTheSyscallFile() {
        #expect(
            StallWatchdog.parseSyscall("7 0x7f0c4b7fd5a0 0x1 0xffffffff 0x0 0x0 0x0 0x7f0c4b7fd560 0x7f0c5a0f43bf\n")
                == StallWatchdog.BlockedCall(number: 7, arguments: [0x7f0c4b7fd5a0, 1, 0xffffffff, 0, 0, 0]))
        #expect(StallWatchdog.parseSyscall("running\n") == nil)
        #expect(StallWatchdog.parseSyscall("-1 0x7ffd 0x7f0c\n") == nil)
        #expect(StallWatchdog.parseSyscall("") == nil)
    }
}
