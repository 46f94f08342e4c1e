// kiln status: build status as the status branch records it.
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

struct StatusCommand: KilnCommand {
    static let configuration = CommandConfiguration(
        commandName: "status",
        abstract: "Show build status as the status branch records it.",
        discussion: "Reads status/<resourceGroup>/<name>.json from the status branch (fetched first)."
    )
    @OptionGroup var global: GlobalOptions
    @OptionGroup var repo: RepoOptions
    @Argument(help: "A template name (default: all).") var template: String?

    func run(_ env: KilnEnvironment) async throws {
        let repo = try self.repo.resolved(env.configuration)
        let mirror = try repo.mirror(env.paths)
        let docs: [(String, TemplateStatusDocument)]
        do {
            docs = try await readStatus(mirror: mirror)
        } catch {
            throw CLIError.message("\(error)")
        }
        let selected = docs.filter { template == nil || $0.1.name?.lowercased() == template!.lowercased() }
        if let template, selected.isEmpty {
            throw CLIError.message("the status branch \(repo.statusBranch) has no status for \(template)")
        }
        switch env.output {
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
