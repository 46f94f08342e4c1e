import ArgumentParser
import Foundation
import KilnBuild
import KilnCore
import KilnGit
import KilnGitOps
import KilnServer
import Logging
import KilnStore
import KilnSystem
import KilnTemplates

/// The repository options every GitOps command takes.
struct RepoOptions: ParsableArguments {
    @Option(help: ArgumentHelp("The repository: https://, ssh://, file:// URL, user@host:path, a local path, or the name of a repository in the configuration file (default: the configuration's only repository).", valueName: "URL|NAME"))
    var repo: String?

    @Option(help: "The branch that holds the templates.")
    var branch = "main"

    @Option(name: .customLong("status-branch"), help: "Where status commits go (may be the watched branch).")
    var statusBranch = "kiln/status"

    @Option(help: ArgumentHelp("Where templates live in the repository, overriding kiln.yaml's paths.templates.", valueName: "DIR"))
    var path: String?

    @Option(name: .customLong("ssh-key"), help: ArgumentHelp("SSH private key for ssh:// remotes.", valueName: "FILE"))
    var sshKey: String?

    @Option(name: .customLong("known-hosts"), help: ArgumentHelp("known_hosts checked for ssh:// remotes (default ~/.ssh/known_hosts).", valueName: "FILE"))
    var knownHosts: String?

    @Option(name: .customLong("token-file"), help: ArgumentHelp("A file holding an HTTPS token.", valueName: "FILE"))
    var tokenFile: String?

    @Option(name: .customLong("token-env"), help: ArgumentHelp("An environment variable holding an HTTPS token.", valueName: "NAME"))
    var tokenEnv: String?

    @Option(name: .customLong("author"), help: ArgumentHelp("Author of status commits and notes (default: the configuration's, else Kiln <kiln@localhost>).", valueName: "NAME <EMAIL>"))
    var author: String?

    @Option(name: .customLong("git-timeout"), help: ArgumentHelp("Give up a fetch, ls-remote or push after this long without progress: 30s, 2m (default: the configured repository's, else 60s).", valueName: "DURATION"))
    var gitTimeout: String?

    /// The configured repository's interval, when `--repo` named one.
    var configuredInterval: Double?
    /// The configured repository's git timeout, when `--repo` named one.
    var configuredTimeout: Double?
    /// The configured repository's name and webhook secret file, when `--repo` named one.
    var configuredName: String?
    var configuredWebhookSecretFile: String?

    /// The URL, once `resolved` has filled it in.
    var url: String { repo ?? "" }

    /// The flags that describe one repository; without `--repo` they have nothing to apply to.
    var givenRepositoryFlags: [String] {
        var out: [String] = []
        if branch != "main" { out.append("--branch") }
        if statusBranch != "kiln/status" { out.append("--status-branch") }
        if path != nil { out.append("--path") }
        if sshKey != nil { out.append("--ssh-key") }
        if knownHosts != nil { out.append("--known-hosts") }
        if tokenFile != nil { out.append("--token-file") }
        if tokenEnv != nil { out.append("--token-env") }
        return out
    }

    func validate() throws {
        for (flag, b) in [("--branch", branch), ("--status-branch", statusBranch)] where !Self.isValidBranch(b) {
            throw ValidationError("\(flag) \(b): not a valid branch name")
        }
        if let path, path.contains("..") { throw ValidationError("--path \(path): may not contain '..'") }
        if let gitTimeout { guard let d = parseDuration(gitTimeout), d >= .seconds(1) else { throw ValidationError("--git-timeout \(gitTimeout): give a duration of at least 1s, like 30s or 2m") } }
        if sshKey != nil && (tokenFile != nil || tokenEnv != nil) { throw ValidationError("give an SSH key or a token, not both") }
        _ = try parsedAuthor()
    }

    /// Untrusted input is checked here, before libgit2 sees it: only the transports Kiln supports.
    static func checkURL(_ url: String) throws {
        if url.contains("::") { throw ValidationError("--repo \(url): transport helpers (x::…) are not supported") }
        if let scheme = url.range(of: "://").map({ String(url[..<$0.lowerBound]).lowercased() }) {
            guard ["https", "http", "ssh", "file", "git"].contains(scheme) else {
                throw ValidationError("--repo \(GitRepository.redact(url)): unsupported scheme \(scheme); use https, ssh, file or a local path")
            }
            if let c = URLComponents(string: url), c.password != nil || (scheme.hasPrefix("http") && c.user != nil) {
                throw ValidationError("--repo \(GitRepository.redact(url)): the URL carries credentials; give the token with --token-file or --token-env")
            }
            return
        }
        if url.range(of: #"^[A-Za-z0-9._-]+@[A-Za-z0-9._-]+:"#, options: .regularExpression) != nil { return }
        var isDir: ObjCBool = false
        guard FileManager.default.fileExists(atPath: url, isDirectory: &isDir), isDir.boolValue else {
            throw ValidationError("--repo \(url): no such directory, and not a URL")
        }
    }

    static func isValidBranch(_ b: String) -> Bool {
        !b.isEmpty && !b.hasPrefix("-") && !b.hasPrefix("/") && !b.hasSuffix("/") && !b.hasSuffix(".lock") && !b.contains("..")
            && !b.contains("//") && !b.contains("@{") && b.unicodeScalars.allSatisfy { $0.value > 0x20 && $0.value != 0x7F && !"~^:?*[\\".unicodeScalars.contains($0) }
    }

    /// These options completed from the configuration file: `--repo NAME` picks a configured repository (its
    /// url, branch, path, status branch and credentials, each overridden by a flag given here); no `--repo`
    /// picks the configuration's only repository. The configuration's author applies when `--author` is not
    /// given. The URL is checked here, at the edge.
    func resolved(_ global: GlobalOptions) throws -> RepoOptions {
        let config = try global.loadConfiguration()
        guard let repo else {
            let configured = config?.repositories ?? []
            guard configured.count == 1 else {
                throw ValidationError(configured.isEmpty
                    ? "give --repo URL (or a configuration file with a repository: --config FILE)"
                    : "give --repo NAME: the configuration has \(configured.count) repositories (\(configured.map(\.name).joined(separator: ", ")))")
            }
            var named = self
            named.repo = configured[0].name
            return try named.resolved(global)
        }
        var out = self
        if let r = config?.repositories.first(where: { $0.name.caseInsensitiveCompare(repo) == .orderedSame }) {
            out.repo = r.url
            if branch == "main" { out.branch = r.branch }
            if statusBranch == "kiln/status" { out.statusBranch = r.statusBranch }
            out.path = path ?? r.path
            if sshKey == nil, tokenFile == nil, tokenEnv == nil {
                out.sshKey = r.sshKeyFile
                out.tokenFile = r.tokenFile
                out.tokenEnv = r.tokenEnv
            }
            out.knownHosts = knownHosts ?? r.knownHosts
            out.configuredInterval = r.intervalSeconds
            out.configuredTimeout = r.timeoutSeconds
            out.configuredName = r.name
            out.configuredWebhookSecretFile = r.webhookSecretFile
        }
        if out.author == nil, let a = config?.author { out.author = "\(a.name) <\(a.email)>" }
        try Self.checkURL(out.url)
        return out
    }

    /// Every repository the configuration lists, each resolved as `--repo NAME` would be (for the controller
    /// without `--repo`).
    func resolvedAll(_ global: GlobalOptions) throws -> [RepoOptions] {
        if repo != nil { return [try resolved(global)] }
        let flags = givenRepositoryFlags
        guard flags.isEmpty else { throw ValidationError("\(flags.joined(separator: ", ")) apply to one repository: give --repo too") }
        let configured = try global.loadConfiguration()?.repositories ?? []
        guard !configured.isEmpty else { throw ValidationError("give --repo URL, or a configuration file (--config FILE) that lists repositories") }
        return try configured.map { r in
            var named = self
            named.repo = r.name
            return try named.resolved(global)
        }
    }

    func parsedAuthor() throws -> GitSignature {
        let author = self.author ?? "Kiln <kiln@localhost>"
        guard let lt = author.firstIndex(of: "<"), author.hasSuffix(">") else {
            throw ValidationError("--author \(author): write it as 'Name <email>'")
        }
        let name = author[..<lt].trimmingCharacters(in: .whitespaces)
        let email = String(author[author.index(after: lt)..<author.index(before: author.endIndex)])
        guard !name.isEmpty, email.contains("@") || email == "kiln@localhost" else { throw ValidationError("--author \(author): write it as 'Name <email>'") }
        return GitSignature(name: name, email: email)
    }

    func source() throws -> GitSource {
        var credentials = GitCredentials.none
        if let sshKey { credentials = .sshKeyFile(privateKeyPath: sshKey, publicKeyPath: nil, passphrase: nil) }
        if let tokenFile {
            guard let t = try? String(contentsOfFile: tokenFile, encoding: .utf8) else { throw ValidationError("--token-file \(tokenFile): cannot read it") }
            credentials = .token(t.trimmingCharacters(in: .whitespacesAndNewlines))
        }
        if let tokenEnv {
            guard let t = ProcessInfo.processInfo.environment[tokenEnv], !t.isEmpty else { throw ValidationError("--token-env \(tokenEnv): the variable is not set") }
            credentials = .token(t)
        }
        var hosts: KnownHosts?
        if url.hasPrefix("ssh://") || url.range(of: #"^[A-Za-z0-9._-]+@[A-Za-z0-9._-]+:"#, options: .regularExpression) != nil {
            let file = knownHosts ?? (NSHomeDirectory() as NSString).appendingPathComponent(".ssh/known_hosts")
            do { hosts = try KnownHosts(path: file) } catch { throw ValidationError("--known-hosts \(file): \(error)") }
        }
        let timeout = gitTimeout.flatMap(parseDuration) ?? configuredTimeout.map { .milliseconds(Int($0 * 1000)) } ?? defaultGitTimeout
        return GitSource(url: url, branch: branch, statusBranch: statusBranch, credentials: credentials, knownHosts: hosts,
                         author: try parsedAuthor(), timeout: timeout)
    }

    /// The core, the data directory's controller lock, and the mirror: what a command that applies needs.
    func openForWriting(_ global: GlobalOptions) async throws -> (KilnCore, ControllerLock, RepositoryMirror) {
        let core = try await Template.core(global)
        let lock: ControllerLock
        do { lock = try ControllerLock(dataDir: core.paths.dataDir) } catch { throw Template.fail(error) }
        return (core, lock, try mirror(core.paths))
    }

    func mirror(_ paths: KilnPaths) throws -> RepositoryMirror {
        do {
            return try RepositoryMirror.open(dataDir: paths.dataDir, source: try source())
        } catch let e as GitError {
            printError("kiln: cannot open the mirror of \(GitRepository.redact(url)): \(e)")
            throw ExitCode(1)
        }
    }
}

// MARK: - kiln plan

struct PlanCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "plan",
        abstract: "Show what reconciling a repository would do, without doing it.",
        discussion: """
            Compares the templates at the branch head (or --revision) with the templates Kiln has recorded for this \
            repository. Each line says what and why: "recreate ubuntu-base (scripts/setup.sh changed)". \
            With --exit-code the status is 2 when there are changes (for pull-request checks), 1 when a file is invalid.
            """
    )
    @OptionGroup var global: GlobalOptions
    @OptionGroup var repo: RepoOptions
    @Option(help: ArgumentHelp("A commit or a remote branch/ref to plan instead of the branch head.", valueName: "REV"))
    var revision: String?
    @Flag(name: .customLong("exit-code"), help: "Exit 2 when the plan has changes.") var exitCode = false

    func run() async throws {
        global.bootstrapLogging()
        let repo = try self.repo.resolved(global)
        let core = try await Template.core(global)
        let mirror = try repo.mirror(core.paths)
        let commit: ObjectID
        do {
            guard let head = try await mirror.refresh() else {
                printError("kiln: \(GitRepository.redact(repo.url)) has no branch \(repo.branch)")
                throw ExitCode(1)
            }
            if let revision {
                commit = try await resolveRevision(revision, mirror: mirror)
            } else {
                commit = try await mirror.effectiveCommit(head)
            }
        } catch let e as GitError {
            printError("kiln: \(e)")
            throw ExitCode(1)
        }
        let reconciler = Reconciler(core: core, mirror: mirror, templatesPath: repo.path)
        let plan = try await reconciler.plan(at: commit)
        switch global.output {
        case .json: try printJSON(PlanDocument(plan))
        case .text: printPlan(plan, verbose: global.verbose)
        }
        if !plan.invalid.isEmpty { throw ExitCode(1) }
        if exitCode, plan.hasChanges { throw ExitCode(2) }
    }

    func resolveRevision(_ rev: String, mirror: RepositoryMirror) async throws -> ObjectID {
        if let id = try? await mirror.repo.resolve(rev) { return id }
        let ref = rev.hasPrefix("refs/") ? rev : "refs/heads/\(rev)"
        guard RepoOptions.isValidBranch(String(ref.dropFirst(5))) else { throw ValidationError("--revision \(rev): not a valid revision") }
        let src = mirror.source
        try await mirror.repo.fetch(src.url, refspecs: ["+\(ref):refs/kiln/revision"], credentials: src.credentials, knownHosts: src.knownHosts, timeout: src.timeout)
        guard let id = try await mirror.repo.resolve("refs/kiln/revision") else { throw ValidationError("--revision \(rev): not found") }
        return id
    }
}

func printPlan(_ plan: Plan, verbose: Bool) {
    let counts = Dictionary(grouping: plan.items, by: \.action).mapValues(\.count)
    let order: [PlanItem.Action] = [.create, .recreate, .move, .delete, .run, .wait, .invalid, .unchanged]
    let summary = order.compactMap { a in counts[a].map { "\($0) \(a == .unchanged ? "unchanged" : a == .invalid ? "invalid" : a == .wait ? "waiting" : "to \(a.rawValue)")" } }
    print("plan at \(plan.commit.short): " + (summary.isEmpty ? "no templates" : summary.joined(separator: ", ")))
    let marks: [PlanItem.Action: String] = [.create: "+", .recreate: "~", .move: ">", .delete: "-", .run: "^", .wait: "…", .invalid: "!", .unchanged: "="]
    for item in plan.items where verbose || item.action != .unchanged {
        print("  \(marks[item.action]!) \(item.summary)")
        for d in item.diagnostics { print("      \(d.description)") }
    }
}

// MARK: - kiln reconcile

struct Reconcile: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Reconcile a repository once: create, recreate, move and delete templates, build, write status.",
        discussion: """
            Reads the branch head, applies the plan (see `kiln plan`), executes the runs it starts in this process \
            while the status branch follows them, and writes the final status. Exit status 1 if a template is \
            invalid, failed to create, or its run did not succeed.
            """
    )
    @OptionGroup var global: GlobalOptions
    @OptionGroup var repo: RepoOptions
    @Flag(help: "Reconcile once and exit (the only mode of this command; `kiln controller` keeps watching).") var once = false
    @Flag(name: .customLong("no-build"), help: "Queue runs but do not execute them here (a worker or controller will).") var noBuild = false
    @Option(help: "Runs executed at once (default: the configuration's parallelism, else 1).") var parallelism: Int?

    func validate() throws {
        guard once else { throw ValidationError("kiln reconcile needs --once; to keep watching, run kiln controller") }
    }

    func run() async throws {
        global.bootstrapLogging()
        let repo = try self.repo.resolved(global)
        let (core, lock, mirror) = try await repo.openForWriting(global)
        defer { withExtendedLifetime(lock) {} }
        let text = global.output == .text
        let start = ContinuousClock.now
        let names = NameCache()
        let controller = Controller(core: core, mirror: mirror, templatesPath: repo.path, launchWorkers: {}, onReport: { report in
            names.record(report)
            guard text else { return }
            printReport(report)
        })
        if text { printError("reconciling \(GitRepository.redact(repo.url)) \(repo.branch)") }
        let result: Controller.OnceResult
        do {
            let parallelism = try self.parallelism ?? global.loadConfiguration()?.parallelism ?? 1
            let signals = StopSignals.cancelRunsOnSignal()
            defer { signals.forEach { $0.cancel() } }
            result = try await controller.reconcileOnce(executeRuns: !noBuild, parallelism: parallelism) { runId, event in
                guard text, case .phase(let p) = event else { return }
                printError("[\(formatDuration(ContinuousClock.now - start))] \(names.name(runId)) \(p.rawValue)")
            }
        } catch {
            printError("kiln: \(error)")
            throw ExitCode(1)
        }
        let failedRuns = noBuild ? [] : result.runs.filter { $0.runState != .succeeded }
        switch global.output {
        case .json:
            try printJSON(ReconcileDocument(result))
        case .text:
            for r in result.runs {
                print("\(names.name(r.id)): run \(r.id) \(r.runState)")
                printRun(r, header: false)
            }
            print("status: \(result.statusCommits) commit\(result.statusCommits == 1 ? "" : "s") on \(repo.statusBranch); see `git log \(repo.statusBranch)`")
        }
        if result.report.hasProblems || !failedRuns.isEmpty { throw ExitCode(1) }
    }
}

/// Template names by run id, for progress lines: filled from the reconcile report before any run starts.
final class NameCache: @unchecked Sendable {
    private var names: [String: String] = [:]
    private let lock = NSLock()

    func record(_ report: ReconcileReport) {
        lock.withLock { for o in report.outcomes { if let r = o.runId { names[r] = o.item.name } } }
    }

    func name(_ runId: String) -> String { lock.withLock { names[runId] ?? runId } }
}

func printReport(_ report: ReconcileReport) {
    for g in report.galleryResults { printError("  \(g)") }
    for o in report.outcomes { printError("  \(o.ok ? "✓" : "✗") \(o.item.summary): \(o.result)") }
    for item in report.plan.items where item.action == .invalid || item.action == .wait {
        printError("  \(item.action == .wait ? "…" : "!") \(item.summary)")
        for d in item.diagnostics { printError("      \(d.description)") }
    }
    let unchanged = report.plan.items.filter { $0.action == .unchanged }.count
    if report.outcomes.isEmpty, report.plan.invalid.isEmpty { printError("  nothing to do at \(report.plan.commit.short) (\(unchanged) unchanged)") }
}

// MARK: - kiln controller

struct ControllerCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "controller",
        abstract: "Watch repositories and keep Kiln's templates equal to them; write build status back to git.",
        discussion: """
            Watches --repo, or without it every repository of the configuration file, each in its own loop: a \
            repository that is slow or unreachable holds back no other. Each loop polls its branch (ls-remote; \
            fetches only when it moved), reconciles, starts builds in background workers, and commits status to the \
            status branch with a note on each source commit. One controller per data directory.

            With --listen (or server.listen in the configuration) it serves GET /healthz, GET /readyz (the store \
            answers and every repository has been fetched), GET /metrics (Prometheus), and webhooks: \
            POST /hooks/git/NAME for one repository, POST /hooks/git for every repository whose secret verifies the \
            signature. With --metrics-listen, /readyz and /metrics move there, off the webhook port. SIGTERM stops it after the step in progress; builds continue in their workers and a \
            restarted controller reports them.
            """
    )
    @OptionGroup var global: GlobalOptions
    @OptionGroup var repo: RepoOptions
    @Option(help: ArgumentHelp("Time between polls: 30s, 5m (default: the configured repository's, else 60s).", valueName: "DURATION")) var interval: String?
    @Option(help: "Runs executed at once by the background workers (default: the configuration's, else 1).") var parallelism: Int?
    @Option(name: [.customLong("listen"), .customLong("webhook-listen")],
            help: ArgumentHelp("Serve health, readiness, metrics and webhooks here (default: the configuration's server.listen).", valueName: "HOST:PORT"))
    var listen: String?
    @Option(name: .customLong("metrics-listen"),
            help: ArgumentHelp("Serve /readyz and /metrics here instead, leaving --listen only /healthz and the webhooks (default: the configuration's server.metricsListen).", valueName: "HOST:PORT"))
    var metricsListen: String?
    @Option(name: .customLong("webhook-secret-file"), help: ArgumentHelp("The shared secret for webhook signatures, for --repo (or for the configured repositories that have none).", valueName: "FILE"))
    var webhookSecretFile: String?
    @Option(name: .customLong("stop-grace"), help: ArgumentHelp("After SIGTERM, how long to wait for a repository whose git call hangs before exiting anyway.", valueName: "DURATION"))
    var stopGrace = "20s"

    func validate() throws {
        if let l = listen { do { _ = try ControllerServer.address(l) } catch { throw ValidationError("--listen: \(error)") } }
        if let l = metricsListen { do { _ = try ControllerServer.address(l) } catch { throw ValidationError("--metrics-listen: \(error)") } }
        if let interval { guard let d = parseDuration(interval), d >= .seconds(1) else { throw ValidationError("--interval \(interval): give a duration of at least 1s, like 30s or 5m") } }
        guard parseDuration(stopGrace) != nil else { throw ValidationError("--stop-grace \(stopGrace): give a duration like 20s") }
    }

    /// SIGTERM/SIGINT: every loop ends after its step in progress. A repository blocked in a git call (a remote
    /// that stopped answering) cannot be interrupted: it is left behind after the grace period rather than the
    /// process never exiting.
    static func stop(_ group: ControllerGroup, signal sig: Int32, grace: Duration) {
        printError("kiln: stopping (signal \(sig)); builds in progress continue in their workers")
        Task { await group.stop() }
        Task.detached {
            try? await Task.sleep(for: grace)
            printError("kiln: not stopped within \(grace) (a git call still waits on its remote, or a request is still served); exiting")
            fflush(nil)
            // _exit: atexit handlers (libgit2's and OpenSSL's cleanup) must not run under a git thread still in a call.
            _exit(0)
        }
    }

    func run() async throws {
        global.bootstrapLogging()
        let config = try global.loadConfiguration()
        let repos = try self.repo.resolvedAll(global)
        let listen = self.listen ?? config?.listen
        if let l = listen { do { _ = try ControllerServer.address(l) } catch { throw ValidationError("server.listen: \(error)") } }
        let metricsListen = self.metricsListen ?? config?.metricsListen
        if metricsListen != nil, listen == nil { throw ValidationError("--metrics-listen needs --listen (or server.listen in the configuration)") }
        if webhookSecretFile != nil, listen == nil { throw ValidationError("--webhook-secret-file needs --listen (or server.listen in the configuration)") }
        let core = try await Template.core(global)
        let lock: ControllerLock
        do { lock = try ControllerLock(dataDir: core.paths.dataDir) } catch { throw Template.fail(error) }
        defer { withExtendedLifetime(lock) {} }

        let g = global
        let paths = core.paths
        let parallelism = self.parallelism ?? config?.parallelism ?? 1
        let launch: @Sendable () -> Void = { try? spawnWorker(global: g, paths: paths, parallelism: parallelism) }
        let names = repos.map { $0.configuredName ?? GitRepository.redact($0.url) }
        let metrics = ControllerMetrics(core: core, repositories: names)
        var controllers: [Controller] = []
        var unavailable: [RepositoryHealth] = []
        var hooks: [ControllerServer.Repository] = []
        for (name, repo) in zip(names, repos) {
            // A repository that cannot start (unreadable token, bad known_hosts) is reported and skipped: the others run.
            let mirror: RepositoryMirror
            do {
                mirror = try RepositoryMirror.open(dataDir: paths.dataDir, source: try repo.source())
            } catch {
                printError("kiln controller: \(name): cannot start: \(error)")
                unavailable.append(RepositoryHealth(name: name, lastSync: nil, lastError: "cannot start: \(error)"))
                continue
            }
            var options = Controller.Options()
            options.interval = interval.flatMap(parseDuration) ?? .milliseconds(Int((repo.configuredInterval ?? 60) * 1000))
            let controller = Controller(name: name, core: core, mirror: mirror, templatesPath: repo.path, options: options,
                                        launchWorkers: launch,
                                        onReport: { report in
                                            printError("\(ISO8601DateFormatter().string(from: Date())) \(name): reconciled \(report.plan.commit.short)")
                                            printReport(report)
                                        }, observer: metrics, logger: Logger(label: "kiln.controller"))
            controllers.append(controller)
            printError("kiln controller: watching \(name) (\(GitRepository.redact(repo.url)) \(repo.branch)) every \(options.interval); status on \(repo.statusBranch)")
            let secretFile = (self.repo.repo != nil ? webhookSecretFile : nil) ?? repo.configuredWebhookSecretFile ?? webhookSecretFile
            if let secretFile {
                do {
                    hooks.append(.init(name: name, authenticator: try WebhookAuthenticator(secretFile: secretFile), wake: { await controller.wake() }))
                } catch {
                    printError("kiln controller: \(name): webhooks off: \(error)")
                    hooks.append(.init(name: name, authenticator: nil, wake: {}))
                }
            } else {
                hooks.append(.init(name: name, authenticator: nil, wake: {}))
            }
        }
        guard !controllers.isEmpty else {
            printError("kiln: no repository could be started")
            throw ExitCode(1)
        }
        let group = ControllerGroup(controllers, unavailable: unavailable)
        let grace = parseDuration(stopGrace) ?? .seconds(20)
        let signals = [SIGTERM, SIGINT].map { sig -> DispatchSourceSignal in
            signal(sig, SIG_IGN)
            let s = DispatchSource.makeSignalSource(signal: sig)
            s.setEventHandler { Self.stop(group, signal: sig, grace: grace) }
            s.resume()
            return s
        }
        if let listen {
            var logger = Logger(label: "kiln.server")
            logger.logLevel = global.verbose ? .info : .warning
            var listeners: [(address: String, routes: ControllerServer.Routes)] = [(listen, metricsListen == nil ? .all : .webhooks)]
            if let metricsListen { listeners.append((metricsListen, .observability)) }
            let apps = try ControllerServer.applications(
                listeners, repositories: hooks, metrics: metrics, readiness: { await Readiness.check(group, core: core) }, logger: logger,
                onRunning: { address, routes, port in
                    let host = address.split(separator: ":").dropLast().joined(separator: ":")
                    let label = routes == .observability ? "metrics on " : ""
                    printError("kiln controller: serving \(label)\(host):\(port) (\(routes.paths))")
                })
            do {
                try await ControllerServer.serve(apps, while: { await group.run() }, stop: { await group.stop() }, logger: logger)
            } catch {
                printError("kiln: cannot serve \([listen, metricsListen].compactMap { $0 }.joined(separator: " and ")): \(error)")
                throw ExitCode(1)
            }
        } else {
            await group.run()
        }
        signals.forEach { $0.cancel() }
    }
}

/// `30s`, `5m`, `1h`, `90` (seconds).
/// Up to a week; `inf`, `nan`, negative and larger values are nil (they would trap converting to Int).
func parseDuration(_ s: String) -> Duration? {
    let units: [(String, Double)] = [("ms", 1), ("s", 1000), ("m", 60_000), ("h", 3_600_000)]
    var ms = Double(s).map { $0 * 1000 }
    for (suffix, factor) in units where s.hasSuffix(suffix) {
        ms = Double(s.dropLast(suffix.count)).map { $0 * factor }
        break
    }
    guard let v = ms, v.isFinite, v >= 0, v <= 7 * 86_400_000 else { return nil }
    return .milliseconds(Int(v))
}

// MARK: - kiln status / history

struct StatusCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "status",
        abstract: "Show build status as the status branch records it.",
        discussion: "Reads status/<resourceGroup>/<name>.json from the status branch (fetched first)."
    )
    @OptionGroup var global: GlobalOptions
    @OptionGroup var repo: RepoOptions
    @Argument(help: "A template name (default: all).") var template: String?

    func run() async throws {
        global.bootstrapLogging()
        let repo = try self.repo.resolved(global)
        let ctx = try KilnContext(global)
        let mirror = try repo.mirror(ctx.paths)
        let docs: [(String, TemplateStatusDocument)]
        do {
            docs = try await readStatus(mirror: mirror)
        } catch {
            printError("kiln: \(error)")
            throw ExitCode(1)
        }
        let selected = docs.filter { template == nil || $0.1.name?.lowercased() == template!.lowercased() }
        if let template, selected.isEmpty {
            printError("kiln: the status branch \(repo.statusBranch) has no status for \(template)")
            throw ExitCode(1)
        }
        switch global.output {
        case .json:
            if template != nil, selected.count == 1 { try printJSON(selected[0].1) } else { try printJSON(ListDocument(value: selected.map(\.1))) }
        case .text:
            let rows = selected.map { path, d in
                [d.name ?? d.file ?? path, d.label.text, d.runId ?? "-", d.sourceFile ?? "-", String((d.sourceCommit ?? "-").prefix(7))]
            }
            printTable(["NAME", "STATE", "RUN", "FILE", "COMMIT"], rows)
        }
    }

    func readStatus(mirror: RepositoryMirror) async throws -> [(String, TemplateStatusDocument)] {
        try await mirror.refresh()
        guard let tip = try await mirror.repo.resolve(mirror.source.statusRef) else { return [] }
        var out: [(String, TemplateStatusDocument)] = []
        for f in try await mirror.repo.files(at: tip).sorted(by: { $0.path < $1.path }) where f.path.hasPrefix("status/") && f.path.hasSuffix(".json") {
            if let d = try? TemplateStatusDocument.decode(try await mirror.repo.blob(f.blob)) { out.append((f.path, d)) }
        }
        return out
    }
}

struct HistoryCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "history",
        abstract: "Show a template's status transitions from the status branch, newest first."
    )
    @OptionGroup var global: GlobalOptions
    @OptionGroup var repo: RepoOptions
    @Argument(help: "The template name.") var template: String
    @Option(help: "At most this many entries.") var limit = 50

    func run() async throws {
        global.bootstrapLogging()
        let repo = try self.repo.resolved(global)
        let ctx = try KilnContext(global)
        let mirror = try repo.mirror(ctx.paths)
        do {
            try await mirror.refresh()
            guard let tip = try await mirror.repo.resolve(mirror.source.statusRef) else {
                printError("kiln: \(repo.statusBranch) does not exist yet")
                throw ExitCode(1)
            }
            let suffix = "/\(template.lowercased()).json"
            let paths = try await mirror.repo.files(at: tip).map { (f: TreeFile) in f.path }.filter { $0.hasPrefix("status/") && $0.lowercased().hasSuffix(suffix) }
            var entries: [CommitInfo] = []
            if paths.isEmpty {
                // Deleted: find it in the history by commit trailers.
                entries = try await mirror.repo.log(from: tip, limit: 10_000).filter {
                    $0.subject.lowercased().hasPrefix(template.lowercased() + ":")
                }
            } else {
                for p in paths { entries += try await mirror.repo.log(from: tip, limit: 10_000, touching: p) }
            }
            entries = Array(entries.sorted { $0.date > $1.date }.prefix(limit))
            switch global.output {
            case .json:
                try printJSON(ListDocument(value: entries.map(HistoryEntry.init)))
            case .text:
                let f = ISO8601DateFormatter()
                for e in entries { print("\(e.id.short)  \(f.string(from: e.date))  \(e.subject)") }
            }
        } catch let e as GitError {
            printError("kiln: \(e)")
            throw ExitCode(1)
        }
    }
}

/// One status transition of a template, as `kiln history --output json` prints it.
struct HistoryEntry: Encodable, Sendable {
    var commit: String
    var date: String
    var subject: String
    var trailers: [String: String]

    init(_ c: CommitInfo) {
        commit = c.id.hex
        date = ISO8601DateFormatter().string(from: c.date)
        subject = c.subject
        trailers = c.trailers
    }
}
