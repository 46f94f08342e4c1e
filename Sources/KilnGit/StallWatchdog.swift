import Foundation
#if canImport(Glibc)
    import Glibc
#endif

/// One network call under watch: the thread making it and when it last made progress.
final class NetworkWatch: @unchecked Sendable {
    /// The kernel's id of the thread in the libgit2 call; nil when it cannot be known (then nothing is cut).
    let tid: pid_t?
    let timeout: Duration
    private let lock = NSLock()
    private var lastActivity = ContinuousClock.now
    private var _fired = false

    init(tid: pid_t?, timeout: Duration) {
        self.tid = tid
        self.timeout = timeout
    }

    /// Progress: bytes arrived, a callback ran. Called from libgit2's callbacks on the git thread.
    func touch() { lock.withLock { lastActivity = .now } }

    /// Whether the watchdog gave up on the call (and cut its connection).
    var fired: Bool { lock.withLock { _fired } }
    /// Whether it was cut although bytes still moved (keepalives), after ten timeouts.
    var firedDespiteTraffic: Bool { lock.withLock { _despiteTraffic } }
    private var _despiteTraffic = false

    func overdue(at now: ContinuousClock.Instant) -> Bool { lock.withLock { now - lastActivity >= timeout } }

    /// No callback for ten timeouts: cut even if the socket still moves data. Keepalives (an sshd's
    /// `ClientAliveInterval` probes, which libssh2 answers) would otherwise keep a hung server's call alive for
    /// ever; a real transfer calls back at least every 100 KiB.
    func hopeless(at now: ContinuousClock.Instant) -> Bool { lock.withLock { now - lastActivity >= timeout * 10 } }
    func markFired(despiteTraffic: Bool = false) {
        lock.withLock {
            _fired = true
            _despiteTraffic = despiteTraffic
        }
    }
}

/// Gives up on libgit2 network calls that make no progress (Flux's `timeout` for git operations).
///
/// libgit2 1.5 (Debian 12's) has no connect or read timeout: an SSH server that accepts the connection and
/// never answers, or an HTTP server that stops mid-response, blocks the calling thread for ever — and with
/// it every later poll of that repository. Its calls cannot be cancelled either. What does work is cutting
/// the connection under it: `shutdown(2)` on the socket the thread is blocked on makes the blocked `poll`/
/// `recv` return, libgit2 reports a network error, and the call ends.
///
/// A call blocked on a TCP socket that still moves data is left alone however long its callbacks are quiet
/// (the kernel's `tcp_info` says when the socket last sent or received data).
///
/// The socket is found from the blocked thread itself: `/proc/self/task/TID/syscall` names the system call it
/// waits in and its arguments (the descriptor, or for `poll` the array of them, which lives in this process's
/// memory). Only a socket is ever shut down, and only one that call is blocked on after `timeout` without
/// progress. The watchdog is one thread for the whole process, idle while no call is watched.
final class StallWatchdog: @unchecked Sendable {
    static let shared = StallWatchdog()

    private let condition = NSCondition()
    private var watches: [ObjectIdentifier: NetworkWatch] = [:]
    private var started = false

    /// Starts watching the calling thread's network call.
    func begin(timeout: Duration) -> NetworkWatch {
        let watch = NetworkWatch(tid: Self.currentThreadID(), timeout: timeout)
        condition.lock()
        watches[ObjectIdentifier(watch)] = watch
        if !started {
            started = true
            let thread = Thread { [self] in loop() }
            thread.name = "git watchdog"
            thread.stackSize = 256 << 10
            thread.start()
        }
        condition.signal()
        condition.unlock()
        return watch
    }

    /// Stops watching; must be called before the thread makes any other call.
    func end(_ watch: NetworkWatch) {
        condition.lock()
        watches[ObjectIdentifier(watch)] = nil
        condition.unlock()
    }

    private func loop() {
        while true {
            condition.lock()
            while watches.isEmpty { condition.wait() }
            let now = ContinuousClock.now
            // Interrupting under the lock: `end` cannot return (and its thread move on to other work) while
            // its socket is being looked at.
            for watch in watches.values where watch.overdue(at: now) {
                guard let tid = watch.tid else { continue }
                // Marked before the cut: the blocked thread wakes at once and reads the mark for its error.
                let hopeless = watch.hopeless(at: now)
                Self.interrupt(thread: tid, unlessActiveWithin: hopeless ? nil : watch.timeout, beforeCut: { watch.markFired(despiteTraffic: hopeless) })
            }
            condition.unlock()
            Thread.sleep(forTimeInterval: 0.25)
        }
    }

    // MARK: Finding the socket

    enum Outcome: Equatable {
        /// Not blocked on a socket now (running, or waiting on something else): nothing done.
        case notBlocked
        /// Blocked on a TCP socket that moved data within the timeout: libgit2 reports progress only every
        /// 100 KiB of a pack, so a slow but moving transfer looks silent to the callbacks.
        case active
        case cut
    }

    /// Shuts down the socket `thread` is blocked on — unless that socket sent or received data within `window`
    /// — calling `beforeCut` first.
    @discardableResult
    static func interrupt(thread tid: pid_t, unlessActiveWithin window: Duration? = nil, beforeCut: () -> Void = {}) -> Outcome {
        guard let call = blockedCall(of: tid) else { return .notBlocked }
        let sockets = descriptors(of: call).filter(isConnectionSocket)
        // Still in the same call after the descriptors were looked at: they are the call's, not numbers the
        // thread closed meanwhile and another thread reused.
        guard !sockets.isEmpty, blockedCall(of: tid) == call else { return .notBlocked }
        if let window {
            let ms = window.components.seconds * 1000 + window.components.attoseconds / 1_000_000_000_000_000
            if sockets.contains(where: { quietMilliseconds($0).map { Int64($0) < ms } ?? false }) { return .active }
        }
        beforeCut()
        for fd in sockets { shutdown(fd, Int32(SHUT_RDWR)) }
        return .cut
    }

    /// How long ago a TCP socket last received or sent data, in milliseconds (the kernel's `tcp_info`); nil for
    /// other sockets.
    static func quietMilliseconds(_ fd: Int32) -> UInt32? {
        var info = tcp_info()
        var length = socklen_t(MemoryLayout<tcp_info>.size)
        guard getsockopt(fd, Int32(IPPROTO_TCP), TCP_INFO, &info, &length) == 0 else { return nil }
        return min(info.tcpi_last_data_recv, info.tcpi_last_data_sent)
    }

    /// A blocked system call: its number and first arguments, from `/proc/self/task/TID/syscall`
    /// ("7 0x7f… 0x1 0xffffffff …", or "running" when the thread is not in a call).
    struct BlockedCall: Equatable {
        var number: Int
        var arguments: [UInt]
    }

    static func blockedCall(of tid: pid_t) -> BlockedCall? {
        guard let text = try? String(contentsOfFile: "/proc/self/task/\(tid)/syscall", encoding: .utf8) else { return nil }
        return parseSyscall(text)
    }

    static func parseSyscall(_ text: String) -> BlockedCall? {
        let fields = text.split(whereSeparator: { $0 == " " || $0 == "\n" })
        guard fields.count >= 4, let number = Int(fields[0]), number >= 0 else { return nil }
        let args = fields.dropFirst().prefix(6).compactMap { UInt($0.hasPrefix("0x") ? String($0.dropFirst(2)) : String($0), radix: 16) }
        guard args.count >= 3 else { return nil }
        return BlockedCall(number: number, arguments: args)
    }

    #if arch(x86_64)
        static let directCalls: Set<Int> = [0, 1, 42, 44, 45, 46, 47]  // read, write, connect, sendto, recvfrom, sendmsg, recvmsg
        static let pollCalls: Set<Int> = [7, 271]  // poll, ppoll
    #elseif arch(arm64)
        static let directCalls: Set<Int> = [63, 64, 203, 206, 207, 211, 212]
        static let pollCalls: Set<Int> = [73]  // ppoll (arm64 has no poll)
    #else
        static let directCalls: Set<Int> = []
        static let pollCalls: Set<Int> = []
    #endif

    /// The descriptors a blocked call waits on: its first argument, or the entries of a `poll` array.
    static func descriptors(of call: BlockedCall) -> [Int32] {
        if directCalls.contains(call.number) {
            guard call.arguments[0] <= UInt(Int32.max) else { return [] }
            return [Int32(call.arguments[0])]
        }
        if pollCalls.contains(call.number) {
            // The array is on the blocked thread's stack, in this process. Read through /proc/self/mem, not by
            // dereferencing: should the thread have moved on, a stale address gives EIO instead of a crash.
            let count = min(Int(call.arguments[1]), 8)
            guard count > 0, call.arguments[0] != 0, selfMemory >= 0 else { return [] }
            var fds = [pollfd](repeating: pollfd(fd: -1, events: 0, revents: 0), count: count)
            let size = count * MemoryLayout<pollfd>.stride
            let n = fds.withUnsafeMutableBytes { pread(selfMemory, $0.baseAddress, size, off_t(Int64(bitPattern: UInt64(call.arguments[0])))) }
            guard n == size else { return [] }
            return fds.map(\.fd).filter { $0 >= 0 }
        }
        return []
    }

    /// /proc/self/mem, opened once.
    static let selfMemory: Int32 = open("/proc/self/mem", O_RDONLY | O_CLOEXEC)

    /// A socket that is, or is becoming, a connection: never a listening socket (the controller's own HTTP
    /// ports, which a stale descriptor number could name) and never a socket with no peer, unless it is
    /// connecting (a SYN nobody answers).
    static func isConnectionSocket(_ fd: Int32) -> Bool {
        var st = stat()
        guard fstat(fd, &st) == 0, (st.st_mode & S_IFMT) == S_IFSOCK else { return false }
        var listening: Int32 = 0
        var size = socklen_t(MemoryLayout<Int32>.size)
        if getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &listening, &size) == 0, listening != 0 { return false }
        var peer = sockaddr_storage()
        var peerSize = socklen_t(MemoryLayout<sockaddr_storage>.size)
        let connected = withUnsafeMutablePointer(to: &peer) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getpeername(fd, $0, &peerSize) == 0 }
        }
        if connected { return true }
        var info = tcp_info()
        var infoSize = socklen_t(MemoryLayout<tcp_info>.size)
        return getsockopt(fd, Int32(IPPROTO_TCP), TCP_INFO, &info, &infoSize) == 0 && info.tcpi_state == 2  // TCP_SYN_SENT
    }

    /// The kernel's id of the calling thread (`gettid`, which Swift's Glibc does not export), or nil. Never a
    /// guess: another thread's id would let the watchdog cut a socket that is not the git call's.
    static func currentThreadID() -> pid_t? {
        var buffer = [CChar](repeating: 0, count: 64)
        let n = readlink("/proc/thread-self", &buffer, buffer.count - 1)
        guard n > 0 else { return nil }
        let link = String(decoding: buffer[0..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self)  // "PID/task/TID"
        let parts = link.split(separator: "/")
        guard parts.count == 3, parts[0] == "\(getpid())", parts[1] == "task" else { return nil }
        return pid_t(parts[2])
    }
}
