import Foundation
import KilnStore
import KilnTemplates

extension ImageService {
    /// What `kiln images refresh` did.
    public struct RefreshOutcome: Sendable, Encodable {
        public enum Change: String, Sendable, Encodable {
            /// A new catalog version: the installed package set differs from the latest version's.
            case added
            /// The archive has not changed since the last upgrade, and the latest version has its packages.
            case current
            /// The archive changed (re-signed, or updates to packages Kiln does not install), the package
            /// set did not: no new version.
            case samePackages
        }
        public var change: Change
        /// The new version (added), else the latest one, which is current.
        public var image: CatalogImage
        /// The latest version before this refresh.
        public var previous: String?
        public var archiveDigest: String
        /// apt ran (the archive had changed since the last upgrade with these sources).
        public var upgraded: Bool
        public var upgradeKey: String
        public var diskKey: String
        public var packageDigest: String
        public var installedPackages: Int
        /// `name old → new`, `name (new) version`, `name (removed)`: against the previous version.
        public var changedPackages: [String]
    }

    /// `kiln images refresh debian-12`: upgrades the cached debootstrap against the archive as it is now and
    /// adds a catalog version (dated today) when the installed package set differs from the latest version's.
    public func refreshDebian12(
        generation: HyperVGeneration, sources: DebianSources, progress: @escaping @Sendable (String) -> Void
    ) async throws(ImageError) -> RefreshOutcome {
        var b = DebianBootstrap(cacheDir: paths.cacheDir, mirror: sources.mirror, logger: logger, progress: progress)
        b.mirror = sources.mirror
        progress("reading the archive: \(sources.all.count) sources")
        let archive: ArchiveState
        do { archive = try await ArchiveState.probe(sources.all, fetcher: archiveFetcher) } catch { throw .archive(error) }
        let result: DebianBootstrap.Result
        do { result = try await b.refresh(generation: generation, sources: sources, archive: archive) } catch { throw .bootstrap(error) }
        let sku = Self.debianSKU(generation)
        let latest: CatalogImage?
        do { latest = try await database.images(publisher: "Debian", offer: "debian-12", sku: sku).first } catch { throw .store(error) }
        var outcome = RefreshOutcome(
            change: result.upgraded ? .samePackages : .current, image: latest ?? Self.placeholder, previous: latest.map { $0.version.description },
            archiveDigest: archive.digest, upgraded: result.upgraded, upgradeKey: b.upgradeKey(sources), diskKey: result.cacheKey,
            packageDigest: result.packageDigest, installedPackages: result.installed.count, changedPackages: [])
        if let latest, latest.provenance.packageDigest == result.packageDigest { return outcome }
        let added = try await registerDebian(result, generation: generation, version: nil, sources: sources)
        outcome.change = .added
        outcome.image = added.image
        outcome.changedPackages = Self.changes(from: latest.map(packageList(of:)) ?? [], to: result.installed)
        return outcome
    }

    static let placeholder = CatalogImage(
        publisher: "Debian", offer: "debian-12", sku: "12", version: ImageVersion(0, 0, 0), osType: .linux, hyperVGeneration: .v1,
        virtualSize: 0, fileSize: 0, sha256: "", path: "", createdAt: Date(timeIntervalSince1970: 0), provenance: Provenance(kind: .bootstrapped))

    /// The installed packages recorded beside a bootstrapped image (empty for images made before Kiln kept them).
    public func packageList(of image: CatalogImage) -> [String] {
        let list = (paths.absolute(image.path) as NSString).deletingLastPathComponent + "/packages.txt"
        guard let data = FileManager.default.contents(atPath: list) else { return [] }
        return String(decoding: data, as: UTF8.self).split(separator: "\n").map(String.init)
    }

    /// The difference of two `name version arch` lists, one line per package that changed.
    static func changes(from old: [String], to new: [String]) -> [String] {
        func table(_ lines: [String]) -> [String: String] {
            var t: [String: String] = [:]
            for line in lines {
                let f = line.split(separator: " ").map(String.init)
                if f.count >= 2 { t[f[0]] = f[1] }
            }
            return t
        }
        let a = table(old)
        let b = table(new)
        var out: [String] = []
        for name in Set(a.keys).union(b.keys).sorted() {
            switch (a[name], b[name]) {
            case (let x?, let y?) where x != y: out.append("\(name) \(x) → \(y)")
            case (nil, let y?): out.append("\(name) (new) \(y)")
            case (let x?, nil): out.append("\(name) (removed) \(x)")
            default: break
            }
        }
        return out
    }
}
