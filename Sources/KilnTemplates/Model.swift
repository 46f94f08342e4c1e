// The AIB imageTemplates model (api-version 2025-10-01): a template as user input with AIB's defaults applied, and its read-only status.
//
// Read-only properties (provisioningState, lastRunStatus, exactVersion, ...) live in `ImageTemplateStatus`,
// never in these types: a template is what a person wrote, the status is what Kiln observed. Everything
// here is a value type; encoding produces the canonical JSON shape AIB uses (property names and enum
// spellings exactly as in the REST API), which is also what the content hash is computed over.

/// An enum whose raw values are AIB's spellings; input is matched case-insensitively.
public protocol AIBEnum: RawRepresentable<String>, CaseIterable, Sendable, Hashable, Encodable, CustomStringConvertible {}

extension AIBEnum {
    /// AIB's spelling, so that a state interpolated into a message or a log reads as the API writes it.
    public var description: String { rawValue }

    /// The case whose spelling matches `text` ignoring case.
    public static func matching(_ text: String) -> Self? {
        let lower = text.lowercased()
        return allCases.first { $0.rawValue.lowercased() == lower }
    }
    /// `'A', 'B' or 'C'`, for messages.
    public static var spellings: String {
        let all = allCases.map { "'\($0.rawValue)'" }
        guard all.count > 1 else { return all.joined() }
        return all.dropLast().joined(separator: ", ") + " or " + all.last!
    }
}

// MARK: - Resource

/// A user's image template: the envelope plus `properties`, without read-only state.
public struct ImageTemplate: Sendable, Hashable, Encodable {
    public var name: String
    /// Normalised as Azure does: lower case, no spaces ("West US 2" → "westus2").
    public var location: String
    public var tags: [String: String]
    public var identity: ImageTemplateIdentity
    public var properties: ImageTemplateProperties

    public init(name: String, location: String, tags: [String: String] = [:], identity: ImageTemplateIdentity = .none, properties: ImageTemplateProperties) {
        self.name = name
        self.location = location
        self.tags = tags
        self.identity = identity
        self.properties = properties
    }

    enum CodingKeys: String, CodingKey { case name, location, tags, identity, properties }
}

public struct ImageTemplateIdentity: Sendable, Hashable, Encodable {
    public enum Kind: String, AIBEnum { case userAssigned = "UserAssigned", none = "None" }
    public var type: Kind
    /// Identity resource ids (AIB allows at most one).
    public var userAssignedIdentities: [String]

    public init(type: Kind, userAssignedIdentities: [String] = []) {
        self.type = type
        self.userAssignedIdentities = userAssignedIdentities
    }
    public static let none = ImageTemplateIdentity(type: .none)

    enum CodingKeys: String, CodingKey { case type, userAssignedIdentities }
    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(type, forKey: .type)
        if !userAssignedIdentities.isEmpty {
            var map: [String: [String: String]] = [:]
            for id in userAssignedIdentities { map[id] = [:] }
            try c.encode(map, forKey: .userAssignedIdentities)
        }
    }
}

public struct ImageTemplateProperties: Sendable, Hashable, Encodable {
    public var source: ImageSource
    public var customize: [Customizer]
    public var validate: Validation
    public var distribute: [Distributor]
    public var optimize: Optimize
    public var errorHandling: ErrorHandling
    /// 0 or omitted in input → 240; at most 960.
    public var buildTimeoutInMinutes: Int
    public var vmProfile: VMProfile
    public var additionalDataDisks: [DataDisk]
    /// A resource-group id, or nil for the generated `IT_<rg>_<name>_<guid>`.
    public var stagingResourceGroup: String?
    public var autoRun: AutoRun
    public var managedResourceTags: [String: String]

    public init(
        source: ImageSource, customize: [Customizer] = [], validate: Validation = Validation(), distribute: [Distributor],
        optimize: Optimize = Optimize(), errorHandling: ErrorHandling = ErrorHandling(), buildTimeoutInMinutes: Int = 240,
        vmProfile: VMProfile = VMProfile(), additionalDataDisks: [DataDisk] = [], stagingResourceGroup: String? = nil,
        autoRun: AutoRun = AutoRun(), managedResourceTags: [String: String] = [:]
    ) {
        self.source = source
        self.customize = customize
        self.validate = validate
        self.distribute = distribute
        self.optimize = optimize
        self.errorHandling = errorHandling
        self.buildTimeoutInMinutes = buildTimeoutInMinutes
        self.vmProfile = vmProfile
        self.additionalDataDisks = additionalDataDisks
        self.stagingResourceGroup = stagingResourceGroup
        self.autoRun = autoRun
        self.managedResourceTags = managedResourceTags
    }

    public static let defaultBuildTimeoutInMinutes = 240
    public static let maxBuildTimeoutInMinutes = 960
}

// MARK: - Source

public enum ImageSource: Sendable, Hashable, Encodable {
    case platformImage(PlatformImageSource)
    case managedImage(ManagedImageSource)
    case sharedImageVersion(SharedImageVersionSource)

    public enum Kind: String, AIBEnum {
        case platformImage = "PlatformImage", managedImage = "ManagedImage", sharedImageVersion = "SharedImageVersion"
    }
    public var kind: Kind {
        switch self {
        case .platformImage: return .platformImage
        case .managedImage: return .managedImage
        case .sharedImageVersion: return .sharedImageVersion
        }
    }

    public func encode(to encoder: any Encoder) throws {
        try encodeTyped(kind.rawValue, to: encoder)
        switch self {
        case .platformImage(let s): try s.encode(to: encoder)
        case .managedImage(let s): try s.encode(to: encoder)
        case .sharedImageVersion(let s): try s.encode(to: encoder)
        }
    }
}

public struct PlatformImageSource: Sendable, Hashable, Encodable {
    public var publisher: String
    public var offer: String
    public var sku: String
    /// `latest` or `x.y.z`.
    public var version: String
    public var planInfo: PlanInfo?
    public init(publisher: String, offer: String, sku: String, version: String, planInfo: PlanInfo? = nil) {
        self.publisher = publisher
        self.offer = offer
        self.sku = sku
        self.version = version
        self.planInfo = planInfo
    }
}

public struct PlanInfo: Sendable, Hashable, Encodable {
    public var planName: String
    public var planProduct: String
    public var planPublisher: String
    public init(planName: String, planProduct: String, planPublisher: String) {
        self.planName = planName
        self.planProduct = planProduct
        self.planPublisher = planPublisher
    }
}

public struct ManagedImageSource: Sendable, Hashable, Encodable {
    public var imageId: String
    public init(imageId: String) { self.imageId = imageId }
}

public struct SharedImageVersionSource: Sendable, Hashable, Encodable {
    /// A gallery image version id; `.../versions/latest` allowed.
    public var imageVersionId: String
    public init(imageVersionId: String) { self.imageVersionId = imageVersionId }
}

// MARK: - Other settings

public enum FeatureState: String, AIBEnum { case enabled = "Enabled", disabled = "Disabled" }

public struct Optimize: Sendable, Hashable, Encodable {
    public struct VMBoot: Sendable, Hashable, Encodable {
        public var state: FeatureState
        public init(state: FeatureState) { self.state = state }
    }
    public struct Workload: Sendable, Hashable, Encodable {
        public var state: FeatureState
        public var scriptUri: String?
        public var sha256Checksum: String?
    }
    public var vmBoot: VMBoot
    public var workload: Workload?
    public init(vmBoot: VMBoot = VMBoot(state: .disabled), workload: Workload? = nil) {
        self.vmBoot = vmBoot
        self.workload = workload
    }
}

public struct ErrorHandling: Sendable, Hashable, Encodable {
    public enum Action: String, AIBEnum { case cleanup, abort }
    public var onCustomizerError: Action
    public var onValidationError: Action
    public init(onCustomizerError: Action = .cleanup, onValidationError: Action = .cleanup) {
        self.onCustomizerError = onCustomizerError
        self.onValidationError = onValidationError
    }
}

public struct VNetConfig: Sendable, Hashable, Encodable {
    public var subnetId: String?
    public var containerInstanceSubnetId: String?
    public var proxyVmSize: String?
}

public struct VMProfile: Sendable, Hashable, Encodable {
    /// "" → Standard_D1_v2 (Gen1) or Standard_D2ds_v4 (Gen2), decided once the source's generation is known.
    public var vmSize: String
    /// 0 → the source's size; can only grow.
    public var osDiskSizeGB: Int
    public var userAssignedIdentities: [String]
    public var vnetConfig: VNetConfig?
    public init(vmSize: String = "", osDiskSizeGB: Int = 0, userAssignedIdentities: [String] = [], vnetConfig: VNetConfig? = nil) {
        self.vmSize = vmSize
        self.osDiskSizeGB = osDiskSizeGB
        self.userAssignedIdentities = userAssignedIdentities
        self.vnetConfig = vnetConfig
    }
    public static let defaultGen1VMSize = "Standard_D1_v2"
    public static let defaultGen2VMSize = "Standard_D2ds_v4"
}

public struct DataDisk: Sendable, Hashable, Encodable {
    public var sizeGB: Int
}

public struct AutoRun: Sendable, Hashable, Encodable {
    public var state: FeatureState
    public init(state: FeatureState = .disabled) { self.state = state }
}

// MARK: - Read-only state

/// What AIB reports about a template and Kiln keeps apart from user input. Values found in an input file
/// (a template exported from Azure) are read here and ignored for building and hashing.
public struct ImageTemplateStatus: Sendable, Hashable, Encodable {
    public enum ProvisioningState: String, AIBEnum, Decodable {
        case creating = "Creating", updating = "Updating", succeeded = "Succeeded", failed = "Failed", deleting = "Deleting", canceled = "Canceled"
    }
    public struct ProvisioningError: Sendable, Hashable, Encodable {
        public var provisioningErrorCode: ErrorCode
        public var message: String
        public init(provisioningErrorCode: ErrorCode, message: String) {
            self.provisioningErrorCode = provisioningErrorCode
            self.message = message
        }
    }
    public struct LastRunStatus: Sendable, Hashable, Codable {
        public enum RunState: String, AIBEnum, Decodable {
            case running = "Running", canceling = "Canceling", succeeded = "Succeeded", partiallySucceeded = "PartiallySucceeded", failed = "Failed", canceled =
                "Canceled"
        }
        public enum RunSubState: String, AIBEnum, Decodable, CodingKeyRepresentable {
            case queued = "Queued", building = "Building", customizing = "Customizing", optimizing = "Optimizing", validating = "Validating", distributing =
                "Distributing"
        }
        public var startTime: String?
        public var endTime: String?
        public var runState: RunState?
        public var runSubState: RunSubState?
        public var message: String?
        public init(startTime: String? = nil, endTime: String? = nil, runState: RunState? = nil, runSubState: RunSubState? = nil, message: String? = nil) {
            self.startTime = startTime
            self.endTime = endTime
            self.runState = runState
            self.runSubState = runSubState
            self.message = message
        }
    }
    public var provisioningState: ProvisioningState?
    public var provisioningError: ProvisioningError?
    public var lastRunStatus: LastRunStatus?
    public var exactStagingResourceGroup: String?
    /// `properties.source.exactVersion`.
    public var sourceExactVersion: String?
    public init() {}
}

/// AIB's `provisioningState` of a template (and of a run output).
public typealias ProvisioningState = ImageTemplateStatus.ProvisioningState
/// AIB's `lastRunStatus.runState`.
public typealias RunState = ImageTemplateStatus.LastRunStatus.RunState
/// AIB's `lastRunStatus.runSubState`: the phase a running build is in.
public typealias RunSubState = ImageTemplateStatus.LastRunStatus.RunSubState

extension ImageTemplateStatus.LastRunStatus.RunState {
    /// Running or Canceling: the run has not reached a final state.
    public var isActive: Bool { self == .running || self == .canceling }
    /// The states a run ends in.
    public static var final: [Self] { allCases.filter { !$0.isActive } }
    /// The states of a run that has not ended.
    public static var active: [Self] { allCases.filter(\.isActive) }
}

// MARK: - Encoding helper

private struct TypeKey: CodingKey {
    var stringValue: String
    var intValue: Int? { nil }
    init(stringValue: String) { self.stringValue = stringValue }
    init?(intValue: Int) { nil }
}

/// Writes the `type` discriminator; the payload's own `encode(to:)` then adds its keys to the same object.
func encodeTyped(_ type: String, to encoder: any Encoder) throws {
    var c = encoder.container(keyedBy: TypeKey.self)
    try c.encode(type, forKey: TypeKey(stringValue: "type"))
}
