import Foundation

/// A failed external command, with what it printed.
public struct CommandError: Error, Sendable, CustomStringConvertible {
    public var command: String
    public var status: Int32
    public var output: String
    public var reason: String?

    public init(command: String, status: Int32, output: String, reason: String? = nil) {
        self.command = command
        self.status = status
        self.output = output
        self.reason = reason
    }

    public var description: String {
        let tail = output.split(separator: "\n").suffix(8).joined(separator: "\n")
        let why = reason.map { ": \($0)" } ?? " exited with status \(status)"
        return "\(command)\(why)" + (tail.isEmpty ? "" : "\n\(tail)")
    }
}

/// The outcome of a command that ran to the end.
public struct CommandOutput: Sendable {
    public var status: Int32
    public var stdout: String
    public var stderr: String
    public var combined: String { stdout + stderr }
}

/// Runs external programs (qemu-img, debootstrap, ssh, ...) without blocking a thread while they run.
///
/// Output is drained while the child runs, so a chatty child never deadlocks on a full pipe. A timeout
/// terminates the child (SIGTERM, then SIGKILL after a grace period).
public enum ProcessRunner {
    /// Finds an executable on PATH and in the sbin directories (debootstrap, sfdisk live there).
    public static func which(_ name: String) -> String? {
        if name.hasPrefix("/") { return FileManager.default.isExecutableFile(atPath: name) ? name : nil }
        let path = ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin"
        for dir in path.split(separator: ":").map(String.init) + ["/usr/local/sbin", "/usr/sbin", "/sbin", "/usr/bin", "/bin"] {
            let candidate = (dir as NSString).appendingPathComponent(name)
            if FileManager.default.isExecutableFile(atPath: candidate) { return candidate }
        }
        return nil
    }

    /// Runs `executable` with `arguments`; returns its output whatever the exit status.
    public static func run(
        _ executable: String, _ arguments: [String], environment: [String: String]? = nil,
        currentDirectory: String? = nil, input: Data? = nil, timeout: Duration? = nil,
        onOutputLine: (@Sendable (String) -> Void)? = nil
    ) async throws(CommandError) -> CommandOutput {
        let display = ([executable] + arguments).joined(separator: " ")
        guard let path = which(executable) else {
            throw CommandError(command: display, status: 127, output: "", reason: "'\(executable)' is not installed (run scripts/install-deps)")
        }
        // posix_spawn rather than Foundation's Process: the child starts with default signal handling and an
        // empty mask (a Process child inherits the ignored SIGPIPE libgit2 needs and the blocked signals of
        // Dispatch's threads), and its exit is its own (Process reports it only once every process holding its
        // status socket is gone, so a daemon the command left behind held the command).
        let child: SpawnedChild
        do {
            child = try SpawnedChild(
                path: path, arguments: arguments, environment: environment, currentDirectory: currentDirectory,
                withInput: input != nil)
        } catch {
            throw CommandError(command: display, status: -1, output: "", reason: "cannot start: \(error)")
        }
        let collector = OutputCollector(onLine: onOutputLine)
        // Blocking reads on threads of their own, not `readabilityHandler`: its libdispatch read source races
        // the descriptor's close at teardown and has crashed the process in `_dispatch_event_loop_drain`
        // (swift-corelibs-libdispatch#949) — seen in CI with many short commands in flight.
        let outDrain = PipeDrain(child.stdout, name: "out \(executable)") { collector.append($0, stderr: false) }
        let errDrain = PipeDrain(child.stderr, name: "err \(executable)") { collector.append($0, stderr: true) }
        outDrain.start()
        errDrain.start()
        if let input, let fd = child.stdin { writeInput(input, to: fd) }

        // Task cancellation (a canceled run, a build timeout) stops the child: TERM, then KILL after 2 s.
        let status: Int32 = await withTaskCancellationHandler {
            await withCheckedContinuation { (cont: CheckedContinuation<Int32, Never>) in
                child.onExit { cont.resume(returning: $0) }
                if let timeout {
                    let seconds = timeout.inSeconds
                    DispatchQueue.global().asyncAfter(deadline: .now() + seconds) {
                        // Marked with the signal, under the child's lock: never after it was seen to exit.
                        guard child.signal(SIGTERM, marking: { collector.timedOut = true }) else { return }
                        DispatchQueue.global().asyncAfter(deadline: .now() + 2) { child.signal(SIGKILL) }
                    }
                }
            }
        } onCancel: {
            guard child.signal(SIGTERM, marking: { collector.canceled = true }) else { return }
            DispatchQueue.global().asyncAfter(deadline: .now() + 2) { child.signal(SIGKILL) }
        }
        // What is left after exit; a grandchild that kept the pipes open is not waited for beyond a grace period.
        async let outDone: Void = outDrain.finish(grace: .seconds(5))
        async let errDone: Void = errDrain.finish(grace: .seconds(5))
        _ = await (outDone, errDone)
        collector.flush()
        let (out, err) = collector.result
        if collector.canceled {
            throw CommandError(command: display, status: status, output: out + err, reason: "canceled")
        }
        if collector.timedOut {
            throw CommandError(command: display, status: status, output: out + err, reason: "timed out after \(timeout!)")
        }
        return CommandOutput(status: status, stdout: out, stderr: err)
    }

    /// Feeds `input` to the child's stdin on a thread of its own, then closes it. A child that exits without
    /// reading all of it: EPIPE here, not a SIGPIPE for the process.
    static func writeInput(_ input: Data, to fd: Int32) {
        let writer = Thread {
            var pipeSignal = sigset_t()
            sigemptyset(&pipeSignal)
            sigaddset(&pipeSignal, SIGPIPE)
            pthread_sigmask(SIG_BLOCK, &pipeSignal, nil)
            input.withUnsafeBytes { buffer in
                var offset = 0
                while offset < buffer.count {
                    let n = write(fd, buffer.baseAddress! + offset, buffer.count - offset)
                    if n > 0 { offset += n } else if n < 0 && errno == EINTR { continue } else { break }
                }
            }
            close(fd)
        }
        writer.stackSize = 256 << 10
        writer.start()
    }

    /// Runs a command that must succeed; a non-zero exit throws with its output.
    @discardableResult
    public static func check(
        _ executable: String, _ arguments: [String], environment: [String: String]? = nil,
        currentDirectory: String? = nil, input: Data? = nil, timeout: Duration? = nil,
        onOutputLine: (@Sendable (String) -> Void)? = nil
    ) async throws(CommandError) -> CommandOutput {
        let r = try await run(
            executable, arguments, environment: environment, currentDirectory: currentDirectory, input: input,
            timeout: timeout, onOutputLine: onOutputLine)
        guard r.status == 0 else {
            throw CommandError(command: ([executable] + arguments).joined(separator: " "), status: r.status, output: r.combined)
        }
        return r
    }
}

/// A child started with posix_spawn: pipes for its output (and input), its exit collected on a thread of its own.
///
/// Signals are only sent before the exit is collected: the waiting thread first waits without reaping
/// (`waitid` with `WNOWAIT`), then marks the child gone and reaps it under the same lock `signal` takes, so a
/// signal never reaches a process that reused the pid.
private final class SpawnedChild: @unchecked Sendable {
    let pid: pid_t
    let stdout: Int32
    let stderr: Int32
    let stdin: Int32?
    private let lock = NSLock()
    private var exited = false
    private var status: Int32?
    private var handler: (@Sendable (Int32) -> Void)?

    struct SpawnError: Error, CustomStringConvertible {
        var description: String
    }

    init(path: String, arguments: [String], environment: [String: String]?, currentDirectory: String?, withInput: Bool) throws {
        func makePipe() throws -> (Int32, Int32) {
            var fds: [Int32] = [-1, -1]
            guard pipe(&fds) == 0 else { throw SpawnError(description: "pipe: \(String(cString: strerror(errno)))") }
            for fd in fds { _ = fcntl(fd, F_SETFD, FD_CLOEXEC) }
            return (fds[0], fds[1])
        }
        let out = try makePipe()
        let err: (Int32, Int32)
        do { err = try makePipe() } catch { close(out.0); close(out.1); throw error }
        var input: (Int32, Int32)?
        if withInput {
            do { input = try makePipe() } catch { [out.0, out.1, err.0, err.1].forEach { close($0) }; throw error }
        }

        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        if let input {
            posix_spawn_file_actions_adddup2(&actions, input.0, 0)
        } else {
            posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        }
        posix_spawn_file_actions_adddup2(&actions, out.1, 1)
        posix_spawn_file_actions_adddup2(&actions, err.1, 2)
        BackgroundProcess.closeInheritedDescriptors(&actions)
        if let currentDirectory {
            guard let chdir = Self.addChdir else { throw SpawnError(description: "posix_spawn cannot change directory (glibc < 2.29)") }
            _ = chdir(&actions, currentDirectory)
        }
        var attr = posix_spawnattr_t()
        posix_spawnattr_init(&attr)
        defer { posix_spawnattr_destroy(&attr) }
        posix_spawnattr_setflags(&attr, Int16(POSIX_SPAWN_SETSIGMASK) | Int16(POSIX_SPAWN_SETSIGDEF))
        BackgroundProcess.resetSignals(&attr)

        var env = ProcessInfo.processInfo.environment
        if let environment { env.merge(environment) { _, new in new } }
        let argv: [UnsafeMutablePointer<CChar>?] = ([path] + arguments).map { strdup($0) } + [nil]
        let envp: [UnsafeMutablePointer<CChar>?] = env.map { strdup("\($0.key)=\($0.value)") } + [nil]
        defer { (argv + envp).forEach { free($0) } }
        var pid: pid_t = 0
        let rc = posix_spawn(&pid, path, &actions, &attr, argv, envp)
        // The parent's copies of the child's ends: closed, so end-of-file comes when the child closes its own.
        close(out.1)
        close(err.1)
        if let input { close(input.0) }
        guard rc == 0 else {
            close(out.0)
            close(err.0)
            if let input { close(input.1) }
            throw SpawnError(description: String(cString: strerror(rc)))
        }
        self.pid = pid
        self.stdout = out.0
        self.stderr = err.0
        self.stdin = input?.1
        let waiter = Thread { [self] in waitForExit() }
        waiter.name = "wait \(pid)"
        waiter.stackSize = 256 << 10
        waiter.start()
    }

    /// `posix_spawn_file_actions_addchdir_np` (glibc ≥ 2.29), not exported to Swift.
    static let addChdir: (@convention(c) (UnsafeMutablePointer<posix_spawn_file_actions_t>, UnsafePointer<CChar>) -> Int32)? = {
        guard let sym = dlsym(UnsafeMutableRawPointer(bitPattern: 0), "posix_spawn_file_actions_addchdir_np") else { return nil }
        return unsafeBitCast(sym, to: (@convention(c) (UnsafeMutablePointer<posix_spawn_file_actions_t>, UnsafePointer<CChar>) -> Int32).self)
    }()

    private func waitForExit() {
        var info = siginfo_t()
        while waitid(P_PID, id_t(pid), &info, WEXITED | WNOWAIT) < 0 && errno == EINTR {}
        let code: Int32 = lock.withLock {
            exited = true
            var raw: Int32 = 0
            while waitpid(pid, &raw, 0) < 0 && errno == EINTR {}
            // Exit code, or 128 + signal as a shell reports it.
            let c = (raw & 0x7f) == 0 ? (raw >> 8) & 0xff : 128 + (raw & 0x7f)
            status = c
            return c
        }
        let h: (@Sendable (Int32) -> Void)? = lock.withLock {
            defer { handler = nil }; return handler
        }
        h?(code)
    }

    /// Calls `body` with the exit status once the child has exited (at once if it has).
    func onExit(_ body: @escaping @Sendable (Int32) -> Void) {
        let now: Int32? = lock.withLock {
            if let status { return status }
            handler = body
            return nil
        }
        if let now { body(now) }
    }

    /// Sends `sig` unless the child has exited, calling `marking` first; whether it was sent.
    @discardableResult
    func signal(_ sig: Int32, marking: () -> Void = {}) -> Bool {
        lock.withLock {
            guard !exited else { return false }
            marking()
            return kill(pid, sig) == 0
        }
    }
}

/// Reads one pipe of a child to its end on a thread of its own, with plain `poll`/`read`.
///
/// Once the child has exited, `finish(grace:)` waits for end-of-file at most `grace` longer: a process the
/// child left behind may hold the write end open for ever.
private final class PipeDrain: @unchecked Sendable {
    private let fd: Int32
    private let name: String
    private let onData: @Sendable (Data) -> Void
    private let lock = NSLock()
    private var deadline: ContinuousClock.Instant?
    private var done = false
    private var started = false
    private var waiter: CheckedContinuation<Void, Never>?

    /// Owns `fd` (the read end) and closes it when the pipe is drained.
    init(_ fd: Int32, name: String, onData: @escaping @Sendable (Data) -> Void) {
        self.fd = fd
        self.name = name
        self.onData = onData
    }

    func start() {
        lock.withLock { started = true }
        let thread = Thread { [self] in
            drain()
            close(fd)
            release()
        }
        thread.name = name
        thread.stackSize = 256 << 10
        thread.start()
    }

    private func drain() {
        var buffer = [UInt8](repeating: 0, count: 64 << 10)
        while true {
            var pfd = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            let ready = poll(&pfd, 1, 200)
            if ready < 0 && errno != EINTR { return }
            if ready > 0 {
                let n = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
                if n > 0 {
                    onData(Data(buffer[0..<n]))
                } else if n == 0 || (errno != EINTR && errno != EAGAIN) {
                    return
                }
            }
            // Checked after every read too: a left-behind writer that never pauses must not hold us.
            if let deadline = lock.withLock({ deadline }), ContinuousClock.now >= deadline { return }
        }
    }

    /// Returns once the pipe reached its end, or `grace` after this call (a second later at most, even if
    /// the reading thread never got to run: Foundation's `Thread` does not report a failed `pthread_create`,
    /// which a pod's pids limit can cause).
    func finish(grace: Duration) async {
        let alreadyDone: Bool = lock.withLock {
            deadline = ContinuousClock.now + grace
            return done || !started
        }
        if alreadyDone { return }
        let backstop = Task { [self] in
            try? await Task.sleep(for: grace + .seconds(1))
            release()
        }
        await withCheckedContinuation { (c: CheckedContinuation<Void, Never>) in
            let resumeNow: Bool = lock.withLock {
                if done { return true }
                waiter = c
                return false
            }
            if resumeNow { c.resume() }
        }
        backstop.cancel()
    }

    /// Resumes the waiter, if any, exactly once.
    private func release() {
        let w: CheckedContinuation<Void, Never>? = lock.withLock {
            done = true
            defer { waiter = nil }
            return waiter
        }
        w?.resume()
    }
}

/// Thread-safe accumulation of a child's output, with optional line callbacks.
private final class OutputCollector: @unchecked Sendable {
    private let lock = NSLock()
    private var out = Data()
    private var err = Data()
    private var pending = Data()
    private let onLine: (@Sendable (String) -> Void)?
    var timedOut: Bool {
        get { lock.withLock { _timedOut } }
        set { lock.withLock { _timedOut = newValue } }
    }
    private var _timedOut = false
    var canceled: Bool {
        get { lock.withLock { _canceled } }
        set { lock.withLock { _canceled = newValue } }
    }
    private var _canceled = false

    init(onLine: (@Sendable (String) -> Void)?) { self.onLine = onLine }

    func append(_ data: Data, stderr: Bool) {
        guard !data.isEmpty else { return }
        var lines: [String] = []
        lock.withLock {
            if stderr { err.append(data) } else { out.append(data) }
            guard onLine != nil else { return }
            pending.append(data)
            while let nl = pending.firstIndex(of: 0x0A) {
                lines.append(String(decoding: pending[pending.startIndex..<nl], as: UTF8.self))
                pending.removeSubrange(pending.startIndex...nl)
            }
        }
        for l in lines { onLine?(l) }
    }

    func flush() {
        let rest: String? = lock.withLock {
            guard !pending.isEmpty else { return nil }
            defer { pending.removeAll() }
            return String(decoding: pending, as: UTF8.self)
        }
        if let rest { onLine?(rest) }
    }

    var result: (String, String) {
        lock.withLock { (String(decoding: out, as: UTF8.self), String(decoding: err, as: UTF8.self)) }
    }
}
