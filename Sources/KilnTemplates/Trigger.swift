// AIB's trigger resource (Microsoft.VirtualMachineImages/imageTemplates/triggers): its model and decoding.
import Foundation

/// What makes a trigger fire. AIB has one kind: `SourceImage`, a new version of the template's source.
public enum TriggerKind: String, AIBEnum, Codable {
    case sourceImage = "SourceImage"
}

/// A trigger as a file (or a request) declares it: `{"name": "TEMPLATE/NAME", "properties": {"kind": "SourceImage"}}`.
/// Read-only properties (`status`, `provisioningState`) are accepted and ignored.
public struct TriggerResource: Sendable, Hashable {
    public static let resourceType = "Microsoft.VirtualMachineImages/imageTemplates/triggers"
    /// Triggers came with api-version 2022-07-01.
    public static let minimumAPIVersion = APIVersion("2022-07-01")!

    /// The template it belongs to, by name (in the file's resource group).
    public var templateName: String
    public var name: String
    public var kind: TriggerKind
    public var apiVersion: APIVersion
    /// Where the resource sits in its file, and its line.
    public var resourcePath: JSONPath
    public var line: Int
    /// The subscription and resource group its template is in (the file's defaults).
    public var scope = LoadOptions.defaultScope

    /// The template's resource id.
    public var templateId: String {
        ResourceID(
            subscription: scope.subscriptionId, resourceGroup: scope.resourceGroup, providerNamespace: "Microsoft.VirtualMachineImages",
            segments: [(type: "imageTemplates", name: templateName)]
        ).description
    }

    public init(templateName: String, name: String, kind: TriggerKind, apiVersion: APIVersion = .latest, resourcePath: JSONPath = .root, line: Int = 1) {
        self.templateName = templateName
        self.name = name
        self.kind = kind
        self.apiVersion = apiVersion
        self.resourcePath = resourcePath
        self.line = line
    }
}

extension TriggerResource {
    /// Decodes a trigger resource. Its name is `TEMPLATE/NAME`; a bare `NAME` takes the template from a file
    /// named `TEMPLATE.trigger.json` (`fileTemplate`), or from the enclosing template of a nested resource.
    static func decode(_ node: SourceNode, path: JSONPath, fileTemplate: String?, sink: inout DiagnosticSink) -> TriggerResource? {
        let version = TemplateLoader.apiVersion(of: node, path: path, sink: &sink)
        let ctx = DecodeContext(sink: sink, apiVersion: version)
        defer { sink = ctx.sink }
        guard let r = ObjectReader(node, path: path, ctx: ctx, code: .invalidParameter) else { return nil }
        r.accept("apiVersion", "id", "type", "systemData", "dependsOn", "comments", "condition", "metadata", "$schema", "location")
        if version < minimumAPIVersion, let (n, p) = r.value("apiVersion") {
            ctx.error(.noRegisteredProviderFound, "triggers need api-version \(minimumAPIVersion) or later; this one is \(version)", p, n.position)
        }
        let names = r.string("name", code: .invalidParameter, required: true).flatMap { text in
            Self.names(text, fileTemplate: fileTemplate, at: r.value("name")!, ctx: ctx)
        }
        var kind: TriggerKind?
        if let p = r.object("properties", code: .invalidParameter, required: true) {
            p.accept("status", "provisioningState")
            if let (n, at) = p.value("kind") {
                if let text = ObjectReader.string(n, path: at, ctx: ctx, code: .invalidParameter) {
                    kind = TriggerKind.matching(text)
                    if kind == nil {
                        ctx.error(.invalidParameter, "kind '\(text)' is not a trigger kind; AIB has \(TriggerKind.spellings)", at, n.position)
                    }
                }
            } else {
                ctx.error(.invalidParameter, "the property 'kind' is required; expected \(TriggerKind.spellings)", p.path / "kind", p.position)
            }
            p.finish()
        }
        r.finish()
        guard !ctx.sink.hasErrors, let names, let kind else { return nil }
        return TriggerResource(templateName: names.template, name: names.trigger, kind: kind, apiVersion: version, resourcePath: path, line: node.position.line)
    }

    static func names(_ text: String, fileTemplate: String?, at: (node: SourceNode, path: JSONPath), ctx: DecodeContext) -> (template: String, trigger: String)?
    {
        let parts = text.split(separator: "/", omittingEmptySubsequences: false).map(String.init)
        let template: String?, trigger: String
        switch parts.count {
        case 2: (template, trigger) = (parts[0], parts[1])
        case 1: (template, trigger) = (fileTemplate, parts[0])
        default: (template, trigger) = (nil, text)
        }
        guard let template else {
            let expected = parts.count == 1 ? "TEMPLATE/\(text) (or a file named TEMPLATE.trigger.json)" : "TEMPLATE/NAME"
            ctx.error(.invalidParameter, "trigger name '\(text)' must name its template: \(expected)", at.path, at.node.position)
            return nil
        }
        for (what, n) in [("template", template), ("trigger", trigger)] where !ResourceNames.isValidTemplateName(n) {
            ctx.error(.invalidParameter, "\(what) name '\(n)' must match ^[A-Za-z0-9-_.]{1,64}$", at.path, at.node.position)
            return nil
        }
        return (template, trigger)
    }

    /// The template named by a file called `TEMPLATE.trigger.json` (or `.yaml`).
    static func template(fromFileName path: String) -> String? {
        let base = TemplateLoader.baseName(path)
        guard base.lowercased().hasSuffix(".trigger") else { return nil }
        return String(base.dropLast(".trigger".count))
    }
}
