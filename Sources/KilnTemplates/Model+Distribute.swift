// The AIB imageTemplates model, part 3: distribution targets (see Model.swift for the whole).
import Foundation

// MARK: - Distribution

public struct ManagedImageDistributor: Sendable, Hashable, Encodable {
    public var runOutputName: String
    public var artifactTags: [String: String]
    public var imageId: String
    public var location: String

    public init(runOutputName: String, artifactTags: [String: String] = [:], imageId: String, location: String) {
        self.runOutputName = runOutputName
        self.artifactTags = artifactTags
        self.imageId = imageId
        self.location = location
    }
}

public enum StorageAccountType: String, AIBEnum {
    case standardLRS = "Standard_LRS", standardZRS = "Standard_ZRS", premiumLRS = "Premium_LRS"
}

public struct TargetRegion: Sendable, Hashable, Encodable {
    public var name: String
    /// At least 1; default 1.
    public var replicaCount: Int
    public var storageAccountType: StorageAccountType
    public init(name: String, replicaCount: Int = 1, storageAccountType: StorageAccountType = .standardLRS) {
        self.name = name
        self.replicaCount = replicaCount
        self.storageAccountType = storageAccountType
    }
}

public struct Versioning: Sendable, Hashable, Encodable {
    public enum Scheme: String, AIBEnum { case latest = "Latest", source = "Source" }
    public var scheme: Scheme
    /// For `Latest`: the major version to increment within; -1 (unset) → the highest major.
    public var major: Int
    public init(scheme: Scheme, major: Int = -1) {
        self.scheme = scheme
        self.major = major
    }
    enum CodingKeys: String, CodingKey { case scheme, major }
    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(scheme, forKey: .scheme)
        if scheme == .latest { try c.encode(major, forKey: .major) }
    }
}

public struct SharedImageDistributor: Sendable, Hashable, Encodable {
    public enum ReplicationMode: String, AIBEnum { case full = "Full", shallow = "Shallow" }
    public var runOutputName: String
    public var artifactTags: [String: String]
    /// A gallery image id (version generated) or a gallery image version id (explicit).
    public var galleryImageId: String
    /// Regions with replica counts. The deprecated `replicationRegions` + `storageAccountType` input is
    /// folded in here; `usesDeprecatedReplicationRegions` remembers which form the user wrote.
    public var targetRegions: [TargetRegion]
    public var usesDeprecatedReplicationRegions: Bool
    public var excludeFromLatest: Bool
    /// nil when the id names an explicit version; `Latest` when omitted otherwise.
    public var versioning: Versioning?
    public var replicationMode: ReplicationMode

    public init(
        runOutputName: String, artifactTags: [String: String] = [:], galleryImageId: String, targetRegions: [TargetRegion],
        usesDeprecatedReplicationRegions: Bool = false, excludeFromLatest: Bool = false, versioning: Versioning? = Versioning(scheme: .latest),
        replicationMode: ReplicationMode = .full
    ) {
        self.runOutputName = runOutputName
        self.artifactTags = artifactTags
        self.galleryImageId = galleryImageId
        self.targetRegions = targetRegions
        self.usesDeprecatedReplicationRegions = usesDeprecatedReplicationRegions
        self.excludeFromLatest = excludeFromLatest
        self.versioning = versioning
        self.replicationMode = replicationMode
    }

    enum CodingKeys: String, CodingKey {
        case runOutputName, artifactTags, galleryImageId, targetRegions, excludeFromLatest, versioning, replicationMode
    }
    public func encode(to encoder: any Encoder) throws {
        // The canonical form always uses targetRegions: the same meaning gives the same JSON and hash.
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(runOutputName, forKey: .runOutputName)
        try c.encode(artifactTags, forKey: .artifactTags)
        try c.encode(galleryImageId, forKey: .galleryImageId)
        try c.encode(targetRegions, forKey: .targetRegions)
        try c.encode(excludeFromLatest, forKey: .excludeFromLatest)
        try c.encodeIfPresent(versioning, forKey: .versioning)
        try c.encode(replicationMode, forKey: .replicationMode)
    }
}

public struct VHDDistributor: Sendable, Hashable, Encodable {
    public var runOutputName: String
    public var artifactTags: [String: String]
    /// nil → the VHD stays in the staging area.
    public var uri: String?

    public init(runOutputName: String, artifactTags: [String: String] = [:], uri: String? = nil) {
        self.runOutputName = runOutputName
        self.artifactTags = artifactTags
        self.uri = uri
    }
}

public enum Distributor: Sendable, Hashable, Encodable {
    case managedImage(ManagedImageDistributor)
    case sharedImage(SharedImageDistributor)
    case vhd(VHDDistributor)

    public enum Kind: String, AIBEnum { case managedImage = "ManagedImage", sharedImage = "SharedImage", vhd = "VHD" }
    public var kind: Kind {
        switch self {
        case .managedImage: return .managedImage
        case .sharedImage: return .sharedImage
        case .vhd: return .vhd
        }
    }
    public var runOutputName: String {
        switch self {
        case .managedImage(let d): return d.runOutputName
        case .sharedImage(let d): return d.runOutputName
        case .vhd(let d): return d.runOutputName
        }
    }
    public var artifactTags: [String: String] {
        switch self {
        case .managedImage(let d): return d.artifactTags
        case .sharedImage(let d): return d.artifactTags
        case .vhd(let d): return d.artifactTags
        }
    }

    public func encode(to encoder: any Encoder) throws {
        try encodeTyped(kind.rawValue, to: encoder)
        switch self {
        case .managedImage(let d): try d.encode(to: encoder)
        case .sharedImage(let d): try d.encode(to: encoder)
        case .vhd(let d): try d.encode(to: encoder)
        }
    }
}
