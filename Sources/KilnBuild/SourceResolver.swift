import Foundation
import KilnStore
import KilnSystem
import KilnTemplates

/// A template's source, found: the disk a build VM starts from.
public struct ResolvedSource: Sendable, Hashable {
    public var kind: ImageSource.Kind
    /// Absolute path of the base disk (qcow2).
    public var disk: String
    public var osType: OSType
    public var generation: HyperVGeneration
    /// The version actually used (`latest` resolved); nil for managed images.
    public var exactVersion: String?
    /// A human description: `Debian:debian-12:12:2026.1128.0`, a gallery version id, a managed image id.
    public var reference: String
    public var sha256: String
    public var virtualSize: Int64
    /// Kept as metadata (Kiln has no Marketplace terms to accept).
    public var planInfo: PlanInfo?
}

/// A source that is not there, with AIB's code and a message listing what is.
public struct SourceResolutionError: Error, Sendable, CustomStringConvertible {
    public var code: ErrorCode
    public var message: String
    public var description: String { "\(code): \(message)" }
}

/// Resolves PlatformImage (the local catalog), ManagedImage and SharedImageVersion sources.
public struct SourceResolver: Sendable {
    public var database: any ResourceStore
    public var paths: KilnPaths

    public init(database: any ResourceStore, paths: KilnPaths) {
        self.database = database
        self.paths = paths
    }

    public func resolve(_ source: ImageSource) async throws(SourceResolutionError) -> ResolvedSource {
        do {
            switch source {
            case .platformImage(let s): return try await platform(s)
            case .managedImage(let s): return try await managed(s)
            case .sharedImageVersion(let s): return try await gallery(s)
            }
        } catch let e as SourceResolutionError {
            throw e
        } catch {
            throw SourceResolutionError(code: .serverError, message: "cannot read the catalog: \(error)")
        }
    }

    private func platform(_ s: PlatformImageSource) async throws -> ResolvedSource {
        let candidates = try await database.images(publisher: s.publisher, offer: s.offer, sku: s.sku)
        let wanted = "\(s.publisher):\(s.offer):\(s.sku):\(s.version)"
        let hit: CatalogImage?
        if s.version.lowercased() == "latest" {
            hit = candidates.first
        } else {
            hit = ImageVersion(s.version).flatMap { v in candidates.first { $0.version == v } }
        }
        guard let image = hit else {
            throw SourceResolutionError(code: .badPIRSource, message: "no image \(wanted) in the local catalog. \(try await nearest(s))")
        }
        return ResolvedSource(
            kind: .platformImage, disk: paths.absolute(image.path), osType: image.osType, generation: image.hyperVGeneration,
            exactVersion: image.version.description, reference: image.urn, sha256: image.sha256,
            virtualSize: image.virtualSize, planInfo: s.planInfo)
    }

    /// What the catalog holds nearest to a missing platform image.
    private func nearest(_ s: PlatformImageSource) async throws -> String {
        let sameOffer = try await database.images(publisher: s.publisher, offer: s.offer, sku: nil)
        let hint = "Add one to the catalog: bootstrap it (Debian 12) or import a disk image with its publisher, offer, sku and version."
        if !sameOffer.isEmpty {
            return "For \(s.publisher):\(s.offer) the catalog holds: \(Self.group(sameOffer)). \(hint)"
        }
        let samePublisher = try await database.images(publisher: s.publisher, offer: nil, sku: nil)
        if !samePublisher.isEmpty {
            return "For publisher \(s.publisher) the catalog holds: \(Self.group(samePublisher)). \(hint)"
        }
        let all = try await database.images()
        return all.isEmpty ? "The catalog is empty. \(hint)" : "The catalog holds: \(Self.group(all)). \(hint)"
    }

    /// `Debian:debian-12:12 (2026.1128.0, 2026.1120.0); ...`
    static func group(_ images: [CatalogImage]) -> String {
        var order: [String] = []
        var versions: [String: [String]] = [:]
        for i in images {
            let k = "\(i.publisher):\(i.offer):\(i.sku)"
            if versions[k] == nil { order.append(k) }
            versions[k, default: []].append(i.version.description)
        }
        return order.map { "\($0) (\(versions[$0]!.joined(separator: ", ")))" }.joined(separator: "; ")
    }

    private func managed(_ s: ManagedImageSource) async throws -> ResolvedSource {
        if let m = try await database.managedImage(id: s.imageId) {
            return ResolvedSource(
                kind: .managedImage, disk: paths.absolute(m.path), osType: m.osType, generation: m.hyperVGeneration,
                exactVersion: nil, reference: m.id, sha256: m.sha256, virtualSize: m.virtualSize, planInfo: nil)
        }
        let all = try await database.managedImages()
        let group = ResourceID.parse(s.imageId)?.resourceGroup.lowercased()
        let sameGroup = all.filter { ResourceID.parse($0.id)?.resourceGroup.lowercased() == group }
        let list = (sameGroup.isEmpty ? all : sameGroup).map(\.id)
        let what =
            list.isEmpty
            ? "no managed images exist yet (a template's ManagedImage distribution creates them)"
            : (sameGroup.isEmpty ? "managed images that exist: " : "managed images in resource group \(group ?? ""): ") + list.joined(separator: ", ")
        throw SourceResolutionError(code: .badManagedImageSource, message: "no managed image \(s.imageId); \(what)")
    }

    private func gallery(_ s: SharedImageVersionSource) async throws -> ResolvedSource {
        guard let id = ResourceID.parse(s.imageVersionId), id.fullType == ResourceID.galleryImageVersion.fullType else {
            throw SourceResolutionError(
                code: .badSharedImageVersionSource,
                message: "\(s.imageVersionId): community and direct-shared galleries are not available locally; use a gallery image version id of this Kiln")
        }
        let definitionId = String(s.imageVersionId.dropLast(id.name.count + "/versions/".count))
        guard let definition = try await database.galleryDefinition(id: definitionId) else {
            let gallery = id.segments.first?.name ?? ""
            let defs = try await database.galleryDefinitions().filter { ResourceID.parse($0.id)?.segments.first?.name.lowercased() == gallery.lowercased() }
            let list =
                defs.isEmpty
                ? "the gallery \(gallery) has no image definitions"
                : "definitions in gallery \(gallery): " + defs.map { ResourceID.parse($0.id)?.name ?? $0.id }.joined(separator: ", ")
            throw SourceResolutionError(code: .badSharedImageVersionSource, message: "no gallery image definition \(definitionId); \(list)")
        }
        let versions = try await database.galleryVersions(definitionId: definition.id)
        let chosen: GalleryVersionRecord?
        if id.name.lowercased() == "latest" {
            chosen = versions.first { !$0.excludeFromLatest }
        } else {
            chosen = ImageVersion(id.name).flatMap { v in versions.first { $0.version == v } }
        }
        guard let v = chosen else {
            let list = versions.map { $0.version.description + ($0.excludeFromLatest ? " (excluded from latest)" : "") }
            let have = list.isEmpty ? "it has no versions yet" : "its versions: \(list.joined(separator: ", "))"
            throw SourceResolutionError(code: .badSharedImageVersionSource, message: "no version '\(id.name)' of gallery image \(definition.id); \(have)")
        }
        return ResolvedSource(
            kind: .sharedImageVersion, disk: paths.absolute(v.path), osType: definition.osType, generation: definition.hyperVGeneration,
            exactVersion: v.version.description, reference: v.id, sha256: v.sha256, virtualSize: v.virtualSize, planInfo: nil)
    }
}
