import Foundation
import KilnTemplates

/// One artifact a template needs at build time, with where it is named in the template.
public struct TemplateArtifact: Sendable, Hashable {
    public enum Role: Sendable, Hashable { case customizer, validator, optimizer }
    public var reference: String
    public var path: JSONPath
    public var sha256Checksum: String?
    public var role: Role

    /// `scriptUri` or `sourceUri`: the property that names it.
    public var property: String {
        if case .key(let k)? = path.components.last { return k }
        return "reference"
    }

    /// The provisioning error code AIB uses when this artifact cannot be had.
    public var errorCode: ErrorCode {
        switch role {
        case .customizer, .optimizer: return .noCustomizerScript
        case .validator: return .noValidatorScript
        }
    }

    /// Every `scriptUri` / `sourceUri` of a template, in template order.
    public static func all(in t: ImageTemplate) -> [TemplateArtifact] {
        var out: [TemplateArtifact] = []
        let props = JSONPath.root / "properties"
        func script(_ s: ScriptSource, _ sum: String?, _ p: JSONPath, _ role: Role) {
            if case .uri(let u) = s { out.append(TemplateArtifact(reference: u, path: p / "scriptUri", sha256Checksum: sum, role: role)) }
        }
        for (i, c) in t.properties.customize.enumerated() {
            let p = props / "customize" / i
            switch c {
            case .shell(let s): script(s.script, s.sha256Checksum, p, .customizer)
            case .powerShell(let s): script(s.script, s.sha256Checksum, p, .customizer)
            case .file(let f): out.append(TemplateArtifact(reference: f.sourceUri, path: p / "sourceUri", sha256Checksum: f.sha256Checksum, role: .customizer))
            case .windowsRestart, .windowsUpdate: break
            }
        }
        for (i, v) in t.properties.validate.inVMValidations.enumerated() {
            let p = props / "validate" / "inVMValidations" / i
            switch v {
            case .shell(let s): script(s.script, s.sha256Checksum, p, .validator)
            case .powerShell(let s): script(s.script, s.sha256Checksum, p, .validator)
            case .file(let f): out.append(TemplateArtifact(reference: f.sourceUri, path: p / "sourceUri", sha256Checksum: f.sha256Checksum, role: .validator))
            }
        }
        if let w = t.properties.optimize.workload, w.state == .enabled, let u = w.scriptUri {
            out.append(TemplateArtifact(reference: u, path: props / "optimize" / "workload" / "scriptUri", sha256Checksum: w.sha256Checksum, role: .optimizer))
        }
        return out
    }
}

/// The staging area of a template: AIB's `IT_<rg>_<name>_<guid>` resource group, as a directory.
public struct StagingArea: Sendable, Hashable {
    public var directory: String
    /// The resource group id reported as `exactStagingResourceGroup`.
    public var resourceGroupId: String

    public var artifacts: String { (directory as NSString).appendingPathComponent("artifacts") }
    public func logs(run: String) -> String { (directory as NSString).appendingPathComponent("packerlogs/\(run)") }

    /// The area for a template: `stagingResourceGroup` when set (its last segment names the directory),
    /// else a fresh `IT_<rg>_<name>_<guid>`.
    public static func plan(stagingRoot: String, subscription: String, resourceGroup: String, name: String, stagingResourceGroup: String?) -> StagingArea {
        if let s = stagingResourceGroup, !s.isEmpty {
            let rg = s.split(separator: "/").last.map(String.init) ?? s
            return StagingArea(directory: (stagingRoot as NSString).appendingPathComponent(rg), resourceGroupId: s)
        }
        let rg = "IT_\(resourceGroup)_\(name)_\(UUID().uuidString.lowercased())"
        return StagingArea(
            directory: (stagingRoot as NSString).appendingPathComponent(rg),
            resourceGroupId: "/subscriptions/\(subscription)/resourceGroups/\(rg)")
    }
}
