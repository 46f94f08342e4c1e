// The AIB imageTemplates model, part 2: customizers and in-VM validations (see Model.swift for the whole).
import Foundation

// MARK: - Customizers and validators

/// Where a script comes from: exactly one of `scriptUri` or `inline`.
public enum ScriptSource: Sendable, Hashable {
    case uri(String)
    case inline([String])
}

public struct ShellScript: Sendable, Hashable, Encodable {
    public var name: String?
    public var script: ScriptSource
    public var sha256Checksum: String?

    public init(name: String? = nil, script: ScriptSource, sha256Checksum: String? = nil) {
        self.name = name
        self.script = script
        self.sha256Checksum = sha256Checksum
    }

    enum CodingKeys: String, CodingKey { case name, scriptUri, inline, sha256Checksum }
    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encodeIfPresent(name, forKey: .name)
        switch script {
        case .uri(let u): try c.encode(u, forKey: .scriptUri)
        case .inline(let lines): try c.encode(lines, forKey: .inline)
        }
        try c.encodeIfPresent(sha256Checksum, forKey: .sha256Checksum)
    }
}

public struct PowerShellScript: Sendable, Hashable, Encodable {
    public var name: String?
    public var script: ScriptSource
    public var sha256Checksum: String?
    public var runElevated: Bool
    public var runAsSystem: Bool
    /// Defaults to `[0]`.
    public var validExitCodes: [Int]

    public init(
        name: String? = nil, script: ScriptSource, sha256Checksum: String? = nil, runElevated: Bool = false, runAsSystem: Bool = false,
        validExitCodes: [Int] = [0]
    ) {
        self.name = name
        self.script = script
        self.sha256Checksum = sha256Checksum
        self.runElevated = runElevated
        self.runAsSystem = runAsSystem
        self.validExitCodes = validExitCodes
    }

    enum CodingKeys: String, CodingKey { case name, scriptUri, inline, sha256Checksum, runElevated, runAsSystem, validExitCodes }
    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encodeIfPresent(name, forKey: .name)
        switch script {
        case .uri(let u): try c.encode(u, forKey: .scriptUri)
        case .inline(let lines): try c.encode(lines, forKey: .inline)
        }
        try c.encodeIfPresent(sha256Checksum, forKey: .sha256Checksum)
        try c.encode(runElevated, forKey: .runElevated)
        try c.encode(runAsSystem, forKey: .runAsSystem)
        try c.encode(validExitCodes, forKey: .validExitCodes)
    }
}

public struct FileCopy: Sendable, Hashable, Encodable {
    public var name: String?
    public var sourceUri: String
    /// An absolute path in the guest (`/etc/x` or `C:\x`).
    public var destination: String
    public var sha256Checksum: String?

    public init(name: String? = nil, sourceUri: String, destination: String, sha256Checksum: String? = nil) {
        self.name = name
        self.sourceUri = sourceUri
        self.destination = destination
        self.sha256Checksum = sha256Checksum
    }
}

public struct WindowsRestart: Sendable, Hashable, Encodable {
    public var name: String?
    public var restartCommand: String
    public var restartCheckCommand: String
    /// A duration such as `5m`, `10m`, `2h`.
    public var restartTimeout: String

    public init(
        name: String? = nil, restartCommand: String = WindowsRestart.defaultRestartCommand, restartCheckCommand: String = "",
        restartTimeout: String = WindowsRestart.defaultRestartTimeout
    ) {
        self.name = name
        self.restartCommand = restartCommand
        self.restartCheckCommand = restartCheckCommand
        self.restartTimeout = restartTimeout
    }

    public static let defaultRestartCommand = "shutdown /r /f /t 0 /c \"packer restart\""
    public static let defaultRestartTimeout = "5m"
}

public struct WindowsUpdate: Sendable, Hashable, Encodable {
    public var name: String?
    public var searchCriteria: String?
    public var filters: [String]
    /// 0 or omitted in input → 1000.
    public var updateLimit: Int

    public init(name: String? = nil, searchCriteria: String? = nil, filters: [String] = [], updateLimit: Int = WindowsUpdate.defaultUpdateLimit) {
        self.name = name
        self.searchCriteria = searchCriteria
        self.filters = filters
        self.updateLimit = updateLimit
    }
    public static let defaultUpdateLimit = 1000
}

public enum Customizer: Sendable, Hashable, Encodable {
    case shell(ShellScript)
    case powerShell(PowerShellScript)
    case file(FileCopy)
    case windowsRestart(WindowsRestart)
    case windowsUpdate(WindowsUpdate)

    public enum Kind: String, AIBEnum {
        case shell = "Shell", powerShell = "PowerShell", file = "File", windowsRestart = "WindowsRestart", windowsUpdate = "WindowsUpdate"
    }
    public var kind: Kind {
        switch self {
        case .shell: return .shell
        case .powerShell: return .powerShell
        case .file: return .file
        case .windowsRestart: return .windowsRestart
        case .windowsUpdate: return .windowsUpdate
        }
    }
    public var name: String? {
        switch self {
        case .shell(let s): return s.name
        case .powerShell(let s): return s.name
        case .file(let s): return s.name
        case .windowsRestart(let s): return s.name
        case .windowsUpdate(let s): return s.name
        }
    }

    public func encode(to encoder: any Encoder) throws {
        try encodeTyped(kind.rawValue, to: encoder)
        switch self {
        case .shell(let s): try s.encode(to: encoder)
        case .powerShell(let s): try s.encode(to: encoder)
        case .file(let s): try s.encode(to: encoder)
        case .windowsRestart(let s): try s.encode(to: encoder)
        case .windowsUpdate(let s): try s.encode(to: encoder)
        }
    }
}

public enum InVMValidation: Sendable, Hashable, Encodable {
    case shell(ShellScript)
    case powerShell(PowerShellScript)
    case file(FileCopy)

    public enum Kind: String, AIBEnum { case shell = "Shell", powerShell = "PowerShell", file = "File" }
    public var kind: Kind {
        switch self {
        case .shell: return .shell
        case .powerShell: return .powerShell
        case .file: return .file
        }
    }

    public func encode(to encoder: any Encoder) throws {
        try encodeTyped(kind.rawValue, to: encoder)
        switch self {
        case .shell(let s): try s.encode(to: encoder)
        case .powerShell(let s): try s.encode(to: encoder)
        case .file(let s): try s.encode(to: encoder)
        }
    }
}

public struct Validation: Sendable, Hashable, Encodable {
    public var continueDistributeOnFailure: Bool
    public var sourceValidationOnly: Bool
    public var inVMValidations: [InVMValidation]
    public init(continueDistributeOnFailure: Bool = false, sourceValidationOnly: Bool = false, inVMValidations: [InVMValidation] = []) {
        self.continueDistributeOnFailure = continueDistributeOnFailure
        self.sourceValidationOnly = sourceValidationOnly
        self.inVMValidations = inVMValidations
    }
}
