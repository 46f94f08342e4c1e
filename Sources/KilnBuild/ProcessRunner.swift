import Foundation

/// A failed external command, with what it printed.
public struct CommandError: Error, Sendable, CustomStringConvertible {
    public var command: String
    public var status: Int32
    public var output: String
    public var reason: String?

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
    public static func run(_ executable: String, _ arguments: [String], environment: [String: String]? = nil,
                           currentDirectory: String? = nil, input: Data? = nil, timeout: Duration? = nil,
                           onOutputLine: (@Sendable (String) -> Void)? = nil) async throws(CommandError) -> CommandOutput {
        let display = ([executable] + arguments).joined(separator: " ")
        guard let path = which(executable) else {
            throw CommandError(command: display, status: 127, output: "", reason: "'\(executable)' is not installed (run scripts/install-deps)")
        }
        let process = Process()
        process.executableURL = URL(fileURLWithPath: path)
        process.arguments = arguments
        if let environment {
            process.environment = ProcessInfo.processInfo.environment.merging(environment) { _, new in new }
        }
        if let currentDirectory { process.currentDirectoryURL = URL(fileURLWithPath: currentDirectory) }
        // Long-lived children (QEMU) are not run through here: see VirtualMachine.spawn.
        let outPipe = Pipe(), errPipe = Pipe()
        process.standardOutput = outPipe
        process.standardError = errPipe
        let inPipe = input.map { _ in Pipe() }
        process.standardInput = inPipe ?? FileHandle.nullDevice

        let collector = OutputCollector(onLine: onOutputLine)
        // Blocking reads on threads of their own, not `readabilityHandler`: its libdispatch read source races
        // the descriptor's close at teardown and has crashed the process in `_dispatch_event_loop_drain`
        // (swift-corelibs-libdispatch#949) — seen in CI with many short commands in flight.
        let outDrain = PipeDrain(outPipe, name: "out \(executable)") { collector.append($0, stderr: false) }
        let errDrain = PipeDrain(errPipe, name: "err \(executable)") { collector.append($0, stderr: true) }

        let status: Int32
        do {
            // Task cancellation (a canceled run, a build timeout) stops the child: TERM, then KILL after 2 s.
            status = try await withTaskCancellationHandler {
              try await withCheckedThrowingContinuation { (cont: CheckedContinuation<Int32, any Error>) in
                process.terminationHandler = { p in cont.resume(returning: p.terminationStatus) }
                do {
                    try process.run()
                } catch {
                    process.terminationHandler = nil
                    cont.resume(throwing: error)
                    return
                }
                outDrain.start()
                errDrain.start()
                if let input, let inPipe {
                    DispatchQueue.global().async {
                        inPipe.fileHandleForWriting.write(input)
                        try? inPipe.fileHandleForWriting.close()
                    }
                }
                if let timeout {
                    let pid = process.processIdentifier
                    let seconds = Double(timeout.components.seconds) + Double(timeout.components.attoseconds) / 1e18
                    DispatchQueue.global().asyncAfter(deadline: .now() + seconds) {
                        guard process.isRunning, process.processIdentifier == pid else { return }
                        collector.timedOut = true
                        kill(pid, SIGTERM)
                        // A child started through Process may have SIGTERM blocked (inherited mask): do not wait long.
                        DispatchQueue.global().asyncAfter(deadline: .now() + 1) {
                            if process.isRunning { kill(pid, SIGKILL) }
                        }
                    }
                }
              }
            } onCancel: {
                collector.canceled = true
                guard process.isRunning else { return }
                let pid = process.processIdentifier
                kill(pid, SIGTERM)
                DispatchQueue.global().asyncAfter(deadline: .now() + 2) {
                    if process.isRunning, process.processIdentifier == pid { kill(pid, SIGKILL) }
                }
            }
        } catch {
            throw CommandError(command: display, status: -1, output: "", reason: "cannot start: \(error)")
        }
        // What is left after exit. (Foundation reports the exit only once every process that inherited its
        // status socket is gone, so a grandchild the command left behind holds the command until it exits; the
        // grace period is for one that closed that socket but kept the pipe.)
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

    /// Runs a command that must succeed; a non-zero exit throws with its output.
    @discardableResult
    public static func check(_ executable: String, _ arguments: [String], environment: [String: String]? = nil,
                             currentDirectory: String? = nil, input: Data? = nil, timeout: Duration? = nil,
                             onOutputLine: (@Sendable (String) -> Void)? = nil) async throws(CommandError) -> CommandOutput {
        let r = try await run(executable, arguments, environment: environment, currentDirectory: currentDirectory, input: input,
                              timeout: timeout, onOutputLine: onOutputLine)
        guard r.status == 0 else {
            throw CommandError(command: ([executable] + arguments).joined(separator: " "), status: r.status, output: r.combined)
        }
        return r
    }
}

/// Reads one pipe of a child to its end on a thread of its own, with plain `poll`/`read`.
///
/// Once the child has exited, `finish(grace:)` waits for end-of-file at most `grace` longer: a process the
/// child left behind may hold the write end open for ever.
private final class PipeDrain: @unchecked Sendable {
    private let pipe: Pipe
    private let name: String
    private let onData: @Sendable (Data) -> Void
    private let lock = NSLock()
    private var deadline: ContinuousClock.Instant?
    private var done = false
    private var started = false
    private var waiter: CheckedContinuation<Void, Never>?

    init(_ pipe: Pipe, name: String, onData: @escaping @Sendable (Data) -> Void) {
        self.pipe = pipe
        self.name = name
        self.onData = onData
    }

    func start() {
        lock.withLock { started = true }
        let thread = Thread { [self] in
            drain()
            release()
        }
        thread.name = name
        thread.stackSize = 256 << 10
        thread.start()
    }

    private func drain() {
        let fd = pipe.fileHandleForReading.fileDescriptor
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
