import Foundation

/// Starting long-lived children (QEMU, the background worker) outside Foundation's `Process`, which waits
/// for and owns its children.
public enum BackgroundProcess {
    public enum Detach: Sendable { case processGroup, session }

    /// posix_spawn with stdout and stderr to `output`, stdin from /dev/null, a clean signal mask, and its own
    /// process group (or session, so it outlives the terminal).
    public static func spawn(_ executable: String, _ arguments: [String], output: String, append: Bool, detach: Detach) throws(CommandError) -> pid_t {
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 1, output, O_WRONLY | O_CREAT | (append ? O_APPEND : O_TRUNC), 0o644)
        posix_spawn_file_actions_adddup2(&actions, 1, 2)
        closeInheritedDescriptors(&actions)
        var attr = posix_spawnattr_t()
        posix_spawnattr_init(&attr)
        defer { posix_spawnattr_destroy(&attr) }
        // POSIX_SPAWN_SETSID (0x80 in glibc) is not exported to Swift.
        let mode: Int16 = detach == .session ? 0x80 : Int16(POSIX_SPAWN_SETPGROUP)
        posix_spawnattr_setflags(&attr, mode | Int16(POSIX_SPAWN_SETSIGMASK) | Int16(POSIX_SPAWN_SETSIGDEF))
        if detach == .processGroup { posix_spawnattr_setpgroup(&attr, 0) }
        resetSignals(&attr)
        let argv: [UnsafeMutablePointer<CChar>?] = ([executable] + arguments).map { strdup($0) } + [nil]
        defer { for a in argv { free(a) } }
        var pid: pid_t = 0
        let rc = posix_spawn(&pid, executable, &actions, &attr, argv, environ)
        guard rc == 0 else { throw CommandError(command: executable, status: rc, output: "", reason: String(cString: strerror(rc))) }
        return pid
    }

    /// Starts a child that must not outlive this process (a build VM): spawned like `spawn(… detach:
    /// .processGroup)`, plus a small guard process that kills it (SIGKILL) within a second of this process
    /// dying in any way, kill -9 included. The guard is bound to this process by the kernel's parent-death
    /// signal (`setpriv --pdeathsig`), which fires when the *thread* that spawned it ends, so it is spawned from
    /// a thread that lives as long as the process. Both children are reaped as soon as they exit.
    ///
    /// `release` lets the child outlive this process after all (a VM kept for debugging).
    public static func spawnOwned(_ executable: String, _ arguments: [String], output: String) throws(CommandError) -> OwnedChild {
        let result: Result<OwnedChild, CommandError> = OwnerThread.shared.run {
            do throws(CommandError) {
                let pid = try spawn(executable, arguments, output: output, append: false, detach: .processGroup)
                var guardPid: pid_t?
                if let setpriv = ["/usr/bin/setpriv", "/bin/setpriv"].first(where: { FileManager.default.isExecutableFile(atPath: $0) }) {
                    guardPid = try? spawn(
                        setpriv, ["--pdeathsig", "TERM", "--", "/bin/sh", "-c", OwnedChild.guardScript, "kiln-vm-guard", String(pid)],
                        output: "/dev/null", append: true, detach: .processGroup)
                }
                return .success(OwnedChild(pid: pid, guardPid: guardPid))
            } catch {
                return .failure(error)
            }
        }
        let child = try result.get()
        reapOnExit(child.pid)
        if let g = child.guardPid { reapOnExit(g) }
        return child
    }

    /// Collects `pid` when it exits, on a small thread of its own, so that a long-lived parent (the controller
    /// starting workers) does not collect zombies. Only for children nobody else waits for.
    public static func reapOnExit(_ pid: pid_t) {
        let thread = Thread {
            var status: Int32 = 0
            while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
        }
        thread.name = "reap \(pid)"
        thread.stackSize = 256 << 10
        thread.start()
    }

    /// Only 0, 1 and 2 reach the child. Without this a long-lived child (a worker, QEMU) keeps whatever the
    /// parent had open without close-on-exec at that instant: a listening socket (the port stays taken after
    /// the controller exits) or another thread's pipe (whose reader then never sees end-of-file).
    /// `posix_spawn_file_actions_addclosefrom_np` is glibc ≥ 2.34 and not exported to Swift, so it is looked up.
    public static func closeInheritedDescriptors(_ actions: inout posix_spawn_file_actions_t) {
        _ = addCloseFrom?(&actions, 3)
    }

    static let addCloseFrom: (@convention(c) (UnsafeMutablePointer<posix_spawn_file_actions_t>, Int32) -> Int32)? = {
        guard let sym = dlsym(UnsafeMutableRawPointer(bitPattern: 0), "posix_spawn_file_actions_addclosefrom_np") else { return nil }
        return unsafeBitCast(sym, to: (@convention(c) (UnsafeMutablePointer<posix_spawn_file_actions_t>, Int32) -> Int32).self)
    }()

    /// A child inherits the spawning thread's signal mask, and Dispatch's threads block signals: without
    /// this, SIGTERM to QEMU or a worker would stay pending forever.
    static func resetSignals(_ attr: inout posix_spawnattr_t) {
        var empty = sigset_t()
        sigemptyset(&empty)
        posix_spawnattr_setsigmask(&attr, &empty)
        var defaults = sigset_t()
        sigemptyset(&defaults)
        for s in [SIGTERM, SIGINT, SIGHUP, SIGQUIT, SIGPIPE] { sigaddset(&defaults, s) }
        posix_spawnattr_setsigdefault(&attr, &defaults)
    }
}

/// A child bound to this process's lifetime (see `BackgroundProcess.spawnOwned`).
public struct OwnedChild: Sendable, Hashable {
    public var pid: pid_t
    /// The guard that kills `pid` when this process dies; nil when `setpriv` is missing (util-linux).
    public var guardPid: pid_t?

    /// Lets the child outlive this process: its guard is stopped without acting (SIGKILL skips its trap).
    public func release() {
        if let guardPid { kill(guardPid, SIGKILL) }
    }

    /// `$1` is the child's pid. On SIGTERM (this process died) it kills the child; it ends by itself once the
    /// child is gone. The trap runs between two one-second sleeps.
    static let guardScript = """
        trap 'kill -KILL "$1" 2>/dev/null; exit 0' TERM
        while kill -0 "$1" 2>/dev/null; do sleep 1; done
        """
}

/// One thread that lives as long as the process, for spawning children whose parent-death signal must fire
/// only when the process ends (the kernel sends it when the spawning thread exits, and the cooperative
/// pool's and Dispatch's threads come and go).
final class OwnerThread: @unchecked Sendable {
    static let shared = OwnerThread()

    private let condition = NSCondition()
    private var jobs: [() -> Void] = []

    private init() {
        let thread = Thread { [self] in loop() }
        thread.name = "kiln-owner"
        thread.stackSize = 256 << 10
        thread.start()
    }

    private func loop() {
        while true {
            condition.lock()
            while jobs.isEmpty { condition.wait() }
            let job = jobs.removeFirst()
            condition.unlock()
            job()
        }
    }

    /// Runs `body` on the owner thread and returns its result (spawning takes milliseconds).
    func run<T>(_ body: @escaping () -> T) -> T {
        let done = DispatchSemaphore(value: 0)
        let box = ResultBox<T>()
        condition.lock()
        jobs.append {
            box.value = body()
            done.signal()
        }
        condition.signal()
        condition.unlock()
        done.wait()
        return box.value!
    }

    private final class ResultBox<T>: @unchecked Sendable { var value: T? }
}
