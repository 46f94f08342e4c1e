// kiln template: the command group, the core its subcommands open, and output helpers other commands share.
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
        subcommands: [Create.self, List.self, Show.self, Run.self, Cancel.self, Logs.self, Output.self, Runs.self, Delete.self, Trigger.self, Worker.self]
    )

    /// Opens the core over the data directory, after recovering runs a dead process left behind.
    static func core(_ env: KilnEnvironment) async throws -> KilnCore {
        let ctx = try KilnContext(env)
        // The configuration file's identities and regions when it has them; else the data directory's
        // identities.yaml and regions.yaml.
        var identities: IdentityConfig
        var regions: RegionMap
        do {
            identities = try IdentityConfig.load(path: KilnCore.defaultIdentitiesPath(ctx.paths))
            regions = try RegionMap.load(paths: ctx.paths)
        } catch {
            throw CLIError.message("\(error)")
        }
        if let config = ctx.configuration {
            if !config.identities.identities.isEmpty { identities = config.identities }
            if !config.regions.isEmpty || config.allowOnlyRegions != nil { regions = config.regionMap(defaultRoot: ctx.paths.regions) }
        }
        let core = KilnCore(
            paths: ctx.paths, store: ctx.store, identities: identities, regions: regions,
            artifactPolicy: ctx.configuration?.artifactPolicy ?? .untrusted,
            buildNetwork: ctx.configuration?.buildNetwork ?? .automatic(), retention: ctx.retention)
        for r in await core.recoverAbandonedRuns() {
            printError("kiln: run \(r.id) of \(r.templateId) was left unfinished by a process that is gone; marked \(r.runState)")
        }
        return core
    }
}

// MARK: - Helpers

func shortDate(_ d: Date) -> String {
    let f = DateFormatter()
    f.dateFormat = "yyyy-MM-dd HH:mm:ss"
    f.timeZone = TimeZone(identifier: "UTC")
    return f.string(from: d)
}
