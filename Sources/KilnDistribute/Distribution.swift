import Foundation
import KilnStore
import KilnSystem
import KilnTemplates
import Logging

/// The image a run produced, handed to distribution.
public struct CapturedImage: Sendable {
    public var path: String
    public var sha256: String
    public var virtualSize: Int64
    public var osType: OSType
    public var generation: HyperVGeneration
    /// The source image's exact version (for versioning Source) and a description of it.
    public var sourceVersion: String?
    public var sourceReference: String
    /// The digest of the source disk: with `sourceReference`, the parent each output records.
    public var sourceSha256: String?

    public init(
        path: String, sha256: String, virtualSize: Int64, osType: OSType, generation: HyperVGeneration, sourceVersion: String?, sourceReference: String,
        sourceSha256: String? = nil
    ) {
        self.path = path
        self.sha256 = sha256
        self.virtualSize = virtualSize
        self.osType = osType
        self.generation = generation
        self.sourceVersion = sourceVersion
        self.sourceReference = sourceReference
        self.sourceSha256 = sourceSha256
    }
}

/// What one distribute target produced (a run output).
public struct DistributionOutcome: Sendable {
    public var runOutputName: String
    public var kind: Distributor.Kind
    public var artifactId: String?
    public var artifactUri: String?
    public var error: String?
    public var seconds: Double
    public var succeeded: Bool { error == nil }
}

/// A problem with a distribute target found before any VM starts (at create).
public struct DistributionProblem: Sendable {
    public var code: ErrorCode
    public var path: JSONPath
    public var message: String
}

/// Sends a captured image everywhere `distribute[]` says, targets and regions in parallel.
public struct Distribution: Sendable {
    public var database: any ResourceStore
    public var paths: KilnPaths
    public var regions: RegionMap
    public var logger: Logger

    public init(database: any ResourceStore, paths: KilnPaths, regions: RegionMap, logger: Logger = Logger(label: "kiln.distribute")) {
        self.database = database
        self.paths = paths
        self.regions = regions
        self.logger = logger
    }

    /// Who and what an artifact came from, recorded with it.
    public struct Provenance: Sendable {
        public var templateId: String
        public var runId: String
        public var stagingDirectory: String
        public init(templateId: String, runId: String, stagingDirectory: String) {
            self.templateId = templateId
            self.runId = runId
            self.stagingDirectory = stagingDirectory
        }
    }

    // MARK: Checks at create

    /// Everything about the targets that can be known before a build: regions allowed, gallery definitions
    /// present (and matching the source when it is known), local VHD targets.
    public func preflight(_ template: ImageTemplate, source: (osType: OSType, generation: HyperVGeneration)?) async -> [DistributionProblem] {
        var problems: [DistributionProblem] = []
        for (i, d) in template.properties.distribute.enumerated() {
            let p = JSONPath.root / "properties" / "distribute" / i
            switch d {
            case .managedImage(let m):
                do { _ = try regions.directory(for: m.location) } catch {
                    problems.append(DistributionProblem(code: .badDistributeType, path: p / "location", message: error.description))
                }
            case .sharedImage(let s):
                for (j, r) in s.targetRegions.enumerated() {
                    do { _ = try regions.directory(for: r.name) } catch {
                        problems.append(
                            DistributionProblem(code: .badSharedImageDistribute, path: p / "targetRegions" / j / "name", message: error.description))
                    }
                }
                let (defId, _) = Self.splitGalleryId(s.galleryImageId)
                guard let def = try? await database.galleryDefinition(id: defId) else {
                    problems.append(DistributionProblem(code: .badSharedImageDistribute, path: p / "galleryImageId", message: Self.missingDefinition(defId)))
                    continue
                }
                if let source, let m = Self.mismatch(def, osType: source.osType, generation: source.generation) {
                    problems.append(DistributionProblem(code: .badSharedImageDistribute, path: p / "galleryImageId", message: m))
                }
            case .vhd(let v):
                if let uri = v.uri, !uri.isEmpty {
                    if case .failure(let e) = Self.vhdPath(uri) {
                        problems.append(DistributionProblem(code: .badDistributeType, path: p / "uri", message: e.description))
                    }
                }
            }
        }
        return problems
    }

    static func missingDefinition(_ id: String) -> String {
        "the gallery image definition \(id) does not exist; create it first with\n  kiln gallery create-definition \(id) --publisher PUBLISHER --offer OFFER --sku SKU --os-type Linux --generation V2\nor from the repository's galleries/*.yaml"
    }

    static func mismatch(_ def: GalleryDefinitionRecord, osType: OSType, generation: HyperVGeneration) -> String? {
        if def.osType != osType {
            return "the gallery image definition \(def.id) is for \(def.osType.rawValue) images, and this image is \(osType.rawValue)"
        }
        if def.hyperVGeneration != generation {
            return
                "the gallery image definition \(def.id) is for hyperVGeneration \(def.hyperVGeneration.rawValue) images, and this image is \(generation.rawValue)"
        }
        return nil
    }

    /// `.../images/d` → (d's id, nil); `.../images/d/versions/1.2.3` → (d's id, "1.2.3").
    static func splitGalleryId(_ id: String) -> (definition: String, version: String?) {
        let parts = id.split(separator: "/", omittingEmptySubsequences: false)
        if parts.count >= 2, parts[parts.count - 2].lowercased() == "versions" {
            return (parts.dropLast(2).joined(separator: "/"), String(parts.last!))
        }
        return (id, nil)
    }

    /// A VHD `uri`: a local path or `file://` URI; https is not supported yet.
    static func vhdPath(_ uri: String) -> Result<String, PathError> {
        let lower = uri.lowercased()
        if lower.hasPrefix("https://") || lower.hasPrefix("http://") {
            return .failure(PathError(description: "\(uri): only local VHD targets (a path or a file:// URI) are supported yet"))
        }
        if lower.hasPrefix("file://") {
            guard let u = URL(string: uri), u.path.hasPrefix("/") else {
                return .failure(PathError(description: "\(uri): a file:// URI needs an absolute path"))
            }
            return .success(u.path)
        }
        guard uri.hasPrefix("/") else { return .failure(PathError(description: "\(uri): a VHD path must be absolute (or a file:// URI)")) }
        guard !uri.split(separator: "/").contains("..") else { return .failure(PathError(description: "\(uri): '..' is not allowed in a VHD path")) }
        return .success(uri)
    }

    struct PathError: Error, CustomStringConvertible { var description: String }

    // MARK: Distribute

    /// Distributes to every target in parallel; each target's outcome is independent of the others'.
    public func distribute(
        _ image: CapturedImage, template: ImageTemplate, provenance: Provenance,
        progress: @escaping @Sendable (String) -> Void
    ) async -> [DistributionOutcome] {
        await withTaskGroup(of: (Int, DistributionOutcome).self) { group in
            for (i, d) in template.properties.distribute.enumerated() {
                group.addTask {
                    let start = ContinuousClock.now
                    var outcome = DistributionOutcome(runOutputName: d.runOutputName, kind: d.kind, seconds: 0)
                    do {
                        switch d {
                        case .managedImage(let m):
                            outcome.artifactId = try await managedImage(m, image: image, template: template, provenance: provenance, progress: progress)
                        case .sharedImage(let s):
                            outcome.artifactId = try await sharedImage(s, image: image, template: template, provenance: provenance, progress: progress)
                        case .vhd(let v):
                            outcome.artifactUri = try await vhd(v, image: image, provenance: provenance, progress: progress)
                        }
                    } catch {
                        outcome.error = "\(error)"
                        progress("\(d.runOutputName): failed: \(error)")
                    }
                    let e = ContinuousClock.now - start
                    outcome.seconds = e.inSeconds
                    if outcome.succeeded { progress("\(d.runOutputName): done in \(String(format: "%.1f", outcome.seconds)) s") }
                    return (i, outcome)
                }
            }
            var all: [(Int, DistributionOutcome)] = []
            for await r in group { all.append(r) }
            return all.sorted { $0.0 < $1.0 }.map(\.1)
        }
    }

    public struct DistributionError: Error, Sendable, CustomStringConvertible {
        public var code: ErrorCode
        public var description: String
    }

    func metadata(_ image: CapturedImage, provenance: Provenance, tags: [String: String]) -> [String: String] {
        var m: [String: String] = [
            "sourceTemplate": provenance.templateId, "runId": provenance.runId, "sourceImage": image.sourceReference,
            "sha256": image.sha256, "createdAt": ISO8601DateFormatter().string(from: Date())
        ]
        if let v = image.sourceVersion { m["sourceVersion"] = v }
        if let s = image.sourceSha256 { m["sourceSha256"] = s }
        if !tags.isEmpty, let data = try? JSONEncoder.sortedKeys.encode(tags) { m["tags"] = String(decoding: data, as: UTF8.self) }
        return m
    }

    func managedImage(
        _ m: ManagedImageDistributor, image: CapturedImage, template: ImageTemplate, provenance: Provenance,
        progress: @escaping @Sendable (String) -> Void
    ) async throws -> String {
        guard let id = ResourceID.parse(m.imageId) else {
            throw DistributionError(code: .badDistributeType, description: "\(m.imageId) is not a managed image id")
        }
        let regionDir = try regions.directory(for: m.location)
        let dir = [regionDir, "images", id.resourceGroup, id.name].reduce("") { ($0 as NSString).appendingPathComponent($1) }
        progress("\(m.runOutputName): managed image \(id.name) in \(RegionMap.normalize(m.location))")
        let disk = (dir as NSString).appendingPathComponent("disk.qcow2")
        let how = try await DiskPlacement.place(image.path, at: disk)
        var meta = metadata(image, provenance: provenance, tags: m.artifactTags)
        meta["placement"] = how
        // Distributing to an existing managed image replaces it; the previous one's metadata is kept.
        if let previous = try await database.managedImage(id: m.imageId) {
            var history: [[String: String]] = []
            if let h = previous.metadata["history"], let old = try? JSONDecoder().decode([[String: String]].self, from: Data(h.utf8)) { history = old }
            var prev = previous.metadata
            prev["history"] = nil
            history.append(prev)
            meta["history"] = String(decoding: try JSONEncoder.sortedKeys.encode(history), as: UTF8.self)
        }
        let record = ManagedImageRecord(
            id: m.imageId, location: RegionMap.normalize(m.location), osType: image.osType, hyperVGeneration: image.generation,
            path: paths.relative(disk), sha256: image.sha256, virtualSize: image.virtualSize, createdAt: Date(), metadata: meta)
        try await database.putManagedImage(record)
        try JSONEncoder.sortedKeys.encode(meta).write(to: URL(fileURLWithPath: (dir as NSString).appendingPathComponent("metadata.json")))
        return m.imageId
    }

    /// Where a SharedImage target goes: the definition, its gallery and name, the regions and their directories.
    struct GalleryTarget: Sendable {
        var definition: GalleryDefinitionRecord
        var gallery: String
        var definitionName: String
        var explicitVersion: ImageVersion?
        var regionNames: [String]
        var regionDirs: [String]
        var primaryRegion: String

        func versionDirectory(_ i: Int, _ version: ImageVersion) -> String {
            Distribution.versionDirectory(regionDirs[i], gallery: gallery, definition: definitionName, version: version)
        }
    }

    func sharedImage(
        _ s: SharedImageDistributor, image: CapturedImage, template: ImageTemplate, provenance: Provenance,
        progress: @escaping @Sendable (String) -> Void
    ) async throws -> String {
        let target = try await galleryTarget(s, image: image)
        let def = target.definition
        var (version, record) = try await reserveVersion(target, s, image: image, template: template, provenance: provenance)
        // Reserved with excludeFromLatest, so `latest` never resolves to a version whose files are not there yet.
        progress("\(s.runOutputName): gallery version \(target.definitionName) \(version) to \(target.regionNames.joined(separator: ", "))")
        do {
            let placed = try await placeReplicas(target, version: version, s, image: image, progress: progress)
            record.metadata["regions"] = String(decoding: try JSONEncoder.sortedKeys.encode(placed), as: UTF8.self)
            record.metadata["state"] = ProvisioningState.succeeded.rawValue
            record.excludeFromLatest = s.excludeFromLatest
            try await database.replaceGalleryVersion(record)
            for (i, name) in target.regionNames.enumerated() where placed[name]?["path"] != nil {
                let dir = target.versionDirectory(i, version)
                try JSONEncoder.sortedKeys.encode(record.metadata).write(to: URL(fileURLWithPath: (dir as NSString).appendingPathComponent("metadata.json")))
            }
        } catch {
            // Nothing half-made stays behind: the reservation and any copies go.
            for i in target.regionNames.indices { try? FileManager.default.removeItem(atPath: target.versionDirectory(i, version)) }
            _ = try? await database.removeGalleryVersion(definitionId: def.id, version: version)
            throw error
        }
        return "\(def.id)/versions/\(version)"
    }

    /// The definition the target names (it must exist and match the image), and the regions' directories.
    func galleryTarget(_ s: SharedImageDistributor, image: CapturedImage) async throws -> GalleryTarget {
        let (defId, explicit) = Self.splitGalleryId(s.galleryImageId)
        guard let def = try await database.galleryDefinition(id: defId) else {
            throw DistributionError(code: .badSharedImageDistribute, description: Self.missingDefinition(defId))
        }
        if let m = Self.mismatch(def, osType: image.osType, generation: image.generation) {
            throw DistributionError(code: .badSharedImageDistribute, description: m)
        }
        guard let defRid = ResourceID.parse(def.id), defRid.segments.count >= 2 else {
            throw DistributionError(code: .badSharedImageDistribute, description: "\(def.id) is not a gallery image id")
        }
        var explicitVersion: ImageVersion?
        if let explicit {
            guard let v = ImageVersion(explicit) else {
                throw DistributionError(code: .badSharedImageDistribute, description: "\(explicit) is not a version (x.y.z)")
            }
            explicitVersion = v
        }
        let regionNames = s.targetRegions.map { RegionMap.normalize($0.name) }
        let regionDirs = try regionNames.map { name throws in try regions.directory(for: name) }
        guard let primaryRegion = regionNames.first else {
            throw DistributionError(code: .badSharedImageDistribute, description: "no target regions")
        }
        return GalleryTarget(
            definition: def, gallery: defRid.segments[0].name, definitionName: defRid.segments[1].name, explicitVersion: explicitVersion,
            regionNames: regionNames, regionDirs: regionDirs, primaryRegion: primaryRegion)
    }

    /// Reserves the version first (a concurrent run choosing Latest gets the next one); the files come after.
    func reserveVersion(
        _ target: GalleryTarget, _ s: SharedImageDistributor, image: CapturedImage, template: ImageTemplate,
        provenance: Provenance
    ) async throws -> (ImageVersion, GalleryVersionRecord) {
        let def = target.definition
        for _ in 0..<5 {
            let existing = try await database.galleryVersions(definitionId: def.id).map(\.version)
            let v: ImageVersion
            do {
                v = try GalleryVersioning.choose(
                    explicit: target.explicitVersion, versioning: s.versioning, existing: existing, sourceVersion: image.sourceVersion)
            } catch {
                throw DistributionError(code: .badSharedImageDistribute, description: "\(def.id): \(error.description)")
            }
            var meta = metadata(image, provenance: provenance, tags: s.artifactTags)
            meta["replicationMode"] = s.replicationMode.rawValue
            meta["state"] = ProvisioningState.creating.rawValue
            var counts: [String: Int] = [:]
            for r in s.targetRegions { counts[RegionMap.normalize(r.name)] = r.replicaCount }
            let disk = (target.versionDirectory(0, v) as NSString).appendingPathComponent("disk.qcow2")
            let rec = GalleryVersionRecord(
                definitionId: def.id, version: v, excludeFromLatest: true, path: paths.relative(disk),
                sha256: image.sha256, virtualSize: image.virtualSize, regions: counts, metadata: meta)
            if try await reserve(rec) { return (v, rec) }
            if target.explicitVersion != nil {
                throw DistributionError(
                    code: .badSharedImageDistribute, description: "gallery image version \(def.id)/versions/\(v) exists already; versions are never overwritten"
                )
            }
        }
        throw DistributionError(code: .badSharedImageDistribute, description: "could not reserve a new version of \(def.id) (concurrent distributions)")
    }

    /// Places the image and its replicas in every region. Regions on one filesystem share one placement: the
    /// first region of each filesystem places the image (a link or one copy), the others link to it.
    /// Filesystems proceed in parallel. Returns, per region, what was placed where.
    func placeReplicas(
        _ target: GalleryTarget, version: ImageVersion, _ s: SharedImageDistributor, image: CapturedImage,
        progress: @escaping @Sendable (String) -> Void
    ) async throws -> [String: [String: String]] {
        var groups: [UInt64: [Int]] = [:]
        for i in target.regionDirs.indices { groups[Self.device(of: target.regionDirs[i]), default: []].append(i) }
        var placed: [String: [String: String]] = [:]
        try await withThrowingTaskGroup(of: [(String, [String: String])].self) { outer in
            for indices in groups.values {
                outer.addTask {
                    var results: [(String, [String: String])] = []
                    var firstDisk: String?
                    for i in indices {
                        let r = try await Self.placeRegion(i, target: target, version: version, s, source: firstDisk ?? image.path, progress: progress)
                        if let p = r.1["path"], firstDisk == nil { firstDisk = p }
                        results.append(r)
                    }
                    return results
                }
            }
            for try await batch in outer { for (name, info) in batch { placed[name] = info } }
        }
        return placed
    }

    /// One region's copy (or, with shallow replication, a reference to the primary region's).
    static func placeRegion(
        _ i: Int, target: GalleryTarget, version: ImageVersion, _ s: SharedImageDistributor, source: String,
        progress: @Sendable (String) -> Void
    ) async throws -> (String, [String: String]) {
        let region = s.targetRegions[i]
        let name = target.regionNames[i]
        var info: [String: String] = ["replicaCount": String(region.replicaCount), "storageAccountType": region.storageAccountType.rawValue]
        if s.replicationMode == .shallow && i > 0 {
            // Shallow replication: one copy, in the first region; the others reference it.
            info["reference"] = name == target.primaryRegion ? "" : target.primaryRegion
            return (name, info)
        }
        let dir = target.versionDirectory(i, version)
        let disk = (dir as NSString).appendingPathComponent("disk.qcow2")
        info["placement"] = try await DiskPlacement.place(source, at: disk)
        var how: [String] = []
        for n in stride(from: 2, through: max(1, region.replicaCount), by: 1) {
            how.append(try await DiskPlacement.replica(of: disk, at: (dir as NSString).appendingPathComponent("replica-\(n).qcow2")))
        }
        info["path"] = disk
        if !how.isEmpty { info["replicas"] = how.joined(separator: ",") }
        progress("\(s.runOutputName): \(name) has its copy (\(region.replicaCount) replica\(region.replicaCount == 1 ? "" : "s"))")
        return (name, info)
    }

    /// The filesystem a directory is on (its nearest existing ancestor's device).
    static func device(of dir: String) -> UInt64 {
        var d = dir
        var st = stat()
        while stat(d, &st) != 0 {
            let parent = (d as NSString).deletingLastPathComponent
            if parent == d || parent.isEmpty { return 0 }
            d = parent
        }
        return UInt64(st.st_dev)
    }

    /// Inserts a version row; false when another distribution took that version first.
    func reserve(_ rec: GalleryVersionRecord) async throws -> Bool {
        do {
            try await database.addGalleryVersion(rec)
            return true
        } catch {
            if case .conflict = error { return false }
            throw error
        }
    }

    static func versionDirectory(_ regionDir: String, gallery: String, definition: String, version: ImageVersion) -> String {
        [regionDir, "galleries", gallery, "images", definition, "versions", version.description].reduce("") { ($0 as NSString).appendingPathComponent($1) }
    }

    func vhd(_ v: VHDDistributor, image: CapturedImage, provenance: Provenance, progress: @escaping @Sendable (String) -> Void) async throws -> String {
        let path: String
        if let uri = v.uri, !uri.isEmpty {
            switch Self.vhdPath(uri) {
            case .success(let p): path = p
            case .failure(let m): throw DistributionError(code: .badDistributeType, description: m.description)
            }
        } else {
            // AIB keeps such a VHD in the staging resource group; it goes when the template is deleted.
            path = [provenance.stagingDirectory, "vhds", provenance.runId, "\(v.runOutputName).vhd"].reduce("") { ($0 as NSString).appendingPathComponent($1) }
        }
        progress("\(v.runOutputName): fixed VHD \(path)")
        let work = (provenance.stagingDirectory as NSString).appendingPathComponent("vhds/.work")
        let (size, secs) = try await VHDExport.export(image.path, virtualSize: image.virtualSize, to: path, workDirectory: work)
        progress("\(v.runOutputName): VHD written (\(size >> 20) MiB virtual) in \(String(format: "%.1f", secs)) s")
        // A VHD has no record of its own: what it was built from travels beside it.
        let meta = metadata(image, provenance: provenance, tags: v.artifactTags)
        try JSONEncoder.sortedKeys.encode(meta).write(to: URL(fileURLWithPath: path + ".kiln.json"))
        return URL(fileURLWithPath: path).absoluteString
    }
}

extension JSONEncoder {
    static var sortedKeys: JSONEncoder {
        let e = JSONEncoder()
        e.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return e
    }
}
