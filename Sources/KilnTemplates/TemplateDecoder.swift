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
            if t.lowercased() != "microsoft.virtualmachineimages/imagetemplates" {
                ctx.error(.invalidRequestContent, "resource type '\(t)' is not Microsoft.VirtualMachineImages/imageTemplates", path / "type", r.value("type")!.node.position)
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
        ctx.error(.unfilledPlaceholder, "the template still holds \(order.count) documentation placeholder\(order.count == 1 ? "" : "s"); replace \(list)", first.path, first.position)
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
                ctx.error(.invalidParameter, "identity type 'UserAssigned' needs exactly one entry in userAssignedIdentities", i.path / "userAssignedIdentities", i.position)
                return nil
            }
            if ids.count > 1 {
                ctx.error(.invalidParameter, "AIB supports at most one user-assigned identity, found \(ids.count)", i.path / "userAssignedIdentities", i.position)
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
            status.lastRunStatus = .init(startTime: l.string("startTime"), endTime: l.string("endTime"),
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
        return ImageTemplateProperties(source: source, customize: customize, validate: validate, distribute: distribute,
                                       optimize: optimize, errorHandling: errorHandling, buildTimeoutInMinutes: timeout,
                                       vmProfile: vmProfile, additionalDataDisks: dataDisks, stagingResourceGroup: staging,
                                       autoRun: autoRun, managedResourceTags: managedTags)
    }

    // MARK: source

    private func decodeSource(_ s: ObjectReader, status: inout ImageTemplateStatus) -> ImageSource? {
        defer { s.finish() }
        guard let typeText = s.string("type", code: .badSourceType) else {
            s.skipUnknownCheck = true
            if s.value("type") == nil {
                ctx.error(.badSourceType, "source.type is required; expected \(ImageSource.Kind.spellings)", s.path / "type", s.position)
            }
            return nil
        }
        guard let kind = ImageSource.Kind.matching(typeText) else {
            s.skipUnknownCheck = true
            let hint = typeText.lowercased() == "iso" ? " (ISO sources were removed from AIB in api-version 2020-02-14)" : ""
            ctx.error(.badSourceType, "unknown source type '\(typeText)'\(hint); expected \(ImageSource.Kind.spellings)", s.path / "type", s.value("type")!.node.position)
            return nil
        }
        switch kind {
        case .platformImage:
            let publisher = s.string("publisher", code: .badPIRSource, required: true)
            let offer = s.string("offer", code: .badPIRSource, required: true)
            let sku = s.string("sku", code: .badPIRSource, required: true)
            var version = s.string("version", code: .badPIRSource, required: true)
            if let v = version, let (n, p) = s.value("version"), !ctx.isSuppressed(n) {
                if v.lowercased() == "latest" {
                    version = "latest"
                } else if !Self.isMarketplaceVersion(v) {
                    ctx.error(.badPIRSource, "version '\(v)' must be 'latest' or three numeric parts (x.y.z)", p, n.position)
                    version = nil
                }
            }
            status.sourceExactVersion = s.string("exactVersion")
            var plan: PlanInfo?
            var planOK = true
            if let pi = s.object("planInfo", code: .badPIRSource) {
                let name = pi.string("planName", code: .badPIRSource, required: true)
                let product = pi.string("planProduct", code: .badPIRSource, required: true)
                let planPublisher = pi.string("planPublisher", code: .badPIRSource, required: true)
                pi.finish()
                if let name, let product, let planPublisher {
                    plan = PlanInfo(planName: name, planProduct: product, planPublisher: planPublisher)
                } else {
                    planOK = false
                }
            }
            guard let publisher, let offer, let sku, let version, planOK else { return nil }
            return .platformImage(PlatformImageSource(publisher: publisher, offer: offer, sku: sku, version: version, planInfo: plan))
        case .managedImage:
            guard let id = s.string("imageId", code: .badManagedImageSource, required: true) else { return nil }
            guard checkShape(id, s.value("imageId")!, ResourceID.managedImage, .badManagedImageSource, "imageId") else { return nil }
            return .managedImage(ManagedImageSource(imageId: id))
        case .sharedImageVersion:
            status.sourceExactVersion = s.string("exactVersion")
            guard let id = s.string("imageVersionId", code: .badSharedImageVersionSource, required: true) else { return nil }
            let (n, p) = s.value("imageVersionId")!
            if ctx.isSuppressed(n) { return nil }
            if let problem = Self.imageVersionIdProblem(id) {
                ctx.error(.badSharedImageVersionSource, problem, p, n.position)
                return nil
            }
            return .sharedImageVersion(SharedImageVersionSource(imageVersionId: id))
        }
    }

    /// Marketplace versions are three numeric parts (`2024.01.15`, `0.20240115.1598`).
    static func isMarketplaceVersion(_ v: String) -> Bool {
        let parts = v.split(separator: ".", omittingEmptySubsequences: false)
        return parts.count == 3 && parts.allSatisfy { !$0.isEmpty && $0.allSatisfy { $0.isASCII && $0.isNumber } }
    }

    /// nil when `id` names a gallery image version (Compute Gallery, community or direct-shared gallery).
    static func imageVersionIdProblem(_ id: String) -> String? {
        let parts = id.split(separator: "/", omittingEmptySubsequences: false).map(String.init)
        // /CommunityGalleries/{name}/Images/{def}/Versions/{v} and /SharedGalleries/...: accepted by AIB.
        if parts.count == 7, parts[0] == "", ["communitygalleries", "sharedgalleries"].contains(parts[1].lowercased()),
           parts[3].lowercased() == "images", parts[5].lowercased() == "versions", !parts[2].isEmpty, !parts[4].isEmpty {
            let v = parts[6]
            return v.lowercased() == "latest" || ResourceNames.isValidGalleryVersion(v)
                ? nil : "version '\(v)' must be 'latest' or x.y.z"
        }
        switch ResourceID.parse(id, as: ResourceID.galleryImageVersion) {
        case .failure(let e):
            return "imageVersionId: \(e.message)"
        case .success(let rid):
            let v = rid.name
            return v.lowercased() == "latest" || ResourceNames.isValidGalleryVersion(v)
                ? nil : "version '\(v)' must be 'latest' or x.y.z (three integers)"
        }
    }

    @discardableResult
    private func checkShape(_ text: String, _ at: (node: SourceNode, path: JSONPath), _ shape: ResourceID.Shape, _ code: ErrorCode, _ what: String) -> Bool {
        if ctx.isSuppressed(at.node) { return false }
        if case .failure(let e) = ResourceID.parse(text, as: shape) {
            ctx.error(code, "\(what): \(e.message)", at.path, at.node.position)
            return false
        }
        return true
    }

    // MARK: customize / validate

    private func decodeCustomizers(_ p: ObjectReader) -> [Customizer]? {
        guard let items = p.array("customize", code: .badCustomizerType) else {
            return p.value("customize") == nil ? [] : nil
        }
        var out: [Customizer] = []
        var ok = true
        for (n, path) in items {
            if let c = decodeCustomizer(n, path: path) { out.append(c) } else { ok = false }
        }
        return ok ? out : nil
    }

    private func decodeCustomizer(_ n: SourceNode, path: JSONPath) -> Customizer? {
        guard let r = ObjectReader(n, path: path, ctx: ctx, code: .badCustomizerType) else { return nil }
        defer { r.finish() }
        guard let typeText = r.string("type", code: .badCustomizerType, required: true) else { r.skipUnknownCheck = true; return nil }
        guard let kind = Customizer.Kind.matching(typeText) else {
            r.skipUnknownCheck = true
            ctx.error(.badCustomizerType, "unknown customizer type '\(typeText)'; expected \(Customizer.Kind.spellings)", path / "type", r.value("type")!.node.position)
            return nil
        }
        let name = r.string("name", code: .badCustomizerType)
        switch kind {
        case .shell:
            return shellScript(r, name: name, noScript: .noCustomizerScript, bad: .badCustomizerType).map(Customizer.shell)
        case .powerShell:
            return powerShellScript(r, name: name, noScript: .noCustomizerScript, bad: .badCustomizerType).map(Customizer.powerShell)
        case .file:
            return fileCopy(r, name: name, noSource: .noCustomizerScript, bad: .badCustomizerType).map(Customizer.file)
        case .windowsRestart:
            let command = r.string("restartCommand") ?? ""
            let check = r.string("restartCheckCommand") ?? ""
            var timeout = r.string("restartTimeout") ?? ""
            if timeout.isEmpty { timeout = WindowsRestart.defaultRestartTimeout }
            if let (tn, tp) = r.value("restartTimeout"), !TemplateDuration.isValidGoDuration(timeout), !ctx.isSuppressed(tn) {
                ctx.error(.badCustomizerType, "restartTimeout '\(timeout)' is not a duration; use a number and a unit, such as 5m, 10m or 2h", tp, tn.position)
                return nil
            }
            return .windowsRestart(WindowsRestart(name: name, restartCommand: command.isEmpty ? WindowsRestart.defaultRestartCommand : command,
                                                  restartCheckCommand: check, restartTimeout: timeout))
        case .windowsUpdate:
            let criteria = r.string("searchCriteria")
            let filters = r.stringArray("filters") ?? []
            var limit = r.int("updateLimit", range: 0...Int(Int32.max)) ?? 0
            if limit == 0 { limit = WindowsUpdate.defaultUpdateLimit }
            return .windowsUpdate(WindowsUpdate(name: name, searchCriteria: (criteria?.isEmpty ?? true) ? nil : criteria, filters: filters, updateLimit: limit))
        }
    }

    private func decodeValidation(_ p: ObjectReader) -> Validation? {
        guard let v = p.object("validate", code: .badValidatorType) else {
            return p.value("validate") == nil ? Validation() : nil
        }
        defer { v.finish() }
        var result = Validation()
        result.continueDistributeOnFailure = v.bool("continueDistributeOnFailure") ?? false
        result.sourceValidationOnly = v.bool("sourceValidationOnly") ?? false
        guard let items = v.array("inVMValidations", code: .badValidatorType) else {
            if v.value("inVMValidations") != nil { return nil }
            if result.sourceValidationOnly {
                ctx.error(.badValidatorType, "sourceValidationOnly needs at least one entry in inVMValidations", v.path / "sourceValidationOnly", v.value("sourceValidationOnly")!.node.position)
                return nil
            }
            return result
        }
        var ok = true
        for (n, path) in items {
            guard let r = ObjectReader(n, path: path, ctx: ctx, code: .badValidatorType) else { ok = false; continue }
            defer { r.finish() }
            guard let typeText = r.string("type", code: .badValidatorType, required: true) else { r.skipUnknownCheck = true; ok = false; continue }
            guard let kind = InVMValidation.Kind.matching(typeText) else {
                r.skipUnknownCheck = true
                ctx.error(.badValidatorType, "unknown validator type '\(typeText)'; expected \(InVMValidation.Kind.spellings)", path / "type", r.value("type")!.node.position)
                ok = false
                continue
            }
            let name = r.string("name", code: .badValidatorType)
            let decoded: InVMValidation?
            switch kind {
            case .shell: decoded = shellScript(r, name: name, noScript: .noValidatorScript, bad: .badValidatorType).map(InVMValidation.shell)
            case .powerShell: decoded = powerShellScript(r, name: name, noScript: .noValidatorScript, bad: .badValidatorType).map(InVMValidation.powerShell)
            case .file: decoded = fileCopy(r, name: name, noSource: .noValidatorScript, bad: .badValidatorType).map(InVMValidation.file)
            }
            if let decoded { result.inVMValidations.append(decoded) } else { ok = false }
        }
        if result.sourceValidationOnly && result.inVMValidations.isEmpty && ok {
            ctx.error(.badValidatorType, "sourceValidationOnly needs at least one entry in inVMValidations", v.path / "sourceValidationOnly", v.value("sourceValidationOnly")!.node.position)
            return nil
        }
        return ok ? result : nil
    }

    /// `scriptUri` xor `inline`, plus an optional checksum.
    private func script(_ r: ObjectReader, noScript: ErrorCode, bad: ErrorCode) -> (ScriptSource, String?)? {
        let uri = r.string("scriptUri", code: bad)
        let inline = r.stringArray("inline", code: bad)
        let checksum = checksum(r, bad)
        let uriNode = r.value("scriptUri"), inlineNode = r.value("inline")
        if uriNode != nil && inlineNode != nil {
            ctx.error(bad, "give either scriptUri or inline, not both", r.path / "inline", inlineNode!.node.position)
            return nil
        }
        if let uri {
            if uri.isEmpty {
                ctx.error(noScript, "scriptUri is empty", r.path / "scriptUri", uriNode!.node.position)
                return nil
            }
            guard checkURI(uri, uriNode!, bad, "scriptUri") else { return nil }
            if case .failure = checksum { return nil }
            return (.uri(uri), try? checksum.get())
        }
        if let inline {
            if inline.isEmpty {
                ctx.error(noScript, "inline has no commands", r.path / "inline", inlineNode!.node.position)
                return nil
            }
            if case .failure = checksum { return nil }
            if case .success(.some) = checksum {
                ctx.warning(bad, "sha256Checksum applies to scriptUri only and is ignored with inline", r.path / "sha256Checksum", r.value("sha256Checksum")!.node.position)
            }
            return (.inline(inline), nil)
        }
        if uriNode == nil && inlineNode == nil {
            ctx.error(noScript, "a script is required: give scriptUri or inline", r.path / "scriptUri", r.position)
        }
        return nil
    }

    private struct Invalid: Error {}

    /// The normalised (lower-case) checksum, nil when absent, or a failure already reported.
    private func checksum(_ r: ObjectReader, _ code: ErrorCode) -> Result<String?, Invalid> {
        guard let (n, p) = r.value("sha256Checksum") else { return .success(nil) }
        guard let s = ObjectReader.string(n, path: p, ctx: ctx, code: code) else { return .failure(Invalid()) }
        if s.isEmpty { return .success(nil) }
        guard s.count == 64, s.allSatisfy({ $0.isHexDigit && $0.isASCII }) else {
            ctx.error(code, "sha256Checksum must be 64 hexadecimal characters, found \(s.count) characters '\(s.prefix(70))'", p, n.position)
            return .failure(Invalid())
        }
        return .success(s.lowercased())
    }

    /// Accepts `https://`, `http://`, `file://` URIs and relative paths (resolved in a GitOps repository
    /// against the template's directory, then the repository root).
    private func checkURI(_ s: String, _ at: (node: SourceNode, path: JSONPath), _ code: ErrorCode, _ what: String) -> Bool {
        if ctx.isSuppressed(at.node) { return false }
        if let problem = ArtifactReference.problem(with: s) {
            ctx.error(code, "\(what) '\(s)': \(problem)", at.path, at.node.position)
            return false
        }
        return true
    }

    private func shellScript(_ r: ObjectReader, name: String?, noScript: ErrorCode, bad: ErrorCode) -> ShellScript? {
        guard let (script, checksum) = script(r, noScript: noScript, bad: bad) else { return nil }
        return ShellScript(name: name, script: script, sha256Checksum: checksum)
    }

    private func powerShellScript(_ r: ObjectReader, name: String?, noScript: ErrorCode, bad: ErrorCode) -> PowerShellScript? {
        let s = script(r, noScript: noScript, bad: bad)
        let elevated = r.bool("runElevated", code: bad) ?? false
        let system = r.bool("runAsSystem", code: bad) ?? false
        var codes = r.intArray("validExitCodes", code: bad) ?? []
        if codes.isEmpty { codes = [0] }
        if system && !elevated {
            ctx.error(bad, "runAsSystem requires runElevated to be true", r.path / "runAsSystem", r.value("runAsSystem")!.node.position)
            return nil
        }
        guard let (script, checksum) = s else { return nil }
        return PowerShellScript(name: name, script: script, sha256Checksum: checksum, runElevated: elevated, runAsSystem: system, validExitCodes: codes)
    }

    private func fileCopy(_ r: ObjectReader, name: String?, noSource: ErrorCode, bad: ErrorCode) -> FileCopy? {
        let source = r.string("sourceUri", code: bad)
        let destination = r.string("destination", code: bad, required: true)
        let checksum = checksum(r, bad)
        var ok = true
        if let source {
            if source.isEmpty {
                ctx.error(noSource, "sourceUri is empty", r.path / "sourceUri", r.value("sourceUri")!.node.position)
                ok = false
            } else if !checkURI(source, r.value("sourceUri")!, bad, "sourceUri") {
                ok = false
            }
        } else if r.value("sourceUri") == nil {
            ctx.error(noSource, "the property 'sourceUri' is required", r.path / "sourceUri", r.position)
            ok = false
        } else {
            ok = false
        }
        if let destination, let (n, p) = r.value("destination"), !ctx.isSuppressed(n), !Self.isAbsoluteGuestPath(destination) {
            ctx.error(bad, "destination '\(destination)' must be an absolute path (/path on Linux, C:\\path on Windows)", p, n.position)
            ok = false
        }
        guard ok, let source, let destination, case .success(let sum) = checksum else { return nil }
        return FileCopy(name: name, sourceUri: source, destination: destination, sha256Checksum: sum)
    }

    static func isAbsoluteGuestPath(_ s: String) -> Bool {
        if s.hasPrefix("/") { return true }
        let c = Array(s)
        if c.count >= 3, c[0].isLetter, c[0].isASCII, c[1] == ":", c[2] == "\\" || c[2] == "/" { return true }
        return s.hasPrefix("\\\\")
    }

    // MARK: distribute

    private func decodeDistribution(_ p: ObjectReader) -> [Distributor]? {
        guard let items = p.array("distribute", code: .badDistributeType, required: true) else { return nil }
        if items.isEmpty {
            ctx.error(.badDistributeType, "at least one distribution target is required", p.path / "distribute", p.value("distribute")!.node.position)
            return nil
        }
        var out: [Distributor] = []
        var ok = true
        var names: [String: JSONPath] = [:]
        for (n, path) in items {
            guard let r = ObjectReader(n, path: path, ctx: ctx, code: .badDistributeType) else { ok = false; continue }
            defer { r.finish() }
            let typeText = r.string("type", code: .badDistributeType, required: true)
            let runOutputName = r.string("runOutputName", code: .badDistributeType, required: true)
            if let name = runOutputName, let (nn, np) = r.value("runOutputName"), !ctx.isSuppressed(nn) {
                if !ResourceNames.isValidTemplateName(name) {
                    ctx.error(.badDistributeType, "runOutputName '\(name)' must match ^[A-Za-z0-9-_.]{1,64}$", np, nn.position)
                    ok = false
                } else if let first = names[name.lowercased()] {
                    ctx.error(.badDistributeType, "runOutputName '\(name)' is used twice (also at \(first)); run output names must be unique", np, nn.position)
                    ok = false
                } else {
                    names[name.lowercased()] = np
                }
            }
            let tags = r.stringMap("artifactTags", code: .badDistributeType) ?? [:]
            guard let typeText else { r.skipUnknownCheck = true; ok = false; continue }
            guard let kind = Distributor.Kind.matching(typeText) else {
                r.skipUnknownCheck = true
                ctx.error(.badDistributeType, "unknown distribution type '\(typeText)'; expected \(Distributor.Kind.spellings)", path / "type", r.value("type")!.node.position)
                ok = false
                continue
            }
            let decoded: Distributor?
            switch kind {
            case .managedImage:
                let imageId = r.string("imageId", code: .badDistributeType, required: true)
                let location = r.string("location", code: .badDistributeType, required: true)
                var good = imageId != nil && location != nil
                if let imageId { good = checkShape(imageId, r.value("imageId")!, ResourceID.managedImage, .badDistributeType, "imageId") && good }
                decoded = good ? .managedImage(ManagedImageDistributor(runOutputName: runOutputName ?? "", artifactTags: tags, imageId: imageId!, location: Self.normalizeLocation(location!))) : nil
            case .sharedImage:
                decoded = decodeSharedImage(r, runOutputName: runOutputName ?? "", tags: tags).map(Distributor.sharedImage)
            case .vhd:
                var uri = r.string("uri", code: .badDistributeType)
                if let u = uri, u.isEmpty { uri = nil }
                var good = true
                if let u = uri, let at = r.value("uri"), !ctx.isSuppressed(at.node), let problem = ArtifactReference.vhdTargetProblem(u) {
                    ctx.error(.badDistributeType, "uri '\(u)': \(problem)", at.path, at.node.position)
                    good = false
                }
                decoded = good ? .vhd(VHDDistributor(runOutputName: runOutputName ?? "", artifactTags: tags, uri: uri)) : nil
            }
            if let decoded, runOutputName != nil { out.append(decoded) } else { ok = false }
        }
        return ok ? out : nil
    }

    private func decodeSharedImage(_ r: ObjectReader, runOutputName: String, tags: [String: String]) -> SharedImageDistributor? {
        let code = ErrorCode.badSharedImageDistribute
        var ok = true
        let galleryImageId = r.string("galleryImageId", code: code, required: true)
        var explicitVersion = false
        if let id = galleryImageId, let at = r.value("galleryImageId"), !ctx.isSuppressed(at.node) {
            if case .success = ResourceID.parse(id, as: ResourceID.galleryImageVersion) {
                explicitVersion = true
                let v = ResourceID.parse(id)!.name
                if !ResourceNames.isValidGalleryVersion(v) {
                    ctx.error(code, "version '\(v)' in galleryImageId must be x.y.z (three integers); leave the version out to have one generated", at.path, at.node.position)
                    ok = false
                }
            } else if case .failure(let e) = ResourceID.parse(id, as: ResourceID.galleryImage) {
                ctx.error(code, "galleryImageId: \(e.message) (or .../versions/{x.y.z})", at.path, at.node.position)
                ok = false
            }
        } else {
            ok = galleryImageId != nil
        }
        let targetNode = r.value("targetRegions"), replicationNode = r.value("replicationRegions")
        let storageNode = r.value("storageAccountType")
        var regions: [TargetRegion] = []
        if targetNode != nil && replicationNode != nil {
            ctx.error(code, "give either targetRegions or the deprecated replicationRegions, not both", replicationNode!.path, replicationNode!.node.position)
            ok = false
        }
        if let storageNode, replicationNode == nil {
            ctx.error(code, "storageAccountType at this level applies only with replicationRegions; with targetRegions set it per region", storageNode.path, storageNode.node.position)
            ok = false
        }
        var seenRegions: [String: JSONPath] = [:]
        func addRegion(_ region: TargetRegion, _ path: JSONPath, _ position: SourcePosition) {
            if let first = seenRegions[region.name] {
                ctx.error(code, "region '\(region.name)' is listed twice (also at \(first))", path, position)
                ok = false
            } else {
                seenRegions[region.name] = path
                regions.append(region)
            }
        }
        if let items = r.array("targetRegions", code: code) {
            for (n, path) in items {
                guard let t = ObjectReader(n, path: path, ctx: ctx, code: code) else { ok = false; continue }
                let name = t.string("name", required: true)
                let count = t.int("replicaCount", range: 1...100)
                let storage = t.enumeration("storageAccountType", StorageAccountType.self)
                if t.value("replicaCount") != nil && count == nil { ok = false }
                if t.value("storageAccountType") != nil && storage == nil { ok = false }
                t.finish()
                guard let name else { ok = false; continue }
                if ctx.isSuppressed(t.value("name")!.node) { ok = false; continue }
                addRegion(TargetRegion(name: Self.normalizeLocation(name), replicaCount: count ?? 1, storageAccountType: storage ?? .standardLRS),
                          path / "name", t.value("name")!.node.position)
            }
        } else if targetNode != nil {
            ok = false
        }
        if let names = r.stringArray("replicationRegions", code: code) {
            let storage = r.enumeration("storageAccountType", StorageAccountType.self, code: code)
            if storageNode != nil && storage == nil { ok = false }
            for (i, name) in names.enumerated() {
                let node = replicationNode!.node.elements![i]
                if ctx.isSuppressed(node) { ok = false; continue }
                addRegion(TargetRegion(name: Self.normalizeLocation(name), replicaCount: 1, storageAccountType: storage ?? .standardLRS),
                          replicationNode!.path / i, node.position)
            }
        } else if replicationNode != nil {
            ok = false
        }
        let exclude = r.bool("excludeFromLatest", code: code) ?? false
        var versioning: Versioning?
        if let v = r.object("versioning", code: code) {
            let scheme = v.enumeration("scheme", Versioning.Scheme.self, required: true)
            let major = v.int("major", range: -1...Int(Int32.max))
            if let (mn, mp) = v.value("major"), scheme == .source {
                ctx.error(code, "major applies only to the Latest versioning scheme", mp, mn.position)
                ok = false
            }
            v.finish()
            if let scheme {
                versioning = Versioning(scheme: scheme, major: major ?? -1)
                if explicitVersion {
                    ctx.error(code, "versioning cannot be combined with an explicit version in galleryImageId; drop one of them", v.path, v.position)
                    ok = false
                }
            } else {
                ok = false
            }
        } else if r.value("versioning") != nil {
            ok = false
        }
        if versioning == nil && !explicitVersion { versioning = Versioning(scheme: .latest) }
        let mode = r.enumeration("replicationMode", SharedImageDistributor.ReplicationMode.self, code: code)
        if r.value("replicationMode") != nil && mode == nil { ok = false }
        guard ok, let galleryImageId else { return nil }
        return SharedImageDistributor(runOutputName: runOutputName, artifactTags: tags, galleryImageId: galleryImageId,
                                      targetRegions: regions, usesDeprecatedReplicationRegions: replicationNode != nil,
                                      excludeFromLatest: exclude, versioning: versioning, replicationMode: mode ?? .full)
    }

    // MARK: other settings

    private func decodeOptimize(_ p: ObjectReader) -> Optimize? {
        guard let o = p.object("optimize", code: .invalidParameter) else {
            return p.value("optimize") == nil ? Optimize() : nil
        }
        defer { o.finish() }
        var result = Optimize()
        var ok = true
        if let vb = o.object("vmBoot") {
            if let s = vb.enumeration("state", FeatureState.self, required: true) { result.vmBoot.state = s } else { ok = false }
            vb.finish()
        } else if o.value("vmBoot") != nil { ok = false }
        if let w = o.object("workload") {
            let state = w.enumeration("state", FeatureState.self, required: true)
            let uri = w.string("scriptUri")
            if let uri, !uri.isEmpty, !checkURI(uri, w.value("scriptUri")!, .invalidParameter, "scriptUri") { ok = false }
            let sum = checksum(w, .invalidParameter)
            w.finish()
            if let state, case .success(let s) = sum {
                if state == .enabled && (uri ?? "").isEmpty {
                    ctx.error(.invalidParameter, "an enabled workload optimization needs a scriptUri", w.path / "scriptUri", w.position)
                    ok = false
                }
                result.workload = .init(state: state, scriptUri: (uri ?? "").isEmpty ? nil : uri, sha256Checksum: s)
            } else { ok = false }
        } else if o.value("workload") != nil { ok = false }
        return ok ? result : nil
    }

    private func decodeErrorHandling(_ p: ObjectReader) -> ErrorHandling? {
        guard let e = p.object("errorHandling", code: .invalidParameter) else {
            return p.value("errorHandling") == nil ? ErrorHandling() : nil
        }
        defer { e.finish() }
        let c = e.enumeration("onCustomizerError", ErrorHandling.Action.self)
        let v = e.enumeration("onValidationError", ErrorHandling.Action.self)
        if (e.value("onCustomizerError") != nil && c == nil) || (e.value("onValidationError") != nil && v == nil) { return nil }
        return ErrorHandling(onCustomizerError: c ?? .cleanup, onValidationError: v ?? .cleanup)
    }

    private func decodeVMProfile(_ p: ObjectReader) -> VMProfile? {
        guard let v = p.object("vmProfile", code: .invalidParameter) else {
            return p.value("vmProfile") == nil ? VMProfile() : nil
        }
        defer { v.finish() }
        var ok = true
        var profile = VMProfile()
        profile.vmSize = v.string("vmSize") ?? ""
        if let (n, _) = v.value("osDiskSizeGB") {
            if let size = v.int("osDiskSizeGB", range: 0...4095) { profile.osDiskSizeGB = size } else if !ctx.isSuppressed(n) { ok = false }
        }
        if let ids = v.stringArray("userAssignedIdentities") {
            for (i, id) in ids.enumerated() {
                let at = (v.value("userAssignedIdentities")!.node.elements![i], v.path / "userAssignedIdentities" / i)
                if !checkShape(id, at, ResourceID.userAssignedIdentity, .invalidParameter, "user-assigned identity") { ok = false }
            }
            profile.userAssignedIdentities = ids
        } else if v.value("userAssignedIdentities") != nil { ok = false }
        if let net = v.object("vnetConfig") {
            var cfg = VNetConfig()
            cfg.subnetId = net.string("subnetId").flatMap { $0.isEmpty ? nil : $0 }
            cfg.containerInstanceSubnetId = net.string("containerInstanceSubnetId").flatMap { $0.isEmpty ? nil : $0 }
            cfg.proxyVmSize = net.string("proxyVmSize").flatMap { $0.isEmpty ? nil : $0 }
            if let s = cfg.subnetId, !checkShape(s, net.value("subnetId")!, ResourceID.subnet, .invalidParameter, "subnetId") { ok = false }
            if let s = cfg.containerInstanceSubnetId, !checkShape(s, net.value("containerInstanceSubnetId")!, ResourceID.subnet, .invalidParameter, "containerInstanceSubnetId") { ok = false }
            if cfg.containerInstanceSubnetId != nil && cfg.subnetId == nil {
                ctx.error(.invalidParameter, "containerInstanceSubnetId needs subnetId", net.path / "containerInstanceSubnetId", net.position)
                ok = false
            }
            net.finish()
            profile.vnetConfig = cfg
        } else if v.value("vnetConfig") != nil { ok = false }
        return ok ? profile : nil
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

/// Durations as Packer (Go's time.ParseDuration) reads them: `5m`, `1h30m`, `90s`.
public enum TemplateDuration {
    public static func isValidGoDuration(_ s: String) -> Bool { seconds(s) != nil }

    public static func seconds(_ s: String) -> Double? {
        var rest = Substring(s)
        guard !rest.isEmpty else { return nil }
        if rest == "0" { return 0 }
        var total = 0.0
        while !rest.isEmpty {
            let num = rest.prefix { $0.isNumber || $0 == "." }
            guard !num.isEmpty, let value = Double(num) else { return nil }
            rest = rest.dropFirst(num.count)
            let unit = rest.prefix { $0.isLetter || $0 == "µ" }
            rest = rest.dropFirst(unit.count)
            let factor: Double
            switch unit {
            case "ns": factor = 1e-9
            case "us", "µs": factor = 1e-6
            case "ms": factor = 1e-3
            case "s": factor = 1
            case "m": factor = 60
            case "h": factor = 3600
            default: return nil
            }
            total += value * factor
        }
        return total
    }
}

/// Where an artifact (script, file) comes from.
public enum ArtifactReference: Sendable, Hashable {
    case https(String)
    case http(String)
    case file(String)
    /// A path relative to the template file or the repository root.
    case relative(String)

    public init?(_ s: String) {
        let lower = s.lowercased()
        if lower.hasPrefix("https://") { self = .https(s) } else if lower.hasPrefix("http://") { self = .http(s) } else if lower.hasPrefix("file://") {
            self = .file(String(s.dropFirst("file://".count)))
        } else if Self.problem(with: s) == nil { self = .relative(s) } else { return nil }
    }

    /// Why `s` cannot be used as a script or file source, or nil.
    static func problem(with s: String) -> String? {
        let lower = s.lowercased()
        if lower.hasPrefix("https://") || lower.hasPrefix("http://") {
            let rest = s.drop(while: { $0 != "/" }).dropFirst(2)
            return rest.isEmpty || rest.hasPrefix("/") ? "the URL has no host" : nil
        }
        if lower.hasPrefix("file://") {
            let path = s.dropFirst("file://".count)
            return path.hasPrefix("/") ? nil : "a file:// URI needs an absolute path (file:///path/to/file)"
        }
        if let colon = s.firstIndex(of: ":"), let slash = s.firstIndex(of: "/"), colon < slash {
            return "unsupported URI scheme '\(s[..<colon])'; use https://, http://, file:// or a path relative to the template"
        }
        if s.hasPrefix("/") {
            return "an absolute path is ambiguous; use file://\(s) for a file on the build host or a path relative to the template"
        }
        if s.contains("\\") { return "use forward slashes in relative paths" }
        return nil
    }

    /// Why `s` cannot be a VHD destination, or nil. https:// is accepted here (AIB accepts it); whether it
    /// can be written to is decided when distributing.
    static func vhdTargetProblem(_ s: String) -> String? {
        let lower = s.lowercased()
        if lower.hasPrefix("https://") || lower.hasPrefix("http://") { return problem(with: s) }
        if lower.hasPrefix("file://") { return problem(with: s) }
        if s.hasPrefix("/") { return nil }
        return "expected an https:// URL, a file:// URI or an absolute path"
    }
}
