import Foundation
import KilnSystem
import KilnCore
import KilnGit
import KilnStore
import Logging

/// One controller per data directory: an exclusive `flock` on `<data>/controller.lock`, released when the
/// process ends however it ends (kill -9 included).
public final class ControllerLock: Sendable {
    let fd: Int32

    public init(dataDir: String) throws(CoreError) {
        try? FileManager.default.createDirectory(atPath: dataDir, withIntermediateDirectories: true)
        let path = (dataDir as NSString).appendingPathComponent("controller.lock")
        let fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw .io("cannot open \(path): \(String(cString: strerror(errno)))") }
        guard flock(fd, LOCK_EX | LOCK_NB) == 0 else {
            let holder = (try? String(contentsOfFile: path, encoding: .utf8))?.trimmingCharacters(in: .whitespacesAndNewlines) ?? ""
            close(fd)
            throw .operationNotAllowed("another Kiln controller or reconcile uses \(dataDir)\(holder.isEmpty ? "" : " (\(holder))"); one per data directory")
        }
        ftruncate(fd, 0)
        let line = "pid \(getpid())\n"
        _ = line.withCString { write(fd, $0, strlen($0)) }
        self.fd = fd
    }

    deinit { close(fd) }
}

/// The GitOps controller: poll (or be woken by a webhook), reconcile the watched branch, write status back.
///
/// Level-triggered: each wake-up compares the repository with the store, whatever woke it. Builds run in
/// detached worker processes started through `launchWorkers`, so stopping or killing the controller never
/// kills a build; a restarted controller picks the run up where the store has it.
public actor Controller {
    public struct Options: Sendable {
        /// Between polls of an idle repository (jittered ±10 %).
        public var interval: Duration = .seconds(60)
        /// Between status updates while a build runs.
        public var statusInterval: Duration = .seconds(2)
        /// A full reconcile even when nothing moved, to repair drift (a template deleted by hand).
        public var resyncInterval: Duration = .seconds(600)
        public init() {}
    }

    /// The repository's name in logs, metrics and webhook routes: the configured name, else the redacted URL.
    public nonisolated let name: String
    public let reconciler: Reconciler
    public let status: StatusWriter
    public let mirror: RepositoryMirror
    public let core: KilnCore
    let options: Options
    let launchWorkers: @Sendable () -> Void
    let onReport: @Sendable (ReconcileReport) -> Void
    let observer: (any ControllerObserver)?
    let logger: Logger

    /// When the remote last answered (ls-remote, and fetch when the branch moved); nil until it has.
    public private(set) var lastSync: Date?
    /// The last step's error, cleared by a step that succeeds.
    public private(set) var lastError: String?

    /// Both, read together (for `/readyz`).
    public func health() -> RepositoryHealth {
        RepositoryHealth(name: name, lastSync: lastSync, lastError: lastError)
    }

    var lastReconciled: ObjectID?
    var lastFullReconcile = ContinuousClock.now
    var hadActiveRuns = false
    /// This repository's runs that were active at the last step.
    var activeRunIds: Set<String> = []
    /// The last reconcile asked to run again soon (a change waits for a run to end).
    var requeued = false
    /// What failed to load at the last reconciled commit, for status writes between reconciles.
    var sourceErrors = SourceErrors()
    var stopping = false
    var pendingWake = false
    var sleeper: CheckedContinuation<Void, Never>?
    var sleepGeneration = 0
    /// When workers were last started: at most one more while queued runs wait for one to claim them.
    var lastLaunch: ContinuousClock.Instant?

    public init(
        name: String? = nil, core: KilnCore, mirror: RepositoryMirror, templatesPath: String? = nil, options: Options = Options(),
        launchWorkers: @escaping @Sendable () -> Void, onReport: @escaping @Sendable (ReconcileReport) -> Void = { _ in },
        observer: (any ControllerObserver)? = nil, logger: Logger = Logger(label: "kiln.controller")
    ) {
        let name = name ?? GitRepository.redact(mirror.source.url)
        var logger = logger
        logger[metadataKey: "repo"] = "\(name)"
        self.name = name
        self.observer = observer
        self.core = core
        self.mirror = mirror
        self.reconciler = Reconciler(core: core, mirror: mirror, templatesPath: templatesPath, logger: logger)
        self.status = StatusWriter(mirror: mirror, core: core, logger: logger)
        self.options = options
        self.launchWorkers = launchWorkers
        self.onReport = onReport
        self.logger = logger
    }

    /// Wakes the loop now (a webhook arrived).
    public func wake() {
        if let s = sleeper {
            sleeper = nil
            s.resume()
        } else {
            pendingWake = true
        }
    }

    /// Ends the loop after the step in progress (SIGTERM): a status write is never cut in half.
    public func stop() {
        stopping = true
        wake()
    }

    /// Polls until `stop()`.
    public func run() async {
        logger.notice(
            "controller started", metadata: ["url": "\(GitRepository.redact(source.url))", "branch": "\(source.branch)", "interval": "\(options.interval)"])
        while !stopping {
            await step()
            if stopping { break }
            await sleep(hadActiveRuns || requeued ? options.statusInterval : jittered(options.interval))
        }
        logger.notice("controller stopped")
    }

    var source: GitSource { mirror.source }

    /// One poll: ls-remote; fetch and reconcile if the branch moved (or a change waits, or a resync is due);
    /// status written when something may have changed. Errors are logged and counted; the next poll retries.
    public func step() async {
        var reconciled = false
        var failure: String?
        _ = await core.recoverAbandonedRuns()
        var head: ObjectID?
        do {
            head = try await mirror.refresh()
            if head == nil {
                failure = "the branch \(source.branch) does not exist on the remote"
                logger.log(
                    level: failure == lastError ? .debug : .error, "the watched branch does not exist; retrying at each poll",
                    metadata: ["branch": "\(source.branch)"])
            } else {
                lastSync = Date()
                observer?.synced(repository: name, at: lastSync!)
            }
        } catch {
            failure = "fetch: \(error)"
            observer?.gitFailed(repository: name, operation: .fetch)
            // Said once per distinct error, not at every poll; kiln_git_errors_total counts every failure.
            logger.log(
                level: failure == lastError ? .debug : .error, "cannot reach the repository; retrying at each poll",
                metadata: ["error": "\(error)"])
        }
        if let head {
            let started = ContinuousClock.now
            do {
                let commit = try await mirror.effectiveCommit(head)
                let resync = ContinuousClock.now - lastFullReconcile > options.resyncInterval
                if commit != lastReconciled || requeued || resync {
                    let report = try await reconciler.reconcile(commit)
                    lastReconciled = commit
                    requeued = report.requeue
                    sourceErrors = report.sourceErrors
                    lastFullReconcile = .now
                    reconciled = true
                    observer?.reconciled(repository: name, duration: ContinuousClock.now - started, result: report.hasProblems ? .problems : .success)
                    onReport(report)
                    if !report.queuedRuns.isEmpty { launch() }
                }
            } catch {
                failure = "reconcile: \(error)"
                observer?.reconciled(repository: name, duration: ContinuousClock.now - started, result: .error)
                logger.error("reconcile failed; retrying at the next poll", metadata: ["error": "\(error)"])
            }
        }
        do {
            try await followRuns(reconciled: reconciled)
        } catch {
            failure = failure ?? "status: \(error)"
            logger.error("status write failed; retrying at the next poll", metadata: ["error": "\(error)"])
        }
        if failure == nil, let previous = lastError {
            logger.notice("the repository works again", metadata: ["previousError": "\(previous)"])
        }
        lastError = failure
    }

    /// After a step's reconcile: the status written while runs of this repository are active (or have just
    /// ended), a worker started for a queue nobody claims, and a requeue once a run ended.
    func followRuns(reconciled: Bool) async throws {
        // This repository's builds set the status cadence (a build of another repository does not make this
        // one poll every 2 s); every build counts for starting a worker.
        let mine = try await core.activeRuns(managedBy: source.key)
        let active = try await core.activeRuns()
        if reconciled || !mine.isEmpty || hadActiveRuns {
            let errors = sourceErrors
            do {
                try await status.sync(sourceErrors: errors.byTemplate, invalidFiles: errors.files)
            } catch {
                if error is GitError { observer?.gitFailed(repository: name, operation: .push) }
                throw error
            }
        }
        // Queued runs and nothing executing (a worker died before claiming): start a worker. A worker that is
        // executing claims the queue itself, so none is started then.
        if active.contains(where: { $0.owner == nil }), !active.contains(where: { $0.owner != nil }),
            lastLaunch.map({ ContinuousClock.now - $0 > .seconds(30) }) ?? true
        {
            launch()
        }
        hadActiveRuns = !mine.isEmpty
        // A run of this repository ended: what it published may make other templates outdated, so the next
        // step reconciles (soon: a requeue sleeps `statusInterval`).
        let ids = Set(mine.map(\.id))
        if !activeRunIds.subtracting(ids).isEmpty { requeued = true }
        activeRunIds = ids
    }

    func launch() {
        lastLaunch = .now
        launchWorkers()
    }

    func jittered(_ d: Duration) -> Duration {
        let ms = d.inSeconds * 1000
        return .milliseconds(Int(ms * Double.random(in: 0.9...1.1)))
    }

    func sleep(_ d: Duration) async {
        if pendingWake {
            pendingWake = false
            return
        }
        sleepGeneration += 1
        let generation = sleepGeneration
        await withCheckedContinuation { (c: CheckedContinuation<Void, Never>) in
            sleeper = c
            Task {
                try? await Task.sleep(for: d)
                self.timerFired(generation)
            }
        }
    }

    func timerFired(_ generation: Int) {
        guard generation == sleepGeneration, let s = sleeper else { return }
        sleeper = nil
        s.resume()
    }
}

extension Controller {
    /// What `kiln reconcile --once` did.
    public struct OnceResult: Sendable {
        public var commit: ObjectID
        public var report: ReconcileReport
        /// The runs this reconcile started, as they ended.
        public var runs: [RunRecord]
        public var statusCommits: Int
    }

    public enum OnceError: Error, CustomStringConvertible {
        case noBranch(String, String)
        public var description: String {
            switch self {
            case .noBranch(let url, let branch): return "\(url) has no branch \(branch)"
            }
        }
    }

    /// One reconcile of the branch head; with `executeRuns`, the runs it queued are executed here (in this
    /// process) while the status branch follows them, and the call returns when they have ended.
    public func reconcileOnce(
        executeRuns: Bool, parallelism: Int = 1,
        onEvent: @escaping @Sendable (String, RunEvent) -> Void = { _, _ in }
    ) async throws -> OnceResult {
        _ = await core.recoverAbandonedRuns()
        guard let head = try await mirror.refresh() else { throw OnceError.noBranch(GitRepository.redact(source.url), source.branch) }
        let commit = try await mirror.effectiveCommit(head)
        var report = try await reconciler.reconcile(commit)
        // A change that waits for a canceled run to stop: reconciled again here once it has (bounded), since
        // there is no next poll.
        var attempts = 0
        let canceled = report.outcomes.contains(where: \.requeue)
        while canceled, report.requeue, attempts < 120 {
            attempts += 1
            try await Task.sleep(for: .seconds(1))
            let again = try await reconciler.reconcile(commit)
            report.outcomes += again.outcomes
            report.requeue = again.requeue
            report.plan = again.plan
        }
        lastReconciled = commit
        requeued = report.requeue
        sourceErrors = report.sourceErrors
        onReport(report)
        let errors = sourceErrors
        try await status.sync(sourceErrors: errors.byTemplate, invalidFiles: errors.files)
        // Runs are executed here; then the commit is planned again, since what they published may make other
        // templates outdated (a rebuilt base → the images built on it), until a plan queues nothing.
        var queued = report.queuedRuns
        var rounds = 0
        while executeRuns, !queued.isEmpty, rounds < Self.maxRounds {
            rounds += 1
            await execute(parallelism: parallelism, sourceErrors: errors, onEvent: onEvent)
            try await status.sync(sourceErrors: errors.byTemplate, invalidFiles: errors.files)
            let again = try await reconciler.reconcile(commit)
            queued = again.queuedRuns
            report.outcomes += again.outcomes
            report.plan = again.plan
            report.requeue = again.requeue
            if !queued.isEmpty {
                onReport(again)
                try await status.sync(sourceErrors: errors.byTemplate, invalidFiles: errors.files)
            }
        }
        var runs: [RunRecord] = []
        for id in report.queuedRuns { if let r = try? await core.run(id: id) { runs.append(r) } }
        return OnceResult(commit: commit, report: report, runs: runs, statusCommits: await status.commitsWritten)
    }
}

extension Controller {
    /// Rounds of "run, then plan again" in one `reconcile --once`: a chain of images built on each other is
    /// one round per level, so this bounds a chain, not a repository.
    static let maxRounds = 10

    /// Executes the queued runs in this process while the status branch follows them: written at each phase
    /// change (woken by the run's events), and at least every `statusInterval`. Returns once none is left.
    func execute(parallelism: Int, sourceErrors errors: SourceErrors, onEvent: @escaping @Sendable (String, RunEvent) -> Void) async {
        let core = self.core
        let status = self.status
        let logger = self.logger
        let interval = options.statusInterval
        await withTaskGroup(of: Bool.self) { group in
            group.addTask {
                await WorkerPool(core: core, parallelism: parallelism).run(forever: false) { runId, event in
                    onEvent(runId, event)
                    if case .phase = event { Task { await self.wake() } }
                }
                return true
            }
            group.addTask {
                while !Task.isCancelled {
                    await self.sleep(interval)
                    if Task.isCancelled { break }
                    do {
                        try await status.sync(sourceErrors: errors.byTemplate, invalidFiles: errors.files)
                    } catch {
                        logger.error("status write failed; retried at the next update", metadata: ["error": "\(error)"])
                    }
                }
                return false
            }
            for await poolDone in group where poolDone {
                group.cancelAll()
                self.wake()
            }
        }
    }
}
