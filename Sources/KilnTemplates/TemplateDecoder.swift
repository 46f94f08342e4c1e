// Decodes an imageTemplates resource into the model: the entry point, the envelope (name, location, identity) and `properties`.
import Foundation

/// The result of decoding one imageTemplates resource.
public struct DecodedTemplate: Sendable, Hashable {
    /// The template, or nil when it has errors.
    public var template: ImageTemplate?
    /// Read-only properties found in the input (an exported template), kept apart.
    public var status: ImageTemplateStatus
    public var apiVersion: APIVersion
}

/// Decodes and validates an imageTemplates resource (already free of ARM expressions) into the model,
/// applying AIB's defaults and reporting every problem with its AIB error code, JSON path and line.
struct TemplateDecoder {
    let ctx: DecodeContext

    /// - Parameters:
    ///   - node: the resource object (`{location, identity, properties, ...}`).
    ///   - path: where the resource sits in its file (`$` or `$.resources[0]`).
    ///   - fallbackName: the name to use when the resource has none (the file's base name).
    func decodeResource(_ node: SourceNode, path: JSONPath, fallbackName: String?) -> (ImageTemplate?, ImageTemplateStatus) {
        var status = ImageTemplateStatus()
        markPlaceholders(in: node, path: path)
        let errorsBefore = ctx.sink.items.filter { $0.severity == .error }.count
        guard let r = ObjectReader(node, path: path, ctx: ctx, code: .invalidRequestContent) else { return (nil, status) }

        r.accept("apiVersion", "id", "systemData", "dependsOn", "comments", "condition", "metadata", "$schema")
        if let t = r.string("type") {
            if t.lowercased() == "microsoft.virtualmachineimages" {
                // AIB's quickstarts are written for `az resource create --is-full-object --resource-type
                // Microsoft.VirtualMachineImages/imageTemplates`, which takes the full type from the command line.
                ctx.warning(
                    .invalidRequestContent,
                    "resource type '\(t)' is the short form of AIB's quickstarts (for `az resource create --is-full-object --resource-type Microsoft.VirtualMachineImages/imageTemplates`); read as Microsoft.VirtualMachineImages/imageTemplates",
                    path / "type", r.value("type")!.node.position)
            } else if t.lowercased() != "microsoft.virtualmachineimages/imagetemplates" {
                ctx.error(
                    .invalidRequestContent, "resource type '\(t)' is not Microsoft.VirtualMachineImages/imageTemplates", path / "type",
                    r.value("type")!.node.position)
            }
        }
        var name = r.string("name", code: .invalidParameter)
        if name == nil, r.value("name") == nil { name = fallbackName }
        if let n = name, !ResourceNames.isValidTemplateName(n) {
            let pos = r.value("name")?.node.position ?? r.position
            ctx.error(.invalidParameter, "template name '\(n)' must match ^[A-Za-z0-9-_.]{1,64}$", path / "name", pos)
        } else if name == nil, r.value("name") == nil {
            ctx.error(.invalidParameter, "the template has no name: set 'name' or name the file after the template", path / "name", r.position)
        }
        let location = r.string("location", code: .invalidParameter, required: true).map(Self.normalizeLocation)
        let tags = r.stringMap("tags", code: .invalidParameter) ?? [:]
        let identity = decodeIdentity(r)
        var properties: ImageTemplateProperties?
        if let p = r.object("properties", code: .invalidRequestContent, required: true) {
            properties = decodeProperties(p, status: &status)
        }
        r.finish()

        let errorsAfter = ctx.sink.items.filter { $0.severity == .error }.count
        guard errorsAfter == errorsBefore, let name, let location, let identity, let properties else { return (nil, status) }
        return (ImageTemplate(name: name, location: location, tags: tags, identity: identity, properties: properties), status)
    }

    /// Azure compares locations ignoring case and spaces: "West US 2" is "westus2".
    static func normalizeLocation(_ s: String) -> String {
        s.lowercased().filter { $0 != " " }
    }

    // MARK: Placeholders

    /// Finds documentation placeholders (`<region>`, `<imgBuilderId>`) in keys and values, reports them in
    /// one diagnostic that lists each with where it is, and suppresses further checks of those values.
    private func markPlaceholders(in node: SourceNode, path: JSONPath) {
        var found: [(placeholder: String, path: JSONPath, position: SourcePosition)] = []
        func walk(_ n: SourceNode, _ p: JSONPath, _ parentKey: String?) {
            switch n.value {
            case .object(let members):
                for m in members {
                    for ph in Placeholders.find(in: m.key) { found.append((ph, p / m.key, m.keyPosition)) }
                    walk(m.value, p / m.key, m.key)
                }
            case .array(let elements):
                // Script text is free-form: `<` and `>` there are shell, not placeholders.
                if let k = parentKey?.lowercased(), ["inline", "filters"].contains(k) { return }
                for (i, e) in elements.enumerated() { walk(e, p / i, parentKey) }
            case .string(let s):
                if let k = parentKey?.lowercased(), ["restartcommand", "restartcheckcommand", "searchcriteria", "description"].contains(k) { return }
                let phs = Placeholders.find(in: s)
                if !phs.isEmpty {
                    ctx.suppressed.insert(n.position)
                    for ph in phs { found.append((ph, p, n.position)) }
                }
            default: break
            }
        }
        walk(node, path, nil)
        guard let first = found.first else { return }
        var order: [String] = []
        var wherePaths: [String: [String]] = [:]
        for f in found {
            if wherePaths[f.placeholder] == nil { order.append(f.placeholder) }
            wherePaths[f.placeholder, default: []].append(f.path.description)
        }
        let list = order.map { "\($0) (\(wherePaths[$0]!.joined(separator: ", ")))" }.joined(separator: "; ")
        ctx.error(
            .unfilledPlaceholder, "the template still holds \(order.count) documentation placeholder\(order.count == 1 ? "" : "s"); replace \(list)",
            first.path, first.position)
    }

    // MARK: Envelope

    private func decodeIdentity(_ r: ObjectReader) -> ImageTemplateIdentity? {
        guard let i = r.object("identity", code: .invalidParameter, required: true) else { return nil }
        let type = i.enumeration("type", ImageTemplateIdentity.Kind.self, code: .invalidParameter, required: true)
        var ids: [String] = []
        var ok = true
        if let (n, p) = i.value("userAssignedIdentities") {
            if let members = n.members {
                for m in members {
                    let mp = p / m.key
                    if !Placeholders.contains(m.key) {
                        if case .failure(let e) = ResourceID.parse(m.key, as: ResourceID.userAssignedIdentity) {
                            ctx.error(.invalidParameter, "user-assigned identity: \(e.message)", mp, m.keyPosition)
                            ok = false
                        }
                    }
                    // Values are `{}` in input; principalId/clientId are read-only and ignored.
                    if m.value.members == nil && m.value.value != .null {
                        ctx.error(.invalidParameter, "expected an object ({}), found \(m.value.kindName)", mp, m.value.position)
                        ok = false
                    }
                    ids.append(m.key)
                }
            } else if !ctx.isSuppressed(n) {
                ctx.error(.invalidParameter, "expected an object keyed by identity resource ids, found \(n.kindName)", p, n.position)
                ok = false
            }
        }
        i.finish()
        guard let type, ok else { return nil }
        switch type {
        case .userAssigned:
            if ids.isEmpty {
                ctx.error(
                    .invalidParameter, "identity type 'UserAssigned' needs exactly one entry in userAssignedIdentities", i.path / "userAssignedIdentities",
                    i.position)
                return nil
            }
            if ids.count > 1 {
                ctx.error(
                    .invalidParameter, "AIB supports at most one user-assigned identity, found \(ids.count)", i.path / "userAssignedIdentities", i.position)
                return nil
            }
        case .none:
            if !ids.isEmpty {
                ctx.error(.invalidParameter, "identity type 'None' must not list userAssignedIdentities", i.path / "userAssignedIdentities", i.position)
                return nil
            }
        }
        return ImageTemplateIdentity(type: type, userAssignedIdentities: ids)
    }

    // MARK: properties

    private func decodeProperties(_ p: ObjectReader, status: inout ImageTemplateStatus) -> ImageTemplateProperties? {
        // Read-only properties: accepted in input (templates exported from Azure), kept apart.
        status.provisioningState = p.enumeration("provisioningState", ImageTemplateStatus.ProvisioningState.self)
        if let e = p.object("provisioningError") {
            if let c = e.string("provisioningErrorCode") {
                status.provisioningError = .init(provisioningErrorCode: ErrorCode(rawValue: c), message: e.string("message") ?? "")
            }
            e.finish()
        }
        if let l = p.object("lastRunStatus") {
            status.lastRunStatus = .init(
                startTime: l.string("startTime"), endTime: l.string("endTime"),
                runState: l.enumeration("runState", ImageTemplateStatus.LastRunStatus.RunState.self),
                runSubState: l.enumeration("runSubState", ImageTemplateStatus.LastRunStatus.RunSubState.self),
                message: l.string("message"))
            l.finish()
        }
        status.exactStagingResourceGroup = p.string("exactStagingResourceGroup")

        let source = p.object("source", code: .badSourceType, required: true).flatMap { decodeSource($0, status: &status) }
        let customize = decodeCustomizers(p)
        let validate = decodeValidation(p)
        let distribute = decodeDistribution(p)
        let optimize = decodeOptimize(p)
        let errorHandling = decodeErrorHandling(p)
        var timeout = p.int("buildTimeoutInMinutes", code: .invalidParameter, range: 0...ImageTemplateProperties.maxBuildTimeoutInMinutes) ?? 0
        if timeout == 0 { timeout = ImageTemplateProperties.defaultBuildTimeoutInMinutes }
        let vmProfile = decodeVMProfile(p)
        var dataDisks: [DataDisk] = []
        if let disks = p.array("additionalDataDisks", code: .invalidParameter) {
            for (n, path) in disks {
                guard let d = ObjectReader(n, path: path, ctx: ctx, code: .invalidParameter) else { continue }
                if let size = d.int("sizeGB", range: 1...32767, required: true) { dataDisks.append(DataDisk(sizeGB: size)) }
                d.finish()
            }
        }
        var staging: String?
        if let (n, path) = p.value("stagingResourceGroup"), let s = ObjectReader.string(n, path: path, ctx: ctx, code: .badStagingResourceGroup) {
            if !s.isEmpty {
                if !ctx.isSuppressed(n), case .failure(let e) = ResourceID.parse(s, as: ResourceID.resourceGroupShape) {
                    ctx.error(.badStagingResourceGroup, "stagingResourceGroup: \(e.message)", path, n.position)
                }
                staging = s
            }
        }
        var autoRun = AutoRun()
        if let a = p.object("autoRun", code: .invalidParameter) {
            autoRun.state = a.enumeration("state", FeatureState.self, required: true) ?? .disabled
            a.finish()
        }
        let managedTags = p.stringMap("managedResourceTags", code: .invalidParameter) ?? [:]
        p.finish()

        guard let source, let customize, let validate, let distribute, let optimize, let errorHandling, let vmProfile else { return nil }
        return ImageTemplateProperties(
            source: source, customize: customize, validate: validate, distribute: distribute,
            optimize: optimize, errorHandling: errorHandling, buildTimeoutInMinutes: timeout,
            vmProfile: vmProfile, additionalDataDisks: dataDisks, stagingResourceGroup: staging,
            autoRun: autoRun, managedResourceTags: managedTags)
    }

    // MARK: Shared checks

    /// Reports `text` when it does not have `shape` (unless the value is suppressed); shared by every part of the decoder.
    @discardableResult
    func checkShape(_ text: String, _ at: (node: SourceNode, path: JSONPath), _ shape: ResourceID.Shape, _ code: ErrorCode, _ what: String) -> Bool {
        if ctx.isSuppressed(at.node) { return false }
        if case .failure(let e) = ResourceID.parse(text, as: shape) {
            ctx.error(code, "\(what): \(e.message)", at.path, at.node.position)
            return false
        }
        return true
    }
}

/// Documentation placeholders such as `<region>`, `<imgBuilderId>`, `<subscriptionID>`.
enum Placeholders {
    static func find(in s: String) -> [String] {
        var out: [String] = []
        let chars = Array(s)
        var i = 0
        while i < chars.count {
            if chars[i] == "<", i + 1 < chars.count, chars[i + 1].isLetter {
                var j = i + 1
                while j < chars.count, j - i <= 64, chars[j].isASCII, chars[j].isLetter || chars[j].isNumber || "_-. ".contains(chars[j]) { j += 1 }
                if j < chars.count, chars[j] == ">", chars[j - 1] != " " {
                    out.append(String(chars[i...j]))
                    i = j + 1
                    continue
                }
            }
            i += 1
        }
        return out
    }
    static func contains(_ s: String) -> Bool { !find(in: s).isEmpty }
}
