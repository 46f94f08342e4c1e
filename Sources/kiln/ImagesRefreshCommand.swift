import ArgumentParser
import Foundation
import KilnBuild
import KilnCore
import KilnStore
import KilnTemplates

/// Where `kiln images refresh` takes packages from; the configuration's `images` section has the same keys.
struct DebianSourceOptions: ParsableArguments {
    @Option(help: "Debian mirror (default: the configuration's images.mirror, else \(DebianRecipe.defaultMirror)).") var mirror: String?
    @Option(name: .customLong("security-mirror"), help: "Debian security mirror (default: the mirror's name + -security).") var securityMirror: String?
    @Option(
        name: .customLong("extra-source"),
        help: ArgumentHelp("An APT source line used for the upgrade only, like 'deb [trusted=yes] file:/srv/repo ./' (repeatable).", valueName: "LINE"))
    var extraSources: [String] = []
    @Option(name: .customLong("include"), help: ArgumentHelp("A package to install as well (repeatable).", valueName: "PACKAGE")) var include: [String] = []

    func validate() throws {
        for line in extraSources {
            if case .failure(let e) = AptSource.parse(line) { throw ValidationError("--extra-source: \(e)") }
        }
        for name in include where !DebianSources.isPackageName(name) { throw ValidationError("--include: '\(name)' is not a Debian package name") }
        for url in [mirror, securityMirror].compactMap({ $0 }) where !(url.hasPrefix("http://") || url.hasPrefix("https://") || url.hasPrefix("file:/")) {
            throw ValidationError("'\(url)' is not an http(s) or file: URL of a Debian mirror")
        }
    }

    /// The options over the configuration's sources (a flag given replaces the configured value).
    func sources(over configured: DebianSources) -> DebianSources {
        var s = mirror.map { DebianSources(mirror: $0, securityMirror: securityMirror) } ?? configured
        if let securityMirror { s.securityMirror = securityMirror }
        if !extraSources.isEmpty { s.extra = extraSources.compactMap { try? AptSource.parse($0).get() } }
        if !include.isEmpty { s.include = include }
        return s
    }
}

extension Images {
    struct Refresh: KilnCommand {
        static let configuration = CommandConfiguration(
            abstract: "Add a new Debian 12 version to the catalog when Debian has published updates.",
            discussion: """
                Reads the release files of bookworm, bookworm-updates and bookworm-security (and of any --extra-source). \
                When they changed since the last refresh, a copy of the cached debootstrap is upgraded (apt-get \
                dist-upgrade); a new version, dated today, is added when the installed packages differ from the latest \
                version's. Otherwise nothing is added. Templates whose source is Debian 12 `latest` and their SourceImage \
                triggers pick the new version up. Needs root.
                """
        )
        @OptionGroup var global: GlobalOptions
        @Argument(help: "The distribution to refresh (only debian-12).") var distribution: String
        @Option(help: "V1 (BIOS) or V2 (UEFI); repeat for both (default: each generation in the catalog, else V1).")
        var generation: [HyperVGeneration] = []
        @OptionGroup var sourceOptions: DebianSourceOptions

        func validate() throws {
            guard distribution == "debian-12" else { throw ValidationError("only debian-12 can be refreshed") }
        }

        func run(_ env: KilnEnvironment) async throws {
            let ctx = try KilnContext(env)
            let service = ctx.core.images
            let sources = sourceOptions.sources(over: ctx.configuration?.debianSources ?? DebianSources())
            let quiet = env.output == .json
            var generations = generation
            if generations.isEmpty {
                let present = Set(try await service.list().filter { $0.publisher == "Debian" && $0.offer == "debian-12" }.map(\.hyperVGeneration))
                generations = present.isEmpty ? [.v1] : present.sorted { $0.rawValue < $1.rawValue }
            }
            struct Out: Encodable {
                var outcome: ImageService.RefreshOutcome
                var seconds: Double
            }
            var outs: [Out] = []
            for g in generations {
                let start = ContinuousClock.now
                do {
                    let outcome = try await service.refreshDebian12(generation: g, sources: sources) { line in if !quiet { printError("==> \(line)") } }
                    let took = ContinuousClock.now - start
                    outs.append(Out(outcome: outcome, seconds: seconds(took)))
                    if !quiet {
                        print("\(outcome.summary) in \(formatDuration(took))")
                        for line in outcome.changedPackages.prefix(20) { print("  \(line)") }
                        if outcome.changedPackages.count > 20 { print("  … and \(outcome.changedPackages.count - 20) more") }
                    }
                } catch {
                    throw CLIError.line("kiln images refresh: \(error)")
                }
            }
            if quiet { try printJSON(outs) }
        }
    }
}
