// kiln controller: watch repositories, reconcile them, serve health, metrics and webhooks.
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
import ServiceLifecycle

struct ControllerCommand: KilnCommand {
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
    @Option(
        help: ArgumentHelp("Time between polls: 30s, 5m (default: the configured repository's, else 60s).", valueName: "DURATION"),
        transform: { try Duration.parseArgument($0, atLeast: .seconds(1), hint: "give a duration of at least 1s, like 30s or 5m") })
    var interval: Duration?
    @Option(help: "Runs executed at once by the background workers (default: the configuration's, else 1).") var parallelism: Int?
    @Option(
        name: .customLong("trigger-poll-interval"),
        help: ArgumentHelp(
            "Time between polls of the SourceImage triggers (default: the configuration's triggers.pollInterval, else 60s).", valueName: "DURATION"),
        transform: { try Duration.parseArgument($0, atLeast: .seconds(1), hint: "give a duration of at least 1s, like 30s or 5m") })
    var triggerPollInterval: Duration?
    @Option(
        name: .customLong("image-refresh-interval"),
        help: ArgumentHelp(
            "Refresh the catalog's Debian 12 images this often, as `kiln images refresh` does (default: the configuration's images.refreshInterval, else never).",
            valueName: "DURATION"),
        transform: { try Duration.parseArgument($0, atLeast: .seconds(60), hint: "give a duration of at least 1m, like 6h or 24h") })
    var imageRefreshInterval: Duration?
    @Option(
        name: [.customLong("listen"), .customLong("webhook-listen")],
        help: ArgumentHelp("Serve health, readiness, metrics and webhooks here (default: the configuration's server.listen).", valueName: "HOST:PORT"),
        transform: { try ListenAddress(parsing: $0) })
    var listen: ListenAddress?
    @Option(
        name: .customLong("metrics-listen"),
        help: ArgumentHelp(
            "Serve /readyz and /metrics here instead, leaving --listen only /healthz and the webhooks (default: the configuration's server.metricsListen).",
            valueName: "HOST:PORT"),
        transform: { try ListenAddress(parsing: $0) })
    var metricsListen: ListenAddress?
    @Option(
        name: .customLong("webhook-secret-file"),
        help: ArgumentHelp("The shared secret for webhook signatures, for --repo (or for the configured repositories that have none).", valueName: "FILE"))
    var webhookSecretFile: String?
    @Option(
        name: .customLong("stop-grace"),
        help: ArgumentHelp("After SIGTERM, how long to wait for a repository whose git call hangs before exiting anyway.", valueName: "DURATION"))
    var stopGrace: Duration = .seconds(20)

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

    func run(_ env: KilnEnvironment) async throws {
        let config = env.configuration
        let repos = try self.repo.resolvedAll(config)
        let listen = self.listen ?? config?.listen
        let metricsListen = self.metricsListen ?? config?.metricsListen
        if metricsListen != nil, listen == nil { throw ValidationError("--metrics-listen needs --listen (or server.listen in the configuration)") }
        if webhookSecretFile != nil, listen == nil { throw ValidationError("--webhook-secret-file needs --listen (or server.listen in the configuration)") }
        let core = try await Template.core(env)
        let lock: ControllerLock
        do { lock = try ControllerLock(dataDir: core.paths.dataDir) } catch { throw CLIError.core(error) }
        defer { withExtendedLifetime(lock) {} }

        let paths = core.paths
        let parallelism = self.parallelism ?? config?.parallelism ?? 1
        let launch: @Sendable () -> Void = {
            // A worker that cannot start is reported; the controller goes on.
            do { try spawnWorker(env, paths: paths, parallelism: parallelism) } catch let e as CLIError { e.report() } catch {}
        }
        let names = repos.map { $0.configuredName ?? GitRepository.redact($0.url) }
        let metrics = ControllerMetrics(core: core, repositories: names)
        let started = startControllers(names: names, repos: repos, core: core, metrics: metrics, launch: launch)
        guard !started.controllers.isEmpty else {
            throw CLIError.message("no repository could be started")
        }
        let pollEvery = triggerPollInterval ?? .milliseconds(Int((config?.triggerPollSeconds ?? 60) * 1000))
        var background = [
            RepeatingTask.pollingTriggers(of: core, every: pollEvery) { runs in
                for r in runs { printError("kiln controller: a trigger of \(ResourceID.parse(r.templateId)?.name ?? r.templateId) fired: run \(r.id) queued") }
                launch()
            }
        ]
        if let every = imageRefreshInterval ?? config?.imageRefreshSeconds.map({ Duration.milliseconds(Int($0 * 1000)) }) {
            background.append(
                RepeatingTask.refreshingCatalog(of: core, sources: config?.debianSources ?? DebianSources(), every: every) { line in
                    printError("kiln controller: \(line)")
                })
        }
        // server.api configured: the same process answers the REST API on its own listener.
        var api: [any Service] = []
        if let settings = config?.api, let apiListen = settings.listen {
            api.append(try ServeCommand.application(env, settings: settings, listen: apiListen, core: core, label: "kiln controller", launch: launch))
        }
        let group = ControllerGroup(started.controllers, unavailable: started.unavailable, background: background)
        let signals = Self.stopOnSignals(group, grace: stopGrace)
        if listen != nil || !api.isEmpty {
            try await serve(
                group, listen: listen, metricsListen: metricsListen, hooks: started.hooks, metrics: metrics, core: core, api: api,
                apiListen: config?.api.listen)
        } else {
            await group.run()
        }
        signals.forEach { $0.cancel() }
    }

    /// A controller for each repository that can start, with its webhook; the repositories that cannot, as
    /// unavailable.
    func startControllers(
        names: [String], repos: [RepoOptions], core: KilnCore, metrics: ControllerMetrics,
        launch: @escaping @Sendable () -> Void
    )
        -> (controllers: [Controller], unavailable: [RepositoryHealth], hooks: [ControllerServer.Repository])
    {
        var controllers: [Controller] = []
        var unavailable: [RepositoryHealth] = []
        var hooks: [ControllerServer.Repository] = []
        for (name, repo) in zip(names, repos) {
            // A repository that cannot start (unreadable token, bad known_hosts) is reported and skipped: the others run.
            let mirror: RepositoryMirror
            do {
                mirror = try RepositoryMirror.open(dataDir: core.paths.dataDir, source: try repo.source())
            } catch {
                printError("kiln controller: \(name): cannot start: \(error)")
                unavailable.append(RepositoryHealth(name: name, lastSync: nil, lastError: "cannot start: \(error)"))
                continue
            }
            let controller = makeController(name, repo: repo, mirror: mirror, core: core, metrics: metrics, launch: launch)
            controllers.append(controller)
            hooks.append(webhook(name, repo: repo, controller: controller))
        }
        return (controllers, unavailable, hooks)
    }

    /// The controller of one repository, polling at --interval, else at the configured repository's interval.
    func makeController(
        _ name: String, repo: RepoOptions, mirror: RepositoryMirror, core: KilnCore, metrics: ControllerMetrics,
        launch: @escaping @Sendable () -> Void
    ) -> Controller {
        var options = Controller.Options()
        options.interval = interval ?? .milliseconds(Int((repo.configuredInterval ?? 60) * 1000))
        let controller = Controller(
            name: name, core: core, mirror: mirror, templatesPath: repo.path, options: options,
            launchWorkers: launch,
            onReport: { report in
                printError("\(ISO8601DateFormatter().string(from: Date())) \(name): reconciled \(report.plan.commit.short)")
                printReport(report)
            }, observer: metrics, logger: Logger(label: "kiln.controller"))
        printError(
            "kiln controller: watching \(name) (\(GitRepository.redact(repo.url)) \(repo.branch)) every \(options.interval); status on \(repo.statusBranch)")
        return controller
    }

    /// One repository's webhook route: its secret is --webhook-secret-file with --repo, else the configured
    /// repository's, else --webhook-secret-file. Without a readable secret its deliveries are refused.
    func webhook(_ name: String, repo: RepoOptions, controller: Controller) -> ControllerServer.Repository {
        let secretFile = (self.repo.repo != nil ? webhookSecretFile : nil) ?? repo.configuredWebhookSecretFile ?? webhookSecretFile
        guard let secretFile else { return .init(name: name, authenticator: nil, wake: {}) }
        do {
            return .init(name: name, authenticator: try WebhookAuthenticator(secretFile: secretFile), wake: { await controller.wake() })
        } catch {
            printError("kiln controller: \(name): webhooks off: \(error)")
            return .init(name: name, authenticator: nil, wake: {})
        }
    }

    /// Stops the group on SIGTERM and SIGINT (see `stop`); keep the returned sources alive while it runs.
    static func stopOnSignals(_ group: ControllerGroup, grace: Duration) -> [DispatchSourceSignal] {
        [SIGTERM, SIGINT].map { sig -> DispatchSourceSignal in
            signal(sig, SIG_IGN)
            let s = DispatchSource.makeSignalSource(signal: sig)
            s.setEventHandler { Self.stop(group, signal: sig, grace: grace) }
            s.resume()
            return s
        }
    }

    /// Runs the group while serving health, readiness, metrics and the webhooks on `listen` (readiness and
    /// metrics on `metricsListen` instead, when given), and `api` (the REST API's listener) beside them.
    func serve(
        _ group: ControllerGroup, listen: ListenAddress?, metricsListen: ListenAddress?, hooks: [ControllerServer.Repository],
        metrics: ControllerMetrics, core: KilnCore, api: [any Service] = [], apiListen: ListenAddress? = nil
    ) async throws {
        var logger = Logger(label: "kiln.server")
        logger.logLevel = global.verbose ? .info : .warning
        var listeners: [(address: ListenAddress, routes: ControllerServer.Routes)] = []
        if let listen { listeners.append((listen, metricsListen == nil ? .all : .webhooks)) }
        if let metricsListen { listeners.append((metricsListen, .observability)) }
        let apps = try ControllerServer.applications(
            listeners, repositories: hooks, metrics: metrics, readiness: { await Readiness.check(group, core: core) }, logger: logger,
            onRunning: { address, routes, port in
                let host = address.text.split(separator: ":").dropLast().joined(separator: ":")
                let label = routes == .observability ? "metrics on " : ""
                printError("kiln controller: serving \(label)\(host):\(port) (\(routes.paths))")
            })
        do {
            try await ControllerServer.serve(apps + api, while: { await group.run() }, stop: { await group.stop() }, logger: logger)
        } catch {
            let addresses = [listen, metricsListen, api.isEmpty ? nil : apiListen].compactMap { $0?.text }
            throw CLIError.message("cannot serve \(addresses.joined(separator: " and ")): \(error)")
        }
    }
}
