import KilnBuild
import KilnStore
import KilnTemplates

extension RepeatingTask {
    /// `images.refreshInterval`: refreshes each generation of Debian 12 the catalog holds (`kiln images refresh
    /// debian-12`), so that SourceImage triggers and `latest` sources carry Debian's updates through the chain.
    /// A refresh that fails is reported and tried again at the next interval; the controller goes on.
    public static func refreshingCatalog(
        of core: KilnCore, sources: DebianSources, every interval: Duration, report: @escaping @Sendable (String) -> Void
    ) -> RepeatingTask {
        RepeatingTask(interval: interval) {
            let images = core.images
            let generations: Set<HyperVGeneration>
            do {
                generations = Set(try await images.list().filter { $0.publisher == "Debian" && $0.offer == "debian-12" }.map(\.hyperVGeneration))
            } catch {
                report("image refresh: cannot read the catalog: \(error)")
                return
            }
            if generations.isEmpty { report("image refresh: the catalog has no Debian 12 image to refresh (kiln images bootstrap debian-12)") }
            for generation in generations.sorted(by: { $0.rawValue < $1.rawValue }) {
                do {
                    let outcome = try await images.refreshDebian12(generation: generation, sources: sources) { _ in }
                    report("image refresh: \(outcome.summary)")
                } catch {
                    report("image refresh (\(generation.rawValue)): \(error)")
                }
            }
        }
    }
}

extension ImageService.RefreshOutcome {
    /// One line for a person: what the refresh did.
    public var summary: String {
        switch change {
        case .added:
            let what = changedPackages.count == 1 ? "1 package changed" : "\(changedPackages.count) packages changed"
            return "added \(image.urn) (\(what)\(previous.map { " since \($0)" } ?? ""))"
        case .current: return "\(image.urn) is current (the archive has not changed)"
        case .samePackages: return "\(image.urn) is current (the archive changed, the installed packages did not)"
        }
    }
}
