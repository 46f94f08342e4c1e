import Foundation

/// What kind of file a path holds, decided from its name and content.
public enum TemplateFileKind: String, Sendable, Hashable, Codable {
    /// A bare imageTemplates resource (JSON or YAML).
    case imageTemplate
    /// An ARM deployment template whose `resources[]` hold imageTemplates.
    case deploymentTemplate
    /// `NAME.parameters.json` for the deployment template `NAME.json`.
    case deploymentParameters
    /// `kiln.yaml`: repository defaults.
    case repositoryConfig
    /// A Compute Gallery image definition (`galleries/*.yaml`).
    case galleryImageDefinition
    /// A bare trigger resource (`Microsoft.VirtualMachineImages/imageTemplates/triggers`).
    case trigger
}

/// Where templates are placed when their file does not say: the defaults of `kiln.yaml` or the CLI.
public struct LoadOptions: Sendable, Hashable {
    public var scope: DeploymentScope
    /// Parameter values given on the command line, as text (JSON for non-string parameters).
    public var parameters: [String: String]

    /// What the template's artifact references may reach; nil checks only their syntax (a template read
    /// back from the store was judged when it was created).
    public var artifactPolicy: ArtifactPolicy?
    /// The file's path inside its repository (`templates/web.json`), when it has one: relative references
    /// are then checked to stay inside the repository (see `RepositoryPath`).
    public var repositoryPath: String?

    public init(
        scope: DeploymentScope = LoadOptions.defaultScope, parameters: [String: String] = [:],
        artifactPolicy: ArtifactPolicy? = nil, repositoryPath: String? = nil
    ) {
        self.scope = scope
        self.parameters = parameters
        self.artifactPolicy = artifactPolicy
        self.repositoryPath = repositoryPath
    }

    func applyArtifactRules(to ctx: DecodeContext) {
        ctx.policy = artifactPolicy
        ctx.templateDirectory = repositoryPath.map(RepositoryPath.directory(of:))
    }

    /// Any subscription id and group name are accepted; these are used when nothing says otherwise.
    public static let defaultScope = DeploymentScope(subscriptionId: "00000000-0000-0000-0000-000000000000", resourceGroup: "kiln", location: "local")
}

/// One image template found in a file, valid and ready to submit.
public struct LoadedTemplate: Sendable, Hashable {
    public var resourceId: ResourceID
    public var template: ImageTemplate
    /// Read-only properties present in the input, ignored for building.
    public var status: ImageTemplateStatus
    public var apiVersion: APIVersion
    /// Where the resource sits in its file (`$` or `$.resources[1]`).
    public var resourcePath: JSONPath
    public var line: Int
    /// The line of each `scriptUri` / `sourceUri`, and of `properties.source`, by its JSON path in the file.
    public var artifactLines: [String: Int] = [:]

    /// `sha256:<hex>` of the template's canonical form alone; see `ContentHash`. Computed when asked: GitOps
    /// never asks, it compares a hash that also covers the repository files the template references
    /// (`DesiredTemplate.contentHash`).
    public var contentHash: String { ContentHash.of(template) }
}

/// A resource of a deployment template that Kiln does not handle (reported, not an error).
public struct SkippedResource: Sendable, Hashable, Codable {
    public var path: String
    public var line: Int
    public var type: String
    public var name: String?
    public var reason: String
}

/// Everything learned from one file.
public struct LoadedFile: Sendable {
    public var path: String
    public var kind: TemplateFileKind?
    public var templates: [LoadedTemplate] = []
    public var skipped: [SkippedResource] = []
    public var galleryDefinitions: [GalleryImageDefinition] = []
    public var triggers: [TriggerResource] = []
    public var repositoryConfig: RepositoryConfig?
    public var diagnostics: [Diagnostic] = []
    /// The parameters file that was read with a deployment template.
    public var parametersFile: String?

    public var errors: [Diagnostic] { diagnostics.filter { $0.severity == .error } }
    public var isValid: Bool { errors.isEmpty }
}

/// Reads template files in every form Kiln accepts.
public enum TemplateLoader {
    public enum Format: Sendable { case json, yaml }

    public static func format(forPath path: String) -> Format? {
        let lower = path.lowercased()
        if lower.hasSuffix(".json") { return .json }
        if lower.hasSuffix(".yaml") || lower.hasSuffix(".yml") { return .yaml }
        return nil
    }

    /// Whether `path` names a deployment parameters file by convention.
    public static func isParametersFileName(_ path: String) -> Bool {
        let lower = path.lowercased()
        return lower.hasSuffix(".parameters.json") || lower.hasSuffix(".parameters.yaml") || lower.hasSuffix(".parameters.yml")
    }

    public static func isRepositoryConfigName(_ path: String) -> Bool {
        let base = (path as NSString).lastPathComponent.lowercased()
        return base == "kiln.yaml" || base == "kiln.yml"
    }

    /// The sibling `NAME.parameters.json` of `NAME.json`.
    /// Repository paths are plain `a/b/c.json` (no trailing or doubled slashes): cut at the last `.` of the last
    /// component, without NSString's path normalisation (measurable when called for 10,000 files per plan).
    public static func siblingParametersPath(for path: String) -> String {
        let nameStart = path.lastIndex(of: "/").map { path.index(after: $0) } ?? path.startIndex
        let dot = path[nameStart...].lastIndex(of: ".").flatMap { $0 > nameStart ? $0 : nil } ?? path.endIndex
        return String(path[..<dot]) + ".parameters.json"
    }

    /// Parses text into a source tree.
    public static func parse(_ text: String, format: Format) throws(SyntaxError) -> SourceNode {
        switch format {
        case .json: return try JSONSourceParser.parse(text)
        case .yaml: return try YAMLSourceParser.parse(text)
        }
    }

    /// Loads a file from disk; a deployment template reads its sibling parameters file when there is one.
    public static func loadFile(_ path: String, options: LoadOptions = LoadOptions()) -> LoadedFile {
        guard let data = FileManager.default.contents(atPath: path) else {
            var f = LoadedFile(path: path)
            f.diagnostics.append(Diagnostic(file: path, position: .unknown, path: .root, code: .invalidFile, message: "cannot read the file"))
            return f
        }
        guard let text = String(data: data, encoding: .utf8) else {
            var f = LoadedFile(path: path)
            f.diagnostics.append(Diagnostic(file: path, position: .unknown, path: .root, code: .invalidFile, message: "the file is not UTF-8 text"))
            return f
        }
        let sibling = siblingParametersPath(for: path)
        var params: (path: String, text: String)?
        if !isParametersFileName(path), sibling != path, let pdata = FileManager.default.contents(atPath: sibling) {
            params = (sibling, String(decoding: pdata, as: UTF8.self))
        }
        return load(text: text, path: path, options: options, parameters: params)
    }

    /// Loads a file from memory (a blob at a commit, a test fixture).
    public static func load(
        text: String, path: String, format: Format? = nil, options: LoadOptions = LoadOptions(),
        parameters: (path: String, text: String)? = nil
    ) -> LoadedFile {
        var file = LoadedFile(path: path)
        let fmt = format ?? Self.format(forPath: path) ?? .json
        let root: SourceNode
        do {
            root = try parse(text, format: fmt)
        } catch {
            file.diagnostics.append(
                Diagnostic(
                    file: path, position: error.position, path: .root, code: .invalidRequestContent,
                    message: "cannot parse \(fmt == .json ? "JSON" : "YAML"): \(error.message)"))
            return file
        }
        let kind = classify(root, path: path)
        file.kind = kind
        switch kind {
        case .repositoryConfig:
            var sink = DiagnosticSink(file: path)
            file.repositoryConfig = RepositoryConfig.decode(root, sink: &sink)
            file.diagnostics = sink.items
        case .galleryImageDefinition:
            var sink = DiagnosticSink(file: path)
            if let d = GalleryImageDefinition.decode(root, scope: options.scope, sink: &sink) { file.galleryDefinitions = [d] }
            file.diagnostics = sink.items
        case .deploymentParameters:
            // Read together with its template; on its own only the syntax is checked.
            break
        case .imageTemplate:
            loadBare(root, into: &file, options: options)
        case .trigger:
            var sink = DiagnosticSink(file: path)
            if var t = TriggerResource.decode(root, path: .root, fileTemplate: TriggerResource.template(fromFileName: path), sink: &sink) {
                t.scope = options.scope
                file.triggers = [t]
            }
            file.diagnostics = sink.items
        case .deploymentTemplate:
            DeploymentLoader(path: path, options: options).load(root, parameters: parameters, into: &file)
        }
        return file
    }

    static func classify(_ root: SourceNode, path: String) -> TemplateFileKind {
        if isRepositoryConfigName(path) { return .repositoryConfig }
        let schema = root.member(caseInsensitive: "$schema")?.stringValue?.lowercased() ?? ""
        if isParametersFileName(path) || schema.contains("deploymentparameters") { return .deploymentParameters }
        if root.member(caseInsensitive: "resources") != nil || schema.contains("deploymenttemplate") { return .deploymentTemplate }
        let type = root.member(caseInsensitive: "type")?.stringValue?.lowercased()
        if type == "microsoft.compute/galleries/images" { return .galleryImageDefinition }
        if type == TriggerResource.resourceType.lowercased() { return .trigger }
        return .imageTemplate
    }

    /// The file's base name without extension: a bare template's name when it has none.
    static func baseName(_ path: String) -> String {
        var base = (path as NSString).lastPathComponent
        for ext in [".json", ".yaml", ".yml"] where base.lowercased().hasSuffix(ext) {
            base = String(base.dropLast(ext.count))
        }
        return base
    }

    private static func loadBare(_ root: SourceNode, into file: inout LoadedFile, options: LoadOptions) {
        var sink = DiagnosticSink(file: file.path)
        let version = apiVersion(of: root, path: .root, sink: &sink)
        let ctx = DecodeContext(sink: sink, apiVersion: version)
        options.applyArtifactRules(to: ctx)
        let (template, status) = TemplateDecoder(ctx: ctx).decodeResource(root, path: .root, fallbackName: baseName(file.path))
        file.diagnostics = ctx.sink.items
        if let template, !ctx.sink.hasErrors {
            file.templates.append(
                makeLoaded(
                    template, status: status, version: version, scope: options.scope, path: .root, line: root.position.line,
                    artifactLines: ctx.artifactLines))
        }
    }

    static func makeLoaded(
        _ t: ImageTemplate, status: ImageTemplateStatus, version: APIVersion, scope: DeploymentScope, path: JSONPath, line: Int,
        artifactLines: [String: Int]
    ) -> LoadedTemplate {
        let id = ResourceID(
            subscription: scope.subscriptionId, resourceGroup: scope.resourceGroup,
            providerNamespace: "Microsoft.VirtualMachineImages", segments: [(type: "imageTemplates", name: t.name)])
        return LoadedTemplate(
            resourceId: id, template: t, status: status, apiVersion: version, resourcePath: path, line: line, artifactLines: artifactLines)
    }

    /// The resource's api-version, checked; the newest when absent or unusable (the error is reported).
    static func apiVersion(of resource: SourceNode, path: JSONPath, sink: inout DiagnosticSink) -> APIVersion {
        guard let node = resource.member(caseInsensitive: "apiVersion") else { return .latest }
        let p = path / "apiVersion"
        guard let text = node.stringValue ?? node.yamlText else {
            sink.error(.invalidRequestContent, "apiVersion must be a string such as '\(APIVersion.latest)'", at: p, node.position)
            return .latest
        }
        guard let v = APIVersion(text) else {
            sink.error(.noRegisteredProviderFound, "'\(text)' is not an api-version; expected a date such as '\(APIVersion.latest)'", at: p, node.position)
            return .latest
        }
        if v < APIVersion.minimum {
            sink.error(
                .noRegisteredProviderFound,
                "api-version \(v) is retired; the oldest AIB accepts is \(APIVersion.minimum) (supported: \(APIVersion.published.map(\.description).joined(separator: ", ")))",
                at: p, node.position)
            return .latest
        }
        if v > APIVersion.latest {
            sink.error(.noRegisteredProviderFound, "api-version \(v) is newer than \(APIVersion.latest), the newest Kiln implements", at: p, node.position)
            return .latest
        }
        if !APIVersion.published.contains(v) {
            sink.warning(
                .noRegisteredProviderFound, "api-version \(v) is not a published imageTemplates api-version; validating by the rules in force at that date",
                at: p, node.position)
        }
        return v
    }
}
