import Foundation
import GRDB
import KilnTemplates

public typealias OSType = GalleryImageDefinition.OSType
public typealias HyperVGeneration = GalleryImageDefinition.Generation

/// Where a catalog image came from.
public struct Provenance: Sendable, Hashable, Codable {
    public enum Kind: String, Sendable, Hashable, Codable { case bootstrapped, imported }
    public var kind: Kind
    /// Bootstrapped: the recipe's inputs (suite, mirror, packages, recipe version) and their cache key.
    public var suite: String?
    public var mirror: String?
    public var packages: [String]?
    public var recipe: String?
    public var cacheKey: String?
    /// Bootstrapped: a digest of the installed package set (`name version arch` of every installed package),
    /// the part of the cache key that changes when Debian publishes updates.
    public var packageDigest: String?
    /// Refreshed: the digest of the archive state it was upgraded against, and the sources and extra
    /// packages of the upgrade beyond Debian's own.
    public var archiveDigest: String?
    public var extraSources: [String]?
    public var include: [String]?
    /// Imported: the file and the format qemu-img detected.
    public var importedFrom: String?
    public var originalFormat: String?
    public var originalSHA256: String?

    public init(kind: Kind) { self.kind = kind }
}

/// An image in the local catalog: Kiln's stand-in for a Marketplace image (PlatformImage sources).
public struct CatalogImage: Sendable, Hashable, Codable {
    public var publisher: String
    public var offer: String
    public var sku: String
    public var version: ImageVersion
    public var osType: OSType
    public var hyperVGeneration: HyperVGeneration
    public var architecture: String
    /// Always `qcow2` on disk.
    public var format: String
    public var virtualSize: Int64
    public var fileSize: Int64
    public var sha256: String
    /// Path of the disk, relative to the data directory.
    public var path: String
    public var createdAt: Date
    public var provenance: Provenance

    public init(
        publisher: String, offer: String, sku: String, version: ImageVersion, osType: OSType, hyperVGeneration: HyperVGeneration,
        architecture: String = "x64", format: String = "qcow2", virtualSize: Int64, fileSize: Int64, sha256: String, path: String,
        createdAt: Date, provenance: Provenance
    ) {
        self.publisher = publisher
        self.offer = offer
        self.sku = sku
        self.version = version
        self.osType = osType
        self.hyperVGeneration = hyperVGeneration
        self.architecture = architecture
        self.format = format
        self.virtualSize = virtualSize
        self.fileSize = fileSize
        self.sha256 = sha256
        self.path = path
        self.createdAt = createdAt
        self.provenance = provenance
    }

    /// `publisher:offer:sku:version`, the way Azure CLI writes an image URN.
    public var urn: String { "\(publisher):\(offer):\(sku):\(version)" }
}

extension CatalogImage: FetchableRecord, PersistableRecord {
    public static let databaseTableName = "catalogImage"

    public init(row: Row) throws {
        publisher = row["publisher"]
        offer = row["offer"]
        sku = row["sku"]
        version = ImageVersion(row["versionMajor"], row["versionMinor"], row["versionPatch"])
        osType = OSType(rawValue: row["osType"]) ?? .linux
        hyperVGeneration = HyperVGeneration(rawValue: row["hyperVGeneration"]) ?? .v1
        architecture = row["architecture"]
        format = row["format"]
        virtualSize = row["virtualSize"]
        fileSize = row["fileSize"]
        sha256 = row["sha256"]
        path = row["path"]
        createdAt = row["createdAt"]
        provenance = try JSONDecoder().decode(Provenance.self, from: Data((row["provenance"] as String).utf8))
    }

    public func encode(to container: inout PersistenceContainer) throws {
        container["publisher"] = publisher
        container["offer"] = offer
        container["sku"] = sku
        container["version"] = version.description
        container["versionMajor"] = version.major
        container["versionMinor"] = version.minor
        container["versionPatch"] = version.patch
        container["osType"] = osType.rawValue
        container["hyperVGeneration"] = hyperVGeneration.rawValue
        container["architecture"] = architecture
        container["format"] = format
        container["virtualSize"] = virtualSize
        container["fileSize"] = fileSize
        container["sha256"] = sha256
        container["path"] = path
        container["createdAt"] = createdAt
        container["provenance"] = String(decoding: try JSONEncoder.sorted.encode(provenance), as: UTF8.self)
    }
}

/// A managed image stored in a region (filled by distribution; a ManagedImage source).
public struct ManagedImageRecord: Sendable, Hashable, Codable {
    /// The resource id as written.
    public var id: String
    public var location: String
    public var osType: OSType
    public var hyperVGeneration: HyperVGeneration
    public var path: String
    public var sha256: String
    public var virtualSize: Int64
    public var createdAt: Date
    /// Source template, run, source image, tags: JSON kept as text.
    public var metadata: [String: String]

    public init(
        id: String, location: String, osType: OSType, hyperVGeneration: HyperVGeneration, path: String, sha256: String,
        virtualSize: Int64, createdAt: Date, metadata: [String: String] = [:]
    ) {
        self.id = id
        self.location = location
        self.osType = osType
        self.hyperVGeneration = hyperVGeneration
        self.path = path
        self.sha256 = sha256
        self.virtualSize = virtualSize
        self.createdAt = createdAt
        self.metadata = metadata
    }
}

extension ManagedImageRecord: FetchableRecord, PersistableRecord {
    public static let databaseTableName = "managedImage"
    public init(row: Row) throws {
        id = row["id"]
        location = row["location"]
        osType = OSType(rawValue: row["osType"]) ?? .linux
        hyperVGeneration = HyperVGeneration(rawValue: row["hyperVGeneration"]) ?? .v1
        path = row["path"]
        sha256 = row["sha256"]
        virtualSize = row["virtualSize"]
        createdAt = row["createdAt"]
        metadata = try JSONDecoder().decode([String: String].self, from: Data((row["metadata"] as String).utf8))
    }
    public func encode(to container: inout PersistenceContainer) throws {
        container["idKey"] = id.lowercased()
        container["id"] = id
        container["location"] = location
        container["osType"] = osType.rawValue
        container["hyperVGeneration"] = hyperVGeneration.rawValue
        container["path"] = path
        container["sha256"] = sha256
        container["virtualSize"] = virtualSize
        container["createdAt"] = createdAt
        container["metadata"] = String(decoding: try JSONEncoder.sorted.encode(metadata), as: UTF8.self)
    }
}

/// A Compute Gallery image definition.
public struct GalleryDefinitionRecord: Sendable, Hashable, Codable {
    public var id: String
    public var osType: OSType
    public var osState: GalleryImageDefinition.OSState
    public var hyperVGeneration: HyperVGeneration
    public var publisher: String
    public var offer: String
    public var sku: String
    public var description: String?
    public var endOfLifeDate: String?
    public var createdAt: Date

    public init(_ d: GalleryImageDefinition, createdAt: Date = Date()) {
        id = d.id
        osType = d.osType
        osState = d.osState
        hyperVGeneration = d.hyperVGeneration
        publisher = d.publisher
        offer = d.offer
        sku = d.sku
        description = d.description
        endOfLifeDate = d.endOfLifeDate
        self.createdAt = createdAt
    }
}

extension GalleryDefinitionRecord: FetchableRecord, PersistableRecord {
    public static let databaseTableName = "galleryImageDefinition"
    public init(row: Row) throws {
        id = row["id"]
        osType = OSType(rawValue: row["osType"]) ?? .linux
        osState = GalleryImageDefinition.OSState(rawValue: row["osState"]) ?? .generalized
        hyperVGeneration = HyperVGeneration(rawValue: row["hyperVGeneration"]) ?? .v1
        publisher = row["publisher"]
        offer = row["offer"]
        sku = row["sku"]
        description = row["description"]
        endOfLifeDate = row["endOfLifeDate"]
        createdAt = row["createdAt"]
    }
    public func encode(to container: inout PersistenceContainer) throws {
        container["idKey"] = id.lowercased()
        container["id"] = id
        container["osType"] = osType.rawValue
        container["osState"] = osState.rawValue
        container["hyperVGeneration"] = hyperVGeneration.rawValue
        container["publisher"] = publisher
        container["offer"] = offer
        container["sku"] = sku
        container["description"] = description
        container["endOfLifeDate"] = endOfLifeDate
        container["createdAt"] = createdAt
    }
}

/// A version of a gallery image definition, with its regional replicas.
public struct GalleryVersionRecord: Sendable, Hashable, Codable {
    /// The definition's id (`.../galleries/g/images/d`).
    public var definitionId: String
    public var version: ImageVersion
    public var excludeFromLatest: Bool
    /// The primary replica's disk, relative to the data directory.
    public var path: String
    public var sha256: String
    public var virtualSize: Int64
    /// Region name → replica count.
    public var regions: [String: Int]
    public var createdAt: Date
    public var metadata: [String: String]

    public init(
        definitionId: String, version: ImageVersion, excludeFromLatest: Bool = false, path: String, sha256: String,
        virtualSize: Int64, regions: [String: Int], createdAt: Date = Date(), metadata: [String: String] = [:]
    ) {
        self.definitionId = definitionId
        self.version = version
        self.excludeFromLatest = excludeFromLatest
        self.path = path
        self.sha256 = sha256
        self.virtualSize = virtualSize
        self.regions = regions
        self.createdAt = createdAt
        self.metadata = metadata
    }

    /// `.../images/d/versions/x.y.z`.
    public var id: String { "\(definitionId)/versions/\(version)" }
}

extension GalleryVersionRecord: FetchableRecord, PersistableRecord {
    public static let databaseTableName = "galleryImageVersion"
    public init(row: Row) throws {
        let key: String = row["definitionKey"]
        definitionId = row["definitionId"] ?? key
        version = ImageVersion(row["versionMajor"], row["versionMinor"], row["versionPatch"])
        excludeFromLatest = row["excludeFromLatest"]
        path = row["path"]
        sha256 = row["sha256"]
        virtualSize = row["virtualSize"]
        regions = try JSONDecoder().decode([String: Int].self, from: Data((row["regions"] as String).utf8))
        createdAt = row["createdAt"]
        metadata = try JSONDecoder().decode([String: String].self, from: Data((row["metadata"] as String).utf8))
    }
    public func encode(to container: inout PersistenceContainer) throws {
        container["definitionKey"] = definitionId.lowercased()
        container["version"] = version.description
        container["versionMajor"] = version.major
        container["versionMinor"] = version.minor
        container["versionPatch"] = version.patch
        container["excludeFromLatest"] = excludeFromLatest
        container["path"] = path
        container["sha256"] = sha256
        container["virtualSize"] = virtualSize
        container["regions"] = String(decoding: try JSONEncoder.sorted.encode(regions), as: UTF8.self)
        container["createdAt"] = createdAt
        container["metadata"] = String(decoding: try JSONEncoder.sorted.encode(metadata), as: UTF8.self)
    }
}

extension JSONEncoder {
    static var sorted: JSONEncoder {
        let e = JSONEncoder()
        e.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return e
    }
}
