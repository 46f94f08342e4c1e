// Retention: which run images and gallery versions go, and which never do.
import Foundation
import KilnBuild
import KilnStore
import KilnTemplates

/// How much is kept (the configuration's `retention`, `kiln gc` flags).
public struct RetentionSettings: Sendable, Hashable {
    /// Run images kept per template, newest first (the newest is what a rerun reuses). At least 1.
    public var runImages: Int
    /// Versions kept per gallery image definition, highest first, besides the protected ones. At least 1.
    public var galleryVersions: Int

    public init(runImages: Int = 2, galleryVersions: Int = 5) {
        self.runImages = max(1, runImages)
        self.galleryVersions = max(1, galleryVersions)
    }
}

/// One thing retention removes, and why.
public struct Deletion: Sendable, Hashable, Codable {
    public enum Kind: String, Sendable, Hashable, Codable {
        case runImage = "RunImage", galleryImageVersion = "GalleryImageVersion"
    }
    public var kind: Kind
    /// A run id, or a gallery image version id.
    public var id: String
    /// "run image 3 of debian-12-base (keeps 2)".
    public var reason: String
}

/// What retention looks at, read from the store in one pass: pure input for `RetentionPlanner`.
struct RetentionInventory: Sendable {
    /// Every run image, newest first.
    var runImages: [RunImageRecord]
    /// Versions by definition id (lower-cased), highest first.
    var versions: [String: [GalleryVersionRecord]]
    /// Version ids (lower-cased) that must stay, and why: what a template's source or a trigger's baseline
    /// resolves to.
    var protected: [String: String]
    /// Definitions (lower-cased) a run in progress distributes to: left alone until it ends.
    var busyDefinitions: Set<String>
}

/// The pure decision: per template, the newest `runImages` images stay; per definition, the highest
/// `galleryVersions` versions stay, and never the highest version, the one `latest` resolves to, or a
/// protected one. Images are standalone files and lineage lives in metadata, so a version never needs its
/// parent's disk.
enum RetentionPlanner {
    static func plan(_ inventory: RetentionInventory, _ settings: RetentionSettings) -> [Deletion] {
        var out: [Deletion] = []
        var byTemplate: [String: [RunImageRecord]] = [:]
        for image in inventory.runImages { byTemplate[image.templateKey, default: []].append(image) }
        for key in byTemplate.keys.sorted() {
            let images = byTemplate[key]!
            for (n, image) in images.enumerated().dropFirst(settings.runImages) {
                out.append(
                    Deletion(
                        kind: .runImage, id: image.runId,
                        reason: "run image \(n + 1) of \(image.templateName), newest first (retention.runImages keeps \(settings.runImages))"))
            }
        }
        for definition in inventory.versions.keys.sorted() where !inventory.busyDefinitions.contains(definition) {
            let versions = inventory.versions[definition]!
            let latest = versions.first { !$0.excludeFromLatest }?.version
            for (n, v) in versions.enumerated().dropFirst(settings.galleryVersions) {
                if n == 0 || v.version == latest || inventory.protected[v.id.lowercased()] != nil { continue }
                out.append(
                    Deletion(
                        kind: .galleryImageVersion, id: v.id,
                        reason:
                            "version \(n + 1) of \(ResourceID.parse(definition)?.name ?? definition), highest first (retention.galleryVersions keeps \(settings.galleryVersions))"
                    ))
            }
        }
        return out
    }
}

extension KilnCore {
    /// What retention would remove now, in the order `collectGarbage` removes it.
    public func retentionPlan(_ settings: RetentionSettings) async throws(CoreError) -> [Deletion] {
        RetentionPlanner.plan(try await retentionInventory(), settings)
    }

    /// Removes what `retentionPlan` lists (files first, then the record), each logged with its reason.
    @discardableResult
    public func collectGarbage(_ settings: RetentionSettings) async throws(CoreError) -> [Deletion] {
        let plan = try await retentionPlan(settings)
        for d in plan {
            switch d.kind {
            case .runImage:
                try? FileManager.default.removeItem(atPath: (paths.runImage(d.id) as NSString).deletingLastPathComponent)
                try await stored { () async throws(StoreError) in try await store.removeRunImage(runId: d.id) }
            case .galleryImageVersion:
                guard let r = ResourceID.parse(d.id), let version = ImageVersion(r.name) else { continue }
                try await deleteGalleryVersion(definitionId: String(d.id.dropLast(r.name.count + "/versions/".count)), version: version)
            }
            logger.notice("retention removed", metadata: ["kind": "\(d.kind.rawValue)", "id": "\(d.id)", "reason": "\(d.reason)"])
        }
        return plan
    }

    /// After a successful run: the template's run images beyond `retention.runImages` go (gallery versions
    /// only with `kiln gc`).
    func pruneRunImages(templateKey: String) async {
        guard let images = try? await store.runImages(templateKey: templateKey) else { return }
        let inventory = RetentionInventory(runImages: images, versions: [:], protected: [:], busyDefinitions: [])
        for d in RetentionPlanner.plan(inventory, retention) {
            try? FileManager.default.removeItem(atPath: (paths.runImage(d.id) as NSString).deletingLastPathComponent)
            try? await store.removeRunImage(runId: d.id)
            logger.notice("retention removed", metadata: ["kind": "\(d.kind.rawValue)", "id": "\(d.id)", "reason": "\(d.reason)"])
        }
    }

    /// Removes a gallery version and its copies in every region.
    @discardableResult
    public func deleteGalleryVersion(definitionId: String, version: ImageVersion) async throws(CoreError) -> GalleryVersionRecord {
        let removed = try await removeGalleryVersion(definitionId: definitionId, version: version)
        for dir in GalleryImageVersionDocument.replicaDirectories(removed) { try? FileManager.default.removeItem(atPath: dir) }
        try? FileManager.default.removeItem(atPath: (paths.absolute(removed.path) as NSString).deletingLastPathComponent)
        return removed
    }

    func retentionInventory() async throws(CoreError) -> RetentionInventory {
        let images = try await stored { () async throws(StoreError) in try await store.runImages() }
        var versions: [String: [GalleryVersionRecord]] = [:]
        for d in try await stored({ () async throws(StoreError) in try await store.galleryDefinitions() }) {
            versions[d.id.lowercased()] = try await stored { () async throws(StoreError) in try await store.galleryVersions(definitionId: d.id) }
        }
        var protected: [String: String] = [:]
        var busy = Set<String>()
        let active = Set(try await stored { () async throws(StoreError) in try await store.activeRuns() }.map(\.templateKey))
        for t in try await templates() {
            if case .sharedImageVersion = t.template.properties.source, let now = await currentSource(of: t.template.properties.source) {
                protected[now.reference.lowercased()] = "the source of \(t.name)"
            }
            if active.contains(t.record.idKey) {
                for case .sharedImage(let s) in t.template.properties.distribute { busy.insert(LineageKey.definition(s.galleryImageId)) }
            }
        }
        for trigger in try await stored({ () async throws(StoreError) in try await store.triggers(templateId: nil) }) {
            if let b = trigger.baselineReference { protected[b.lowercased()] = "the baseline of trigger \(trigger.name)" }
        }
        return RetentionInventory(runImages: images, versions: versions, protected: protected, busyDefinitions: busy)
    }
}

/// A gallery image (version) id without its `/versions/…`, lower-cased: a definition's key.
enum LineageKey {
    static func definition(_ id: String) -> String {
        let lower = id.lowercased()
        if let r = lower.range(of: "/versions/") { return String(lower[..<r.lowerBound]) }
        return lower
    }
}
