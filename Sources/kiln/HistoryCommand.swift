// kiln history: a template's status transitions from the status branch.
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

struct HistoryCommand: KilnCommand {
    static let configuration = CommandConfiguration(
        commandName: "history",
        abstract: "Show a template's status transitions from the status branch, newest first."
    )
    @OptionGroup var global: GlobalOptions
    @OptionGroup var repo: RepoOptions
    @Argument(help: "The template name.") var template: String
    @Option(help: "At most this many entries.") var limit = 50

    func run(_ env: KilnEnvironment) async throws {
        let repo = try self.repo.resolved(env.configuration)
        let mirror = try repo.mirror(env.paths)
        do {
            try await mirror.refresh()
            guard let tip = try await mirror.repo.resolve(mirror.source.statusRef) else {
                throw CLIError.message("\(repo.statusBranch) does not exist yet")
            }
            let suffix = "/\(template.lowercased()).json"
            let paths = try await mirror.repo.files(at: tip).map { (f: TreeFile) in f.path }.filter {
                $0.hasPrefix("status/") && $0.lowercased().hasSuffix(suffix)
            }
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
            switch env.output {
            case .json:
                try printJSON(ListDocument(value: entries.map(HistoryEntry.init)))
            case .text:
                let f = ISO8601DateFormatter()
                for e in entries { print("\(e.id.short)  \(f.string(from: e.date))  \(e.subject)") }
            }
        } catch let e as GitError {
            throw CLIError.message("\(e)")
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
