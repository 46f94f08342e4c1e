import Foundation

/// `kiln.yaml` at the root of a GitOps repository: defaults for templates that do not say.
public struct RepositoryConfig: Sendable, Hashable, Codable {
    public var subscription: String?
    public var resourceGroup: String?
    public var location: String?
    /// Where templates live (default `templates`).
    public var templatesPath: String
    /// Where gallery image definitions live (default `galleries`).
    public var galleriesPath: String
    /// What to do when a template changes while it builds: wait (default) or cancel.
    public var onChangeDuringRun: OnChangeDuringRun
    /// Whether a template whose source is an image another template of the repository publishes (a gallery
    /// definition's `latest`, a managed image) is rebuilt when that image changes (default true).
    public var rebuildOnSourceChange: Bool

    public enum OnChangeDuringRun: String, Sendable, Hashable, Codable, AIBEnum { case wait, cancel }

    public init(
        subscription: String? = nil, resourceGroup: String? = nil, location: String? = nil,
        templatesPath: String = "templates", galleriesPath: String = "galleries", onChangeDuringRun: OnChangeDuringRun = .wait,
        rebuildOnSourceChange: Bool = true
    ) {
        self.subscription = subscription
        self.resourceGroup = resourceGroup
        self.location = location
        self.templatesPath = templatesPath
        self.galleriesPath = galleriesPath
        self.onChangeDuringRun = onChangeDuringRun
        self.rebuildOnSourceChange = rebuildOnSourceChange
    }

    /// The load options these defaults imply, over `base`.
    public func applied(to base: LoadOptions) -> LoadOptions {
        var o = base
        if let s = subscription { o.scope.subscriptionId = s }
        if let g = resourceGroup { o.scope.resourceGroup = g }
        if let l = location { o.scope.location = l }
        return o
    }

    static func decode(_ root: SourceNode, sink: inout DiagnosticSink) -> RepositoryConfig? {
        let ctx = DecodeContext(sink: sink, apiVersion: .latest)
        defer { sink = ctx.sink }
        guard let r = ObjectReader(root, path: .root, ctx: ctx, code: .invalidParameter) else { return nil }
        var c = RepositoryConfig()
        c.subscription = r.string("subscription", nonEmpty: true)
        if let g = r.string("resourceGroup", nonEmpty: true) {
            if ResourceNames.isValidResourceGroup(g) {
                c.resourceGroup = g
            } else {
                ctx.error(
                    .invalidParameter, "'\(g)' is not a valid resource group name", JSONPath.root / "resourceGroup", r.value("resourceGroup")!.node.position)
            }
        }
        c.location = r.string("location", nonEmpty: true).map(TemplateDecoder.normalizeLocation)
        if let paths = r.object("paths") {
            if let t = paths.string("templates", nonEmpty: true) { c.templatesPath = t }
            if let g = paths.string("galleries", nonEmpty: true) { c.galleriesPath = g }
            paths.finish()
        }
        if let o = r.enumeration("onChangeDuringRun", OnChangeDuringRun.self) { c.onChangeDuringRun = o }
        if let b = r.bool("rebuildOnSourceChange") { c.rebuildOnSourceChange = b }
        r.finish()
        return ctx.sink.hasErrors ? nil : c
    }
}

/// A Compute Gallery image definition, written ARM-style in `galleries/*.yaml`:
///
/// ```yaml
/// type: Microsoft.Compute/galleries/images
/// name: kilnGallery/debian-12-base        # gallery/definition
/// properties:
///   osType: Linux
///   osState: Generalized
///   hyperVGeneration: V2
///   identifier: {publisher: Contoso, offer: debian, sku: 12-base}
/// ```
public struct GalleryImageDefinition: Sendable, Hashable, Codable {
    public enum OSType: String, Sendable, Hashable, Codable, AIBEnum { case linux = "Linux", windows = "Windows" }
    public enum OSState: String, Sendable, Hashable, Codable, AIBEnum { case generalized = "Generalized", specialized = "Specialized" }
    public enum Generation: String, Sendable, Hashable, Codable, AIBEnum { case v1 = "V1", v2 = "V2" }

    /// `/subscriptions/.../galleries/{gallery}/images/{definition}`.
    public var id: String
    public var gallery: String
    public var name: String
    public var location: String?
    public var osType: OSType
    public var osState: OSState
    public var hyperVGeneration: Generation
    public var publisher: String
    public var offer: String
    public var sku: String
    public var description: String?
    public var endOfLifeDate: String?

    public init(
        id: String, gallery: String, name: String, location: String?, osType: OSType, osState: OSState, hyperVGeneration: Generation,
        publisher: String, offer: String, sku: String, description: String?, endOfLifeDate: String?
    ) {
        self.id = id
        self.gallery = gallery
        self.name = name
        self.location = location
        self.osType = osType
        self.osState = osState
        self.hyperVGeneration = hyperVGeneration
        self.publisher = publisher
        self.offer = offer
        self.sku = sku
        self.description = description
        self.endOfLifeDate = endOfLifeDate
    }

    static func decode(_ root: SourceNode, scope: DeploymentScope, sink: inout DiagnosticSink) -> GalleryImageDefinition? {
        let ctx = DecodeContext(sink: sink, apiVersion: .latest)
        defer { sink = ctx.sink }
        guard let r = ObjectReader(root, path: .root, ctx: ctx, code: .invalidParameter) else { return nil }
        defer { r.finish() }
        r.accept("type", "apiVersion")
        let fullName = r.string("name", required: true)
        let rg = r.string("resourceGroup", nonEmpty: true) ?? scope.resourceGroup
        let sub = r.string("subscription", nonEmpty: true) ?? scope.subscriptionId
        let location = r.string("location").map(TemplateDecoder.normalizeLocation)
        var gallery = "", name = ""
        if let fullName {
            let parts = fullName.split(separator: "/", omittingEmptySubsequences: false).map(String.init)
            if parts.count == 2, parts.allSatisfy({ !$0.isEmpty && $0.allSatisfy { $0.isLetter || $0.isNumber || "-_.".contains($0) } }) {
                gallery = parts[0]
                name = parts[1]
            } else {
                ctx.error(.invalidParameter, "name '\(fullName)' must be 'gallery/definition'", JSONPath.root / "name", r.value("name")!.node.position)
            }
        }
        guard let p = r.object("properties", required: true) else { return nil }
        defer { p.finish() }
        let osType = p.enumeration("osType", OSType.self, required: true)
        let osState = p.enumeration("osState", OSState.self) ?? .generalized
        let generation = p.enumeration("hyperVGeneration", Generation.self) ?? .v1
        var publisher: String?, offer: String?, sku: String?
        if let i = p.object("identifier", required: true) {
            publisher = i.string("publisher", required: true)
            offer = i.string("offer", required: true)
            sku = i.string("sku", required: true)
            i.finish()
        }
        let description = p.string("description")
        let eol = p.string("endOfLifeDate")
        guard !gallery.isEmpty, let osType, let publisher, let offer, let sku else { return nil }
        let id = "/subscriptions/\(sub)/resourceGroups/\(rg)/providers/Microsoft.Compute/galleries/\(gallery)/images/\(name)"
        return GalleryImageDefinition(
            id: id, gallery: gallery, name: name, location: location, osType: osType, osState: osState,
            hyperVGeneration: generation, publisher: publisher, offer: offer, sku: sku,
            description: description, endOfLifeDate: eol)
    }
}
