// kiln gc: remove old run images and gallery versions, as retention says.
import ArgumentParser
import Foundation
import KilnCore

struct GCCommand: KilnCommand {
    static let configuration = CommandConfiguration(
        commandName: "gc",
        abstract: "Remove run images and gallery versions beyond what retention keeps.",
        discussion: """
            Keeps, per template, the newest retention.runImages run images (2; the newest is what a rerun with the \
            same inputs reuses), and per gallery image definition the highest retention.galleryVersions versions (5). \
            Never removed: a definition's highest version, the version 'latest' resolves to, a version any template's \
            source resolves to (pinned or latest), a trigger's baseline, and anything of a definition a run in \
            progress distributes to. --dry-run lists exactly what kiln gc would remove, in the same order. Run images \
            beyond the limit also go after each successful run.
            """)
    @OptionGroup var global: GlobalOptions
    @Flag(name: .customLong("dry-run"), help: "List what would be removed; remove nothing.") var dryRun = false
    @Option(name: .customLong("keep-run-images"), help: "Run images kept per template (default: the configuration's, else 2).") var keepRunImages: Int?
    @Option(name: .customLong("keep-versions"), help: "Versions kept per gallery image definition (default: the configuration's, else 5).")
    var keepVersions: Int?

    func run(_ env: KilnEnvironment) async throws {
        let ctx = try KilnContext(env)
        var settings = ctx.retention
        if let n = keepRunImages {
            guard n >= 1 else { throw ValidationError("--keep-run-images must be at least 1") }
            settings.runImages = n
        }
        if let n = keepVersions {
            guard n >= 1 else { throw ValidationError("--keep-versions must be at least 1") }
            settings.galleryVersions = n
        }
        let deletions: [Deletion]
        do { deletions = dryRun ? try await ctx.core.retentionPlan(settings) : try await ctx.core.collectGarbage(settings) } catch {
            throw CLIError.core(error)
        }
        switch env.output {
        case .json: try printJSON(ListDocument(value: deletions))
        case .text:
            if deletions.isEmpty { print("nothing to remove") }
            for d in deletions { print("\(dryRun ? "would remove" : "removed") \(d.kind.rawValue) \(d.id): \(d.reason)") }
        }
    }
}
