// Lineage: which image each image was built from, back to the catalog, and whether a template is outdated.
import Foundation
import KilnBuild
import KilnStore
import KilnTemplates

/// One image of a chain: what it is, and the template and run that built it (none for a catalog image).
public struct LineageLink: Codable, Sendable, Hashable {
    public enum Kind: String, Codable, Sendable, Hashable {
        case galleryImageVersion = "GalleryImageVersion", managedImage = "ManagedImage", platformImage = "PlatformImage", vhd = "VHD"
        /// An image a link names that is no longer there (deleted); the chain ends at it.
        case missing = "Missing"
    }
    public var kind: Kind
    public var id: String
    /// `debian-12-base 1.0.1`, `Debian:debian-12:12-gen2:2026.1202.0`: how the chain is printed.
    public var name: String
    public var sha256: String?
    /// The template (resource id) and the run that built it.
    public var template: String?
    public var runId: String?
    public var createdAt: String?
}

/// An image and its ancestors, newest first: `[web 1.0.3, base 1.0.7, Debian:debian-12:12-gen2:2026.1208.0]`.
public struct LineageChain: Codable, Sendable, Hashable {
    public var links: [LineageLink]

    /// `debian-12-web 1.0.3 ← debian-12-base 1.0.7 ← Debian:debian-12:12-gen2:2026.1208.0`.
    public var text: String { links.map(\.name).joined(separator: " ← ") }
}

extension KilnCore {
    /// The chain of `reference`: a gallery image version id (`latest` allowed), a managed image id, a catalog
    /// URN, or a template (name or id), for which the chain starts at its newest successful run's first output.
    public func lineage(of reference: String) async throws(CoreError) -> LineageChain {
        if let start = try await firstLink(reference) { return LineageChain(links: try await chain(from: start)) }
        let resource = try await template(reference)
        let runs = try await stored { () async throws(StoreError) in try await store.runs(templateId: resource.record.id) }
        guard let run = runs.first(where: { $0.runState == .succeeded || $0.runState == .partiallySucceeded }) else {
            throw CoreError.notFound("\(resource.name) has no successful run, so no image to trace")
        }
        let outputs = run.outputs.filter { $0.provisioningState == .succeeded }
        if let id = outputs.compactMap(\.artifactId).first, let start = try await firstLink(id) {
            return LineageChain(links: try await chain(from: start))
        }
        // Only VHDs: the run itself stands for the image, built from its recorded source.
        let vhd = LineageLink(
            kind: .vhd, id: outputs.compactMap(\.artifactUri).first ?? run.id, name: "\(resource.name) (run \(run.id.prefix(8)))",
            sha256: run.artifactSha256, template: resource.record.id, runId: run.id, createdAt: run.endTime?.iso8601)
        var links = [vhd]
        if let source = run.sourceReference { links += try await chain(from: try await link(for: source)) }
        return LineageChain(links: links)
    }

    /// The first link for a reference that names an image (nil when it names none: a template, then).
    func firstLink(_ reference: String) async throws(CoreError) -> LineageLink? {
        if let id = ResourceID.parse(reference), id.fullType == ResourceID.galleryImageVersion.fullType, id.name.lowercased() == "latest" {
            let resolved = try? await SourceResolver(database: store, paths: paths).resolve(.sharedImageVersion(.init(imageVersionId: reference)))
            guard let resolved else { throw CoreError.notFound("\(reference): the definition has no version that latest resolves to") }
            return try await link(for: resolved.reference)
        }
        let link = try await link(for: reference)
        return link.kind == .missing && !Self.namesAnImage(reference) ? nil : link
    }

    /// Follows `sourceImage` from `start` to the catalog, or to the first image that is gone.
    func chain(from start: LineageLink) async throws(CoreError) -> [LineageLink] {
        var links = [start]
        var seen: Set<String> = [start.id.lowercased()]
        while links.count < 64, let parent = try await parentReference(of: links.last!), seen.insert(parent.lowercased()).inserted {
            links.append(try await link(for: parent))
        }
        return links
    }

    /// What an image's metadata says it was built from.
    func parentReference(of link: LineageLink) async throws(CoreError) -> String? {
        switch link.kind {
        case .galleryImageVersion: return try await galleryVersion(link.id)?.metadata["sourceImage"]
        case .managedImage: return try await stored { () async throws(StoreError) in try await store.managedImage(id: link.id) }?.metadata["sourceImage"]
        case .platformImage, .vhd, .missing: return nil
        }
    }

    /// The link for an exact reference; `.missing` when nothing of that id exists (any more).
    func link(for reference: String) async throws(CoreError) -> LineageLink {
        if let id = ResourceID.parse(reference), id.fullType == ResourceID.galleryImageVersion.fullType, id.segments.count >= 3 {
            guard let v = try await galleryVersion(reference) else { return Self.missing(reference) }
            return LineageLink(
                kind: .galleryImageVersion, id: v.id, name: "\(id.segments[1].name) \(v.version)", sha256: v.sha256,
                template: v.metadata["sourceTemplate"], runId: v.metadata["runId"], createdAt: v.metadata["createdAt"] ?? v.createdAt.iso8601)
        }
        if let id = ResourceID.parse(reference), id.fullType == "microsoft.compute/images" {
            guard let m = try await stored({ () async throws(StoreError) in try await store.managedImage(id: reference) }) else {
                return Self.missing(reference)
            }
            return LineageLink(
                kind: .managedImage, id: m.id, name: id.name, sha256: m.sha256, template: m.metadata["sourceTemplate"], runId: m.metadata["runId"],
                createdAt: m.metadata["createdAt"] ?? m.createdAt.iso8601)
        }
        let parts = reference.split(separator: ":", omittingEmptySubsequences: false).map(String.init)
        if parts.count == 4, let version = ImageVersion(parts[3]),
            let image = try await stored({ () async throws(StoreError) in
                try await store.image(publisher: parts[0], offer: parts[1], sku: parts[2], version: version)
            })
        {
            return LineageLink(kind: .platformImage, id: image.urn, name: image.urn, sha256: image.sha256, createdAt: image.createdAt.iso8601)
        }
        return Self.missing(reference)
    }

    func galleryVersion(_ id: String) async throws(CoreError) -> GalleryVersionRecord? {
        guard let r = ResourceID.parse(id), let version = ImageVersion(r.name) else { return nil }
        let definition = String(id.dropLast(r.name.count + "/versions/".count))
        return try await stored { () async throws(StoreError) in try await store.galleryVersions(definitionId: definition) }.first { $0.version == version }
    }

    static func namesAnImage(_ reference: String) -> Bool {
        reference.hasPrefix("/") || reference.split(separator: ":").count == 4
    }

    static func missing(_ reference: String) -> LineageLink {
        LineageLink(kind: .missing, id: reference, name: "\(BuiltSource(reference: reference, sha256: nil).shown) (deleted)")
    }

    /// Whether the template's newest successful run was built from something other than what its source
    /// resolves to now, in words ("outdated: source debian-12-base 1.0.1 is newer than the 1.0.0 this was
    /// built from"); nil when it is current, was never built, or its source does not resolve.
    public func outdated(_ resource: TemplateResource) async -> String? {
        guard let runs = try? await store.runs(templateId: resource.record.id),
            let built = runs.first(where: { $0.runState == .succeeded || $0.runState == .partiallySucceeded })?.builtFrom,
            let now = await currentSource(of: resource.template.properties.source), !now.isSameImage(as: built)
        else { return nil }
        return "outdated: " + Self.newer(now, than: built)
    }

    /// "source debian-12-base 1.0.1 is newer than the 1.0.0 this was built from", or, for sources of
    /// different images or the same version with new content, what it is now and what it was.
    static func newer(_ now: BuiltSource, than built: BuiltSource) -> String {
        let a = now.shown.split(separator: " "), b = built.shown.split(separator: " ")
        if a.count == 2, b.count == 2, a[0] == b[0], let va = ImageVersion(String(a[1])), let vb = ImageVersion(String(b[1])), vb < va {
            return "source \(now.shown) is newer than the \(b[1]) this was built from"
        }
        return "source is now \(now.shown); this was built from \(built.shown)"
    }

    /// A template's status document (`TemplateStatusDocument`), with its source's parent looked up: the same
    /// document for the status branch and `kiln template show`.
    public func statusDocument(_ t: TemplateRecord, lastRun run: RunRecord?, sourceErrors: [Diagnostic]? = nil) async -> TemplateStatusDocument {
        var d = TemplateStatusDocument(template: t, lastRun: run, sourceErrors: sourceErrors)
        if let source = run?.sourceReference, let link = try? await link(for: source), let template = link.template {
            d.parent = ParentStatusDocument(template: template, runId: link.runId)
        }
        return d
    }
}
