// kiln reconcile --once: apply a repository's plan once, build, write status.
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

struct Reconcile: KilnCommand {
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

    func run(_ env: KilnEnvironment) async throws {
        let repo = try self.repo.resolved(env.configuration)
        let (core, lock, mirror) = try await repo.openForWriting(env)
        defer { withExtendedLifetime(lock) {} }
        let text = env.output == .text
        let start = ContinuousClock.now
        let names = NameCache()
        let controller = Controller(
            core: core, mirror: mirror, templatesPath: repo.path, launchWorkers: {},
            onReport: { report in
                names.record(report)
                guard text else { return }
                printReport(report)
            })
        if text { printError("reconciling \(GitRepository.redact(repo.url)) \(repo.branch)") }
        let result: Controller.OnceResult
        do {
            let parallelism = self.parallelism ?? env.configuration?.parallelism ?? 1
            let signals = StopSignals.cancelRunsOnSignal()
            defer { signals.forEach { $0.cancel() } }
            result = try await controller.reconcileOnce(executeRuns: !noBuild, parallelism: parallelism) { runId, event in
                guard text, case .phase(let p) = event else { return }
                printError("[\(formatDuration(ContinuousClock.now - start))] \(names.name(runId)) \(p.rawValue)")
            }
        } catch {
            throw CLIError.message("\(error)")
        }
        let failedRuns = noBuild ? [] : result.runs.filter { $0.runState != .succeeded }
        switch env.output {
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
