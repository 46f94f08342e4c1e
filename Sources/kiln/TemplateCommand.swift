import ArgumentParser
import Foundation
import KilnBuild
import KilnCore
import KilnDistribute
import KilnStore
import KilnSystem
import KilnTemplates

struct Template: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Create, run and inspect image templates.",
        discussion: """
            Templates are immutable, as in Azure VM Image Builder: to change one, delete it and create it again \
            (only tags, identity, distribute and vmProfile can be patched). A NAME may be a template's name or \
            its full resource id.
            """,
        subcommands: [Create.self, List.self, Show.self, Run.self, Cancel.self, Logs.self, Output.self, Runs.self, Delete.self, Worker.self]
    )

    /// Opens the core over the data directory, after recovering runs a dead process left behind.
    static func core(_ global: GlobalOptions) async throws -> KilnCore {
        let ctx = try KilnContext(global)
        // The configuration file's identities and regions when it has them; else the data directory's
        // identities.yaml and regions.yaml.
        var identities: IdentityConfig
        var regions: RegionMap
        do {
            identities = try IdentityConfig.load(path: KilnCore.defaultIdentitiesPath(ctx.paths))
            regions = try RegionMap.load(paths: ctx.paths)
        } catch {
            printError("kiln: \(error)")
            throw ExitCode(1)
        }
        if let config = ctx.configuration {
            if !config.identities.identities.isEmpty { identities = config.identities }
            if !config.regions.isEmpty || config.allowOnlyRegions != nil { regions = config.regionMap(defaultRoot: ctx.paths.regions) }
        }
        let core = KilnCore(paths: ctx.paths, store: ctx.store, identities: identities, regions: regions)
        for r in await core.recoverAbandonedRuns() {
            printError("kiln: run \(r.id) of \(r.templateId) was left unfinished by a process that is gone; marked \(r.runState)")
        }
        return core
    }

    /// Prints a core error and exits 1.
    static func fail(_ e: CoreError) -> ExitCode {
        printError("kiln: \(render(e))")
        return ExitCode(1)
    }

    // MARK: create

    struct Create: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Create image templates from a file (a bare resource, an ARM deployment template or YAML).",
            discussion: """
                Customization artifacts (scriptUri, sourceUri) are copied into the template's staging area now and \
                their sha256Checksum verified: a mismatch fails the create (provisioningState Failed), never a build. \
                Relative paths resolve against the template's directory, then the directory of the nearest kiln.yaml. \
                Credentials for https:// artifacts come from the identity named by the template, configured in \
                <data-dir>/identities.yaml. Exit status 1 when a template fails to provision.
                """
        )
        @OptionGroup var global: GlobalOptions
        @Argument(help: "The template file.") var file: String
        @Option(name: [.customShort("p"), .customLong("parameter")], help: ArgumentHelp("A deployment parameter NAME=VALUE.", valueName: "NAME=VALUE"))
        var parameters: [String] = []
        @Option(help: "Subscription id (default: kiln.yaml, else all zeros).") var subscription: String?
        @Option(name: .customLong("resource-group"), help: "Resource group (default: kiln.yaml, else 'kiln').") var resourceGroup: String?
        @Option(help: "Location for resourceGroup().location (default: kiln.yaml, else 'local').") var location: String?
        @Flag(help: "Queue a run right after a successful create.") var run = false

        func run() async throws {
            global.bootstrapLogging()
            var options = LoadOptions()
            for p in parameters {
                let parts = p.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
                guard parts.count == 2, !parts[0].isEmpty else { throw ValidationError("--parameter '\(p)' must be NAME=VALUE") }
                options.parameters[String(parts[0])] = String(parts[1])
            }
            if let s = subscription { options.scope.subscriptionId = s }
            if let g = resourceGroup { options.scope.resourceGroup = g }
            if let l = location { options.scope.location = l }
            let scanner = TemplateScanner(options: options, explicitScope: subscription != nil || resourceGroup != nil || location != nil)
            guard FileManager.default.fileExists(atPath: file) else {
                printError("kiln: \(file): no such file")
                throw ExitCode(1)
            }
            let loaded: LoadedFile
            do {
                guard let f = try scanner.scan([file]).first(where: { $0.path == file || $0.path.hasSuffix(file) || $0.kind == .imageTemplate || $0.kind == .deploymentTemplate }) else {
                    printError("kiln: \(file) holds no image template")
                    throw ExitCode(1)
                }
                loaded = f
            } catch let e as TemplateScanner.ScanError {
                printError("kiln: \(e)")
                throw ExitCode(1)
            }
            for d in loaded.diagnostics { printError(d.description) }
            guard loaded.isValid else { throw ExitCode(1) }
            guard !loaded.templates.isEmpty else {
                printError("kiln: \(file) holds no image template (it is \(loaded.kind?.rawValue ?? "not a template"))")
                throw ExitCode(1)
            }
            let core = try await Template.core(global)
            let absolute = URL(fileURLWithPath: file).standardizedFileURL.path
            let dir = (absolute as NSString).deletingLastPathComponent
            var roots = [dir]
            if let repo = repositoryRoot(from: dir), repo != dir { roots.append(repo) }
            let origin = TemplateOrigin(file: absolute, relativeArtifacts: DirectoryArtifactSource(roots: roots))
            var failed = false
            var created: [ImageTemplateResourceDocument] = []
            for t in loaded.templates {
                do {
                    let r = try await core.create(t, origin: origin)
                    var lastRun = try? await core.latestRun(templateId: r.record.id)
                    if run, r.provisioningState == .succeeded, lastRun == nil {
                        lastRun = try await core.queueRun(r)
                        try spawnWorker(global: global, paths: core.paths)
                    }
                    created.append(ImageTemplateResourceDocument(r, lastRun: lastRun))
                    if r.provisioningState == .succeeded {
                        if global.output == .text {
                            print("created \(r.name) (\(r.record.id)): Succeeded, \(r.record.artifacts.count) artifact\(r.record.artifacts.count == 1 ? "" : "s") staged")
                            if let lastRun { print("queued run \(lastRun.id); follow it with: kiln template logs \(r.name) --follow") }
                        }
                    } else {
                        failed = true
                        if global.output == .text {
                            print("created \(r.name) (\(r.record.id)): Failed")
                            print("  \(r.record.provisioningErrorCode ?? "Other"): \(r.record.provisioningErrorMessage ?? "")")
                            print("  the template stays, Failed, until deleted: kiln template delete \(r.name)")
                        }
                    }
                } catch let error as CoreError {
                    printError("kiln: \(t.template.name): \(render(error))")
                    failed = true
                }
            }
            if global.output == .json { if created.count == 1 { try printJSON(created[0]) } else { try printJSON(ListDocument(value: created)) } }
            if failed { throw ExitCode(1) }
        }

        /// The directory of the nearest kiln.yaml above `dir`, the root of a GitOps repository checkout.
        func repositoryRoot(from dir: String) -> String? {
            var d = dir
            while true {
                for n in ["kiln.yaml", "kiln.yml"] where FileManager.default.fileExists(atPath: (d as NSString).appendingPathComponent(n)) { return d }
                let parent = (d as NSString).deletingLastPathComponent
                if parent == d || parent.isEmpty { return nil }
                d = parent
            }
        }
    }

    // MARK: list / show

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List image templates with their state and last run.")
        @OptionGroup var global: GlobalOptions
        @Option(name: .customLong("resource-group"), help: "Only this resource group.") var resourceGroup: String?

        func run() async throws {
            global.bootstrapLogging()
            let core = try await Template.core(global)
            let all: [TemplateResource]
            do { all = try await core.templates(resourceGroup: resourceGroup) } catch { throw Template.fail(error) }
            var rows: [(TemplateResource, RunRecord?)] = []
            for t in all { rows.append((t, try? await core.latestRun(templateId: t.record.id))) }
            switch global.output {
            case .json:
                try printJSON(ListDocument(value: rows.map { ImageTemplateResourceDocument($0.0, lastRun: $0.1) }))
            case .text:
                if rows.isEmpty {
                    printError("no image templates; create one with: kiln template create FILE")
                    return
                }
                var table: [[String]] = []
                for (t, r) in rows {
                    table.append([t.name, t.record.resourceGroup, t.record.provisioningState.rawValue, r?.runState.rawValue ?? "-", r?.runSubState?.rawValue ?? "-",
                                  r?.endTime.map(shortDate) ?? "-"])
                }
                printTable(["NAME", "RESOURCE GROUP", "STATE", "LAST RUN", "SUB-STATE", "ENDED"], table)
            }
        }
    }

    struct Show: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Show a template: its state, last run (phases, message, logs) and outputs.")
        @OptionGroup var global: GlobalOptions
        @Argument(help: "Template name or resource id.") var name: String

        func run() async throws {
            global.bootstrapLogging()
            let core = try await Template.core(global)
            let t: TemplateResource
            do { t = try await core.template(name) } catch { throw Template.fail(error) }
            let last = try? await core.latestRun(templateId: t.record.id)
            switch global.output {
            case .json:
                try printJSON(ImageTemplateResourceDocument(t, lastRun: last))
            case .text:
                print("\(t.name)  \(t.record.id)")
                print("  provisioningState  \(t.record.provisioningState)")
                if let code = t.record.provisioningErrorCode { print("  provisioningError  \(code): \(t.record.provisioningErrorMessage ?? "")") }
                print("  source             \(describe(t.template.properties.source))")
                print("  customize          \(t.template.properties.customize.count) step\(t.template.properties.customize.count == 1 ? "" : "s"), validate \(t.template.properties.validate.inVMValidations.count), distribute \(t.template.properties.distribute.count)")
                print("  contentHash        \(t.record.contentHash)")
                if let f = t.record.sourceFile { print("  sourceFile         \(f)\(t.record.sourceCommit.map { " @ \($0)" } ?? "")") }
                print("  staging            \(t.record.stagingDirectory)")
                if let r = last { printRun(r) } else { print("  no runs yet: kiln template run \(t.name)") }
            }
        }
    }

    // MARK: run / cancel

    struct Run: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Run a template: build, customize, validate and capture an image.",
            discussion: """
                Without --wait the run is queued and a background worker executes it; follow it with \
                `kiln template logs NAME --follow`. With --wait this process executes it (or follows the process \
                that does) and prints each step; the exit status is 0 when the run Succeeded, 1 otherwise.
                """
        )
        @OptionGroup var global: GlobalOptions
        @Argument(help: "Template name or resource id.") var name: String
        @Flag(help: "Wait for the run to finish, showing progress.") var wait = false
        @Flag(help: "With --wait, print every log line, not only the steps.") var follow = false
        @Option(help: "Runs executed at once by the background worker (across processes).") var parallelism = 1

        func run() async throws {
            global.bootstrapLogging()
            let core = try await Template.core(global)
            let queued: RunRecord
            do { queued = try await core.queueRun(name) } catch { throw Template.fail(error) }
            guard wait else {
                try spawnWorker(global: global, paths: core.paths, parallelism: parallelism)
                switch global.output {
                case .json: try printJSON(RunDocument(queued))
                case .text:
                    print("queued run \(queued.id) of \(name)")
                    print("follow it with: kiln template logs \(name) --follow")
                }
                return
            }
            let finished = try await waitForRun(core: core, runId: queued.id, global: global, follow: follow || global.verbose, parallelism: parallelism)
            if finished.runState != .succeeded { throw ExitCode(1) }
        }
    }

    struct Cancel: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Cancel a template's run in progress.",
            discussion: "The run moves to Canceling; its VM is stopped and it ends Canceled, normally within a few seconds. Waits for that unless --no-wait."
        )
        @OptionGroup var global: GlobalOptions
        @Argument(help: "Template name or resource id.") var name: String
        @Flag(name: .customLong("no-wait"), help: "Return once the cancel is requested.") var noWait = false

        func run() async throws {
            global.bootstrapLogging()
            let core = try await Template.core(global)
            var run: RunRecord
            do { run = try await core.cancel(name) } catch { throw Template.fail(error) }
            let start = ContinuousClock.now
            while !noWait, run.isActive, ContinuousClock.now - start < .seconds(60) {
                try await Task.sleep(for: .milliseconds(250))
                await core.recoverAbandonedRuns()
                run = (try? await core.run(id: run.id)) ?? run
            }
            switch global.output {
            case .json: try printJSON(RunDocument(run))
            case .text: print("run \(run.id): \(run.runState)\(run.isActive ? "" : " after \(formatDuration(ContinuousClock.now - start))")")
            }
        }
    }

    // MARK: logs / output / runs

    struct Logs: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Print a run's customization and validation logs.")
        @OptionGroup var global: GlobalOptions
        @Argument(help: "Template name or resource id.") var name: String
        @Option(help: "A run id (default: the latest run).") var run: String?
        @Flag(help: "Keep printing until the run ends.") var follow = false

        func run() async throws {
            global.bootstrapLogging()
            let core = try await Template.core(global)
            let target: RunRecord
            do {
                if let run {
                    target = try await core.run(id: run)
                } else {
                    guard let r = try await core.runs(name).first else { throw CoreError.notFound("\(name) has no runs yet") }
                    target = r
                }
            } catch let e as CoreError {
                throw Template.fail(e)
            }
            var follower = RunFollower(core: core, runId: target.id)
            if !follow { follower.pollInterval = .zero }
            let final: RunRecord
            do {
                if follow {
                    final = try await follower.follow { event in
                        if case .log(let l) = event { print(l); fflush(nil) }
                    }
                } else {
                    for name in ["customization.log", "validation.log"] {
                        let path = (target.logDirectory as NSString).appendingPathComponent(name)
                        if let d = FileManager.default.contents(atPath: path) { FileHandle.standardOutput.write(d) }
                    }
                    final = target
                }
            } catch { throw Template.fail(error) }
            if follow { printError("run \(final.id): \(final.runState)") }
        }
    }

    struct Output: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Show the run outputs of a template's last run.")
        @OptionGroup var global: GlobalOptions
        @Argument(help: "Template name or resource id.") var name: String
        @Argument(help: "One run output by name.") var runOutput: String?

        func run() async throws {
            global.bootstrapLogging()
            let core = try await Template.core(global)
            let runs: [RunRecord]
            do { runs = try await core.runs(name) } catch { throw Template.fail(error) }
            guard let last = runs.first(where: { !$0.outputs.isEmpty }) else {
                printError("kiln: \(name) has no run outputs yet (outputs come from a run that reached Distributing)")
                throw ExitCode(1)
            }
            var outputs = last.outputs
            if let runOutput {
                outputs = outputs.filter { $0.name.caseInsensitiveCompare(runOutput) == .orderedSame }
                guard !outputs.isEmpty else {
                    printError("kiln: ResourceNotFound: no run output \(runOutput); there are: \(last.outputs.map(\.name).joined(separator: ", "))")
                    throw ExitCode(1)
                }
            }
            switch global.output {
            case .json: if runOutput != nil { try printJSON(RunOutputDocument(outputs[0])) } else { try printJSON(ListDocument(value: outputs.map(RunOutputDocument.init))) }
            case .text:
                for o in outputs {
                    print("\(o.name): \(o.provisioningState)")
                    if let id = o.artifactId { print("  artifactId   \(id)") }
                    if let uri = o.artifactUri { print("  artifactUri  \(uri)") }
                    if let m = o.message { print("  note         \(m)") }
                }
            }
        }
    }

    struct Runs: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List every run of a template, newest first.")
        @OptionGroup var global: GlobalOptions
        @Argument(help: "Template name or resource id.") var name: String

        func run() async throws {
            global.bootstrapLogging()
            let core = try await Template.core(global)
            let runs: [RunRecord]
            do { runs = try await core.runs(name) } catch { throw Template.fail(error) }
            switch global.output {
            case .json: try printJSON(ListDocument(value: runs.map(RunDocument.init)))
            case .text:
                var table: [[String]] = []
                for r in runs {
                    let d = r.endTime.map { formatDuration(.seconds($0.timeIntervalSince(r.startTime ?? r.queuedAt))) } ?? "-"
                    table.append([r.id, r.runState.rawValue, r.runSubState?.rawValue ?? "-", shortDate(r.queuedAt), d])
                }
                printTable(["RUN", "STATE", "SUB-STATE", "QUEUED", "DURATION"], table)
            }
        }
    }

    // MARK: delete

    struct Delete: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Delete a template, its runs and its staging area.",
            discussion: "Refused (OperationNotAllowed) while a run is Running or Canceling. A build VM kept by errorHandling abort is stopped."
        )
        @OptionGroup var global: GlobalOptions
        @Argument(help: "Template name or resource id.") var name: String

        func run() async throws {
            global.bootstrapLogging()
            let core = try await Template.core(global)
            do { try await core.delete(name) } catch { throw Template.fail(error) }
            if global.output == .text { print("deleted \(name)") } else { try printJSONObject(["deleted": name]) }
        }
    }

    // MARK: worker

    struct Worker: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Execute queued runs until none is left (started in the background by `kiln template run`).",
            shouldDisplay: false
        )
        @OptionGroup var global: GlobalOptions
        @Option(help: "Runs executed at once (across processes).") var parallelism = 1
        @Flag(help: "Keep polling for new runs instead of exiting when the queue is empty.") var forever = false

        func run() async throws {
            global.bootstrapLogging()
            let core = try await Template.core(global)
            let signals = StopSignals.cancelRunsOnSignal()
            defer { signals.forEach { $0.cancel() } }
            await WorkerPool(core: core, parallelism: parallelism).run(forever: forever) { runId, event in
                if case .phase(let p) = event { print("\(Date()) run \(runId): \(p.rawValue)"); fflush(nil) }
            }
        }
    }
}

// MARK: - Helpers

/// Executes or follows a run to its end, printing progress; returns the finished run.
func waitForRun(core: KilnCore, runId: String, global: GlobalOptions, follow: Bool, parallelism: Int) async throws -> RunRecord {
    let start = ContinuousClock.now
    let text = global.output == .text
    if text { printError("run \(runId): queued") }
    let finished: RunRecord
    let signals = StopSignals.cancelRunsOnSignal()
    defer { signals.forEach { $0.cancel() } }
    do {
        finished = try await WorkerPool(core: core, parallelism: parallelism).runToCompletion(runId) { event in
            guard text else { return }
            switch event {
            case .phase(let p): printError("[\(formatDuration(ContinuousClock.now - start))] \(p.rawValue)")
            case .log(let l):
                if follow {
                    printError(l)
                } else if let r = l.range(of: "==> ") {
                    printError("    \(l[r.upperBound...])")
                }
            }
        }
    } catch {
        throw Template.fail(error)
    }
    switch global.output {
    case .json: try printJSON(RunDocument(finished))
    case .text:
        print("run \(finished.id): \(finished.runState) in \(formatDuration(ContinuousClock.now - start))")
        printRun(finished, header: false)
    }
    return finished
}

func printRun(_ r: RunRecord, header: Bool = true) {
    if header { print("  last run           \(r.id): \(r.runState.rawValue)\(r.runSubState.map { " (\($0.rawValue))" } ?? "")") }
    let phases = RunSubState.allCases.compactMap { p in r.phaseSeconds[p].map { "\(p.rawValue) \(formatDuration(.seconds($0)))" } }
    if !phases.isEmpty { print("  phases             \(phases.joined(separator: ", "))") }
    if let s = r.sourceReference { print("  source image       \(s)") }
    if let a = r.artifactPath { print("  image              \(a)") }
    print("  log                \((r.logDirectory as NSString).appendingPathComponent("customization.log"))")
    if let m = r.message, !m.isEmpty {
        print("  message            " + m.split(separator: "\n", omittingEmptySubsequences: false).joined(separator: "\n                     "))
    }
}

func describe(_ s: ImageSource) -> String {
    switch s {
    case .platformImage(let p): return "PlatformImage \(p.publisher):\(p.offer):\(p.sku):\(p.version)"
    case .managedImage(let m): return "ManagedImage \(m.imageId)"
    case .sharedImageVersion(let v): return "SharedImageVersion \(v.imageVersionId)"
    }
}

func shortDate(_ d: Date) -> String {
    let f = DateFormatter()
    f.dateFormat = "yyyy-MM-dd HH:mm:ss"
    f.timeZone = TimeZone(identifier: "UTC")
    return f.string(from: d)
}

/// Prints a JSON object built from dictionaries (the ARM shapes).
func printJSONObject(_ value: Any) throws {
    let data = try JSONSerialization.data(withJSONObject: value, options: [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes])
    FileHandle.standardOutput.write(data)
    FileHandle.standardOutput.write(Data("\n".utf8))
}

/// Starts `kiln template worker` in its own session, detached from this terminal, so that a queued run is
/// executed after this command exits. Its output goes to `<data>/logs/worker.log`, rotated at 16 MiB (three
/// old files kept: `worker.log.1` … `.3`).
func spawnWorker(global: GlobalOptions, paths: KilnPaths, parallelism: Int = 1) throws {
    let logs = (paths.dataDir as NSString).appendingPathComponent("logs")
    try FileManager.default.createDirectory(atPath: logs, withIntermediateDirectories: true)
    let logFile = (logs as NSString).appendingPathComponent("worker.log")
    LogRotation.rotate(logFile, maxBytes: 16 << 20, keep: 3)
    let exe = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0]
    do {
        // The worker reads the same configuration file (regions, identities, logging) as the process that starts it.
        var args = ["template", "worker", "--data-dir", paths.dataDir, "--parallelism", String(parallelism)]
        if let config = global.config { args += ["--config", URL(fileURLWithPath: config).standardizedFileURL.path] }
        let pid = try BackgroundProcess.spawn(exe, args,
                                        output: logFile, append: true, detach: .session)
        BackgroundProcess.reapOnExit(pid)
    } catch {
        printError("kiln: cannot start the background worker (\(error)); run `kiln template worker` yourself")
        throw ExitCode(1)
    }
}
