// kiln plan: what reconciling a repository would do, without doing it.
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

struct PlanCommand: KilnCommand {
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

    func run(_ env: KilnEnvironment) async throws {
        let repo = try self.repo.resolved(env.configuration)
        let core = try await Template.core(env)
        let mirror = try repo.mirror(core.paths)
        let commit: ObjectID
        do {
            guard let head = try await mirror.refresh() else {
                throw CLIError.message("\(GitRepository.redact(repo.url)) has no branch \(repo.branch)")
            }
            if let revision {
                commit = try await resolveRevision(revision, mirror: mirror)
            } else {
                commit = try await mirror.effectiveCommit(head)
            }
        } catch let e as GitError {
            throw CLIError.message("\(e)")
        }
        let reconciler = Reconciler(core: core, mirror: mirror, templatesPath: repo.path)
        let plan = try await reconciler.plan(at: commit)
        switch env.output {
        case .json: try printJSON(PlanDocument(plan))
        case .text: printPlan(plan, verbose: env.verbose)
        }
        if !plan.invalid.isEmpty { throw ExitCode(1) }
        if exitCode, plan.hasChanges { throw ExitCode(2) }
    }

    func resolveRevision(_ rev: String, mirror: RepositoryMirror) async throws -> ObjectID {
        if let id = try? await mirror.repo.resolve(rev) { return id }
        let ref = rev.hasPrefix("refs/") ? rev : "refs/heads/\(rev)"
        guard RepoOptions.isValidBranch(String(ref.dropFirst(5))) else { throw ValidationError("--revision \(rev): not a valid revision") }
        let src = mirror.source
        try await mirror.repo.fetch(
            src.url, refspecs: ["+\(ref):refs/kiln/revision"], credentials: src.credentials, knownHosts: src.knownHosts, timeout: src.timeout)
        guard let id = try await mirror.repo.resolve("refs/kiln/revision") else { throw ValidationError("--revision \(rev): not found") }
        return id
    }
}
