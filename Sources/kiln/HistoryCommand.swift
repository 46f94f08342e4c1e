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
