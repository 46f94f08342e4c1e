import Foundation
import KilnStore
import KilnSystem
import KilnTemplates
import Logging

/// The local image catalog: Kiln's Marketplace. Images are qcow2 files under `<data>/images/` with a row
/// each in the store, keyed publisher/offer/sku/version.
public struct ImageService: Sendable {
    public var paths: KilnPaths
    public var database: any ResourceStore
    public var logger: Logger
    /// Reads APT repositories over http(s) for `refreshDebian12` (file: repositories need none).
    public var archiveFetcher: (any ArchiveFetching)?

    public init(
        paths: KilnPaths, database: any ResourceStore, logger: Logger = Logger(label: "kiln.images"), archiveFetcher: (any ArchiveFetching)? = nil
    ) {
        self.paths = paths
        self.database = database
        self.logger = logger
        self.archiveFetcher = archiveFetcher
    }

    public enum ImageError: Error, Sendable, CustomStringConvertible {
        case exists(String)
        case notFound(String)
        case invalid(String)
        case bootstrap(DebianBootstrap.BootstrapError)
        case archive(ArchiveError)
        case command(CommandError)
        case store(StoreError)
        case io(String)

        public var description: String {
            switch self {
            case .exists(let m), .notFound(let m), .invalid(let m), .io(let m): return m
            case .bootstrap(let e): return e.description
            case .archive(let e): return e.description
            case .command(let e): return e.description
            case .store(let e): return e.description
            }
        }
    }

    func diskPath(publisher: String, offer: String, sku: String, version: ImageVersion) -> String {
        let safe = { (s: String) in s.map { $0.isLetter || $0.isNumber || "-_.".contains($0) ? $0 : "_" } }
        return "images/\(String(safe(publisher)))/\(String(safe(offer)))/\(String(safe(sku)))/\(version)/disk.qcow2"
    }

    // MARK: Bootstrap

    public struct BootstrapOutcome: Sendable {
        public var image: CatalogImage
        /// The disk came from the bootstrap cache (same inputs as an earlier build).
        public var reusedCache: Bool
        /// The catalog already held this build.
        public var alreadyInCatalog: Bool
    }

    /// `kiln images bootstrap debian-12`: builds (or reuses) the disk and records it in the catalog as
    /// Debian / debian-12 / 12 (Gen1) or 12-gen2 (Gen2), version from the build date (`YYYY.MMDD.N`).
    public func bootstrapDebian12(
        generation: HyperVGeneration, version requested: ImageVersion?, force: Bool, mirror: String? = nil,
        progress: @escaping @Sendable (String) -> Void
    ) async throws(ImageError) -> BootstrapOutcome {
        var b = DebianBootstrap(cacheDir: paths.cacheDir, logger: logger, progress: progress)
        if let mirror { b.mirror = mirror }
        let result: DebianBootstrap.Result
        do { result = try await b.build(generation: generation, force: force) } catch { throw .bootstrap(error) }
        return try await registerDebian(result, generation: generation, version: requested, sources: nil)
    }

    /// Records a bootstrapped or refreshed disk in the catalog, unless the catalog holds this disk already.
    func registerDebian(
        _ result: DebianBootstrap.Result, generation: HyperVGeneration, version requested: ImageVersion?, sources: DebianSources?
    ) async throws(ImageError) -> BootstrapOutcome {
        // Leave a kernel for the KVM probe.
        let probe = AcceleratorProbe(cacheDir: paths.cacheDir)
        try? FileManager.default.ensureDirectory((probe.probeKernelPath as NSString).deletingLastPathComponent)
        try? DiskTool.linkOrCopy(result.kernel, to: probe.probeKernelPath)

        let sku = Self.debianSKU(generation)
        let sha: String
        do { sha = try DiskTool.sha256(of: result.disk) } catch { throw .io("cannot read \(result.disk): \(error)") }
        let existing: [CatalogImage]
        do { existing = try await database.images(publisher: "Debian", offer: "debian-12", sku: sku) } catch { throw .store(error) }
        if requested == nil, let same = existing.first(where: { $0.sha256 == sha }) {
            return BootstrapOutcome(image: same, reusedCache: result.reused, alreadyInCatalog: true)
        }
        let version: ImageVersion
        if let requested {
            guard !existing.contains(where: { $0.version == requested }) else {
                throw .exists("Debian:debian-12:\(sku):\(requested) is in the catalog already; delete it first or choose another --version")
            }
            version = requested
        } else {
            version = Self.dateVersion(sources == nil ? result.builtAt : Date(), taken: Set(existing.map(\.version)))
        }
        var provenance = Provenance(kind: .bootstrapped)
        provenance.suite = DebianRecipe.suite
        provenance.mirror = result.mirror
        provenance.packages = result.packages
        provenance.recipe = DebianRecipe.revision
        provenance.cacheKey = result.cacheKey
        provenance.packageDigest = result.packageDigest
        if let sources {
            provenance.archiveDigest = result.archive?.digest
            provenance.extraSources = sources.extra.isEmpty ? nil : sources.extra.map(\.description)
            provenance.include = sources.include.isEmpty ? nil : sources.include
        }
        let image = try await register(
            disk: result.disk, publisher: "Debian", offer: "debian-12", sku: sku, version: version,
            osType: .linux, generation: generation, sha256: sha, createdAt: result.builtAt, provenance: provenance)
        // The installed package list beside the disk: what `kiln images refresh` compares and reports.
        let list = (paths.absolute(image.path) as NSString).deletingLastPathComponent + "/packages.txt"
        try? Data((result.installed.joined(separator: "\n") + "\n").utf8).write(to: URL(fileURLWithPath: list))
        return BootstrapOutcome(image: image, reusedCache: result.reused, alreadyInCatalog: false)
    }

    static func debianSKU(_ generation: HyperVGeneration) -> String { generation == .v1 ? "12" : "12-gen2" }

    /// `YYYY.MMDD.N`: the build date, N counting builds of the same day.
    static func dateVersion(_ date: Date, taken: Set<ImageVersion>) -> ImageVersion {
        var cal = Calendar(identifier: .gregorian)
        cal.timeZone = TimeZone(identifier: "UTC")!
        let c = cal.dateComponents([.year, .month, .day], from: date)
        var v = ImageVersion(c.year!, c.month! * 100 + c.day!, 0)
        while taken.contains(v) { v.patch += 1 }
        return v
    }

    /// Links or copies `disk` (qcow2) into the catalog and records it.
    func register(
        disk: String, publisher: String, offer: String, sku: String, version: ImageVersion, osType: OSType,
        generation: HyperVGeneration, sha256: String, createdAt: Date, provenance: Provenance
    ) async throws(ImageError) -> CatalogImage {
        let rel = diskPath(publisher: publisher, offer: offer, sku: sku, version: version)
        let abs = paths.absolute(rel)
        let info: DiskInfo
        do {
            try FileManager.default.ensureDirectory((abs as NSString).deletingLastPathComponent)
            try DiskTool.linkOrCopy(disk, to: abs)
            info = try await DiskTool.info(abs, format: "qcow2")
        } catch let e as CommandError {
            throw .command(e)
        } catch {
            throw .io("cannot place the image at \(abs): \(error)")
        }
        // Whole seconds: what the store and ISO 8601 keep, so a record read back equals the one returned.
        let created = Date(timeIntervalSince1970: createdAt.timeIntervalSince1970.rounded(.down))
        let image = CatalogImage(
            publisher: publisher, offer: offer, sku: sku, version: version, osType: osType, hyperVGeneration: generation,
            virtualSize: info.virtualSize, fileSize: DiskTool.allocatedSize(abs), sha256: sha256, path: rel,
            createdAt: created, provenance: provenance)
        do {
            try await database.addImage(image)
        } catch {
            try? FileManager.default.removeItem(atPath: abs)
            if case .conflict = error { throw .exists("\(image.urn) is in the catalog already") }
            throw .store(error)
        }
        return image
    }

    // MARK: Import

    /// `kiln images import FILE`: qcow2, raw or VHD (fixed or dynamic), stored as qcow2.
    public func importImage(
        file: String, publisher: String, offer: String, sku: String, version: ImageVersion,
        osType: OSType, generation: HyperVGeneration
    ) async throws(ImageError) -> CatalogImage {
        guard FileManager.default.isReadableFile(atPath: file) else { throw .notFound("cannot read \(file)") }
        for (what, value) in [("publisher", publisher), ("offer", offer), ("sku", sku)] {
            guard !value.isEmpty, value.allSatisfy({ $0.isLetter || $0.isNumber || "-_.".contains($0) }) else {
                throw .invalid("\(what) '\(value)' must be letters, digits, '-', '_' or '.'")
            }
        }
        let existing: CatalogImage?
        do { existing = try await database.image(publisher: publisher, offer: offer, sku: sku, version: version) } catch { throw .store(error) }
        if existing != nil { throw .exists("\(publisher):\(offer):\(sku):\(version) is in the catalog already") }
        let format: String
        do { format = try await DiskTool.detectFormat(file) } catch { throw .command(error) }
        guard ["qcow2", "raw", "vpc", "vhdx", "vmdk"].contains(format) else {
            throw .invalid("\(file) is a \(format) image; Kiln imports qcow2, raw and VHD")
        }
        let tmp = paths.absolute("images/.import-\(UUID().uuidString).qcow2")
        defer { try? FileManager.default.removeItem(atPath: tmp) }
        let originalSHA: String
        let sha: String
        do {
            try FileManager.default.ensureDirectory(paths.images)
            try await DiskTool.convert(file, from: format, to: tmp, format: "qcow2")
            originalSHA = try DiskTool.sha256(of: file)
            sha = try DiskTool.sha256(of: tmp)
        } catch let e as CommandError {
            throw .command(e)
        } catch {
            throw .io("\(error)")
        }
        var provenance = Provenance(kind: .imported)
        provenance.importedFrom = (file as NSString).standardizingPath
        provenance.originalFormat = format
        provenance.originalSHA256 = originalSHA
        return try await register(
            disk: tmp, publisher: publisher, offer: offer, sku: sku, version: version, osType: osType,
            generation: generation, sha256: sha, createdAt: Date(), provenance: provenance)
    }

    // MARK: List, show, delete

    public func list() async throws(ImageError) -> [CatalogImage] {
        do { return try await database.images() } catch { throw .store(error) }
    }

    /// Finds an image by URN `publisher:offer:sku:version` (`latest` allowed).
    public func find(urn: String) async throws(ImageError) -> CatalogImage {
        let parts = urn.split(separator: ":", omittingEmptySubsequences: false).map(String.init)
        guard parts.count == 4 else { throw .invalid("'\(urn)' is not publisher:offer:sku:version") }
        let all: [CatalogImage]
        do { all = try await database.images(publisher: parts[0], offer: parts[1], sku: parts[2]) } catch { throw .store(error) }
        if parts[3].lowercased() == "latest", let first = all.first { return first }
        if let v = ImageVersion(parts[3]), let hit = all.first(where: { $0.version == v }) { return hit }
        let have = all.map(\.version.description)
        throw .notFound(
            "no image \(urn) in the catalog" + (have.isEmpty ? "" : "; versions of \(parts[0]):\(parts[1]):\(parts[2]): \(have.joined(separator: ", "))"))
    }

    public func delete(urn: String) async throws(ImageError) -> CatalogImage {
        let image = try await find(urn: urn)
        do {
            try await database.removeImage(publisher: image.publisher, offer: image.offer, sku: image.sku, version: image.version)
        } catch { throw .store(error) }
        let abs = paths.absolute(image.path)
        try? FileManager.default.removeItem(atPath: abs)
        // Remove now-empty version directory.
        try? FileManager.default.removeItem(atPath: (abs as NSString).deletingLastPathComponent)
        return image
    }
}
