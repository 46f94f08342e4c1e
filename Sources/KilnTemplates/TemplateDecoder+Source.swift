// Decodes `properties.source`: a platform (Marketplace) image, a managed image or a gallery image version.
import Foundation

extension TemplateDecoder {
    func decodeSource(_ s: ObjectReader, status: inout ImageTemplateStatus) -> ImageSource? {
        defer { s.finish() }
        // Problems found after decoding (a build-order cycle) point here.
        ctx.artifactLines[s.path.description] = s.position.line
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
            ctx.error(
                .badSourceType, "unknown source type '\(typeText)'\(hint); expected \(ImageSource.Kind.spellings)", s.path / "type",
                s.value("type")!.node.position)
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
            parts[3].lowercased() == "images", parts[5].lowercased() == "versions", !parts[2].isEmpty, !parts[4].isEmpty
        {
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
}
