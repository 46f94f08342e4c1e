import Foundation
import KilnStore
import KilnSystem
import KilnTemplates

/// The Microsoft.Compute shapes of what distribution makes (gallery image definitions and versions, managed
/// images), as Azure's GET returns them, plus a `kiln` object with where the files are.

/// Metadata kept as text, with the values that are JSON (regions, tags, history) shown as JSON.
func metadataDocument(_ metadata: [String: String], json keys: [String]) -> [String: JSONValue] {
    var out = metadata.mapValues(JSONValue.string)
    for k in keys { if let t = metadata[k], let parsed = JSONValue.parse(t) { out[k] = parsed } }
    return out
}

public struct GalleryImageDefinitionDocument: Encodable, Sendable {
    public struct Identifier: Encodable, Sendable { public var publisher, offer, sku: String }
    public struct Properties: Encodable, Sendable {
        public var osType: String
        public var osState: String
        public var hyperVGeneration: String
        public var identifier: Identifier
        public var description: String?
        public var endOfLifeDate: String?
    }
    public var id: String
    public var name: String
    public var type = "Microsoft.Compute/galleries/images"
    public var properties: Properties
    public var versions: [GalleryImageVersionDocument]?

    public init(_ d: GalleryDefinitionRecord, versions: [GalleryVersionRecord]? = nil) {
        id = d.id
        name = ResourceID.parse(d.id)?.name ?? d.id
        properties = Properties(
            osType: d.osType.rawValue, osState: d.osState.rawValue, hyperVGeneration: d.hyperVGeneration.rawValue,
            identifier: Identifier(publisher: d.publisher, offer: d.offer, sku: d.sku),
            description: d.description, endOfLifeDate: d.endOfLifeDate)
        self.versions = versions?.map(GalleryImageVersionDocument.init)
    }
}

public struct GalleryImageVersionDocument: Encodable, Sendable {
    public struct TargetRegion: Encodable, Sendable {
        public var name: String
        public var regionalReplicaCount: Int
    }
    public struct PublishingProfile: Encodable, Sendable {
        public var excludeFromLatest: Bool
        public var targetRegions: [TargetRegion]
        public var publishedDate: String
    }
    public struct Properties: Encodable, Sendable {
        public var publishingProfile: PublishingProfile
        public var provisioningState: String
    }
    public var id: String
    public var name: String
    public var type = "Microsoft.Compute/galleries/images/versions"
    public var properties: Properties
    public var kiln: ImageFileDetails

    public init(_ v: GalleryVersionRecord) {
        id = v.id
        name = v.version.description
        let regions = v.regions.sorted { $0.key < $1.key }.map { TargetRegion(name: $0.key, regionalReplicaCount: $0.value) }
        properties = Properties(
            publishingProfile: PublishingProfile(
                excludeFromLatest: v.excludeFromLatest, targetRegions: regions,
                publishedDate: ISO8601DateFormatter().string(from: v.createdAt)),
            provisioningState: v.metadata["state"] ?? ProvisioningState.succeeded.rawValue)
        kiln = ImageFileDetails(path: v.path, sha256: v.sha256, virtualSize: v.virtualSize, metadata: metadataDocument(v.metadata, json: ["regions", "tags"]))
    }

    /// The directories of the regions' copies, from the version's `regions` metadata.
    public static func replicaDirectories(_ v: GalleryVersionRecord) -> [String] {
        guard let regions = v.metadata["regions"].flatMap(JSONValue.parse)?.object else { return [] }
        return regions.values.compactMap { $0["path"]?.string }.map { ($0 as NSString).deletingLastPathComponent }
    }
}

public struct ManagedImageDocument: Encodable, Sendable {
    public struct OSDisk: Encodable, Sendable { public var osType: String }
    public struct StorageProfile: Encodable, Sendable { public var osDisk: OSDisk }
    public struct Properties: Encodable, Sendable {
        public var hyperVGeneration: String
        public var storageProfile: StorageProfile
    }
    public var id: String
    public var name: String
    public var type = "Microsoft.Compute/images"
    public var location: String
    public var properties: Properties
    public var kiln: ImageFileDetails

    public init(_ m: ManagedImageRecord, paths: KilnPaths) {
        id = m.id
        name = ResourceID.parse(m.id)?.name ?? m.id
        location = m.location
        properties = Properties(hyperVGeneration: m.hyperVGeneration.rawValue, storageProfile: StorageProfile(osDisk: OSDisk(osType: m.osType.rawValue)))
        kiln = ImageFileDetails(
            path: paths.absolute(m.path), sha256: m.sha256, virtualSize: m.virtualSize, metadata: metadataDocument(m.metadata, json: ["tags", "history"]))
    }
}

/// What Kiln adds to an image resource: where its disk is, its digest and size, its metadata.
public struct ImageFileDetails: Encodable, Sendable {
    public var path: String
    public var sha256: String
    public var virtualSize: Int64
    public var metadata: [String: JSONValue]
}

/// `{"deleted": ID}`.
public struct DeletedDocument: Encodable, Sendable {
    public var deleted: String
    public init(_ id: String) { deleted = id }
}
