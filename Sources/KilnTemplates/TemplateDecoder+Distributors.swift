// Decodes `properties.distribute`: managed image, Compute Gallery (shared image) and VHD targets.
import Foundation

extension TemplateDecoder {
    func decodeDistribution(_ p: ObjectReader) -> [Distributor]? {
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
                ctx.error(
                    .badDistributeType, "unknown distribution type '\(typeText)'; expected \(Distributor.Kind.spellings)", path / "type",
                    r.value("type")!.node.position)
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
                decoded =
                    good
                    ? .managedImage(
                        ManagedImageDistributor(
                            runOutputName: runOutputName ?? "", artifactTags: tags, imageId: imageId!, location: Self.normalizeLocation(location!))) : nil
            case .sharedImage:
                decoded = decodeSharedImage(r, runOutputName: runOutputName ?? "", tags: tags).map(Distributor.sharedImage)
            case .vhd:
                var uri = r.string("uri", code: .badDistributeType)
                if let u = uri, u.isEmpty { uri = nil }
                var good = true
                if let u = uri, let at = r.value("uri"), !ctx.isSuppressed(at.node),
                    let problem = ArtifactReference.vhdTargetProblem(u) ?? ArtifactReference.vhdLocalPath(u).flatMap({ p in ctx.policy?.vhdProblem(p) })
                {
                    ctx.error(.badDistributeType, "uri '\(u)': \(problem)", at.path, at.node.position)
                    good = false
                }
                decoded = good ? .vhd(VHDDistributor(runOutputName: runOutputName ?? "", artifactTags: tags, uri: uri)) : nil
            }
            if let decoded, runOutputName != nil { out.append(decoded) } else { ok = false }
        }
        return ok ? out : nil
    }

    /// A Compute Gallery target: `galleryImageId`, the regions to replicate to, `versioning` and `replicationMode`.
    private func decodeSharedImage(_ r: ObjectReader, runOutputName: String, tags: [String: String]) -> SharedImageDistributor? {
        let code = ErrorCode.badSharedImageDistribute
        let gallery = decodeGalleryImageId(r, code: code)
        let targets = decodeTargetRegions(r, code: code)
        let exclude = r.bool("excludeFromLatest", code: code) ?? false
        let versioning = decodeVersioning(r, explicitVersion: gallery.explicitVersion, code: code)
        let mode = r.enumeration("replicationMode", SharedImageDistributor.ReplicationMode.self, code: code)
        let modeOK = r.value("replicationMode") == nil || mode != nil
        guard gallery.ok, targets.ok, versioning.ok, modeOK, let galleryImageId = gallery.id else { return nil }
        return SharedImageDistributor(
            runOutputName: runOutputName, artifactTags: tags, galleryImageId: galleryImageId,
            targetRegions: targets.regions, usesDeprecatedReplicationRegions: targets.usesReplicationRegions,
            excludeFromLatest: exclude, versioning: versioning.versioning, replicationMode: mode ?? .full)
    }

    /// `galleryImageId`: a gallery image, or one of its versions (`.../versions/x.y.z`, an explicit version).
    private func decodeGalleryImageId(_ r: ObjectReader, code: ErrorCode) -> (id: String?, explicitVersion: Bool, ok: Bool) {
        var ok = true
        let galleryImageId = r.string("galleryImageId", code: code, required: true)
        var explicitVersion = false
        if let id = galleryImageId, let at = r.value("galleryImageId"), !ctx.isSuppressed(at.node) {
            if case .success = ResourceID.parse(id, as: ResourceID.galleryImageVersion) {
                explicitVersion = true
                let v = ResourceID.parse(id)!.name
                if !ResourceNames.isValidGalleryVersion(v) {
                    ctx.error(
                        code, "version '\(v)' in galleryImageId must be x.y.z (three integers); leave the version out to have one generated", at.path,
                        at.node.position)
                    ok = false
                }
            } else if case .failure(let e) = ResourceID.parse(id, as: ResourceID.galleryImage) {
                ctx.error(code, "galleryImageId: \(e.message) (or .../versions/{x.y.z})", at.path, at.node.position)
                ok = false
            }
        } else {
            ok = galleryImageId != nil
        }
        return (galleryImageId, explicitVersion, ok)
    }

    /// The regions to replicate to, each once: `targetRegions`, or the deprecated `replicationRegions` with one
    /// `storageAccountType` for all; `usesReplicationRegions` says which form was given.
    private func decodeTargetRegions(_ r: ObjectReader, code: ErrorCode) -> (regions: [TargetRegion], usesReplicationRegions: Bool, ok: Bool) {
        var ok = true
        let targetNode = r.value("targetRegions"), replicationNode = r.value("replicationRegions")
        let storageNode = r.value("storageAccountType")
        var regions: [TargetRegion] = []
        if targetNode != nil && replicationNode != nil {
            ctx.error(code, "give either targetRegions or the deprecated replicationRegions, not both", replicationNode!.path, replicationNode!.node.position)
            ok = false
        }
        if let storageNode, replicationNode == nil {
            ctx.error(
                code, "storageAccountType at this level applies only with replicationRegions; with targetRegions set it per region", storageNode.path,
                storageNode.node.position)
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
                addRegion(
                    TargetRegion(name: Self.normalizeLocation(name), replicaCount: count ?? 1, storageAccountType: storage ?? .standardLRS),
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
                addRegion(
                    TargetRegion(name: Self.normalizeLocation(name), replicaCount: 1, storageAccountType: storage ?? .standardLRS),
                    replicationNode!.path / i, node.position)
            }
        } else if replicationNode != nil {
            ok = false
        }
        return (regions, replicationNode != nil, ok)
    }

    /// `versioning`, Latest when it is absent and galleryImageId names no version; it cannot be combined with
    /// an explicit version.
    private func decodeVersioning(_ r: ObjectReader, explicitVersion: Bool, code: ErrorCode) -> (versioning: Versioning?, ok: Bool) {
        var ok = true
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
        return (versioning, ok)
    }
}
