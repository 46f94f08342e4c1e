import Foundation
import KilnBuild
import KilnStore
import KilnTemplates

/// The reads and small bookkeeping writes the front ends need (GitOps, the server, the CLI): the core is the
/// only door to the store, so each is an operation here, with the store's errors turned into `CoreError`.
extension KilnCore {
    /// Runs a store operation, mapping its error.
    func stored<T>(_ body: () async throws(StoreError) -> T) async throws(CoreError) -> T {
        do { return try await body() } catch { throw .from(error) }
    }

    // MARK: Templates and runs

    /// The template record with this id, or nil (no decoding of the template document).
    public func templateRecord(id: String) async throws(CoreError) -> TemplateRecord? {
        try await stored { () async throws(StoreError) in try await store.template(id: id) }
    }

    /// Every template one GitOps source manages, with its newest run.
    public func managedTemplates(by managedBy: String) async throws(CoreError) -> [ManagedTemplateSummary] {
        try await stored { () async throws(StoreError) in try await store.managedTemplates(by: managedBy) }
    }

    /// Points a template at the file (and commit) it now comes from: a file renamed with the same content.
    @discardableResult
    public func rebind(templateId: String, file: String, commit: String) async throws(CoreError) -> TemplateRecord {
        try await stored { () async throws(StoreError) in
            try await store.updateTemplate(id: templateId) { r in
                r.sourceFile = file
                r.sourceCommit = commit
            }
        }
    }

    public func latestRun(templateId: String) async throws(CoreError) -> RunRecord? {
        try await stored { () async throws(StoreError) in try await store.latestRun(templateId: templateId) }
    }

    /// The run with this id, or nil.
    public func runRecord(id: String) async throws(CoreError) -> RunRecord? {
        try await stored { () async throws(StoreError) in try await store.run(id: id) }
    }

    /// Every unfinished run; with `managedBy`, only those of one GitOps source's templates.
    public func activeRuns(managedBy: String? = nil) async throws(CoreError) -> [RunRecord] {
        try await stored { () async throws(StoreError) in
            if let managedBy { return try await store.activeRuns(managedBy: managedBy) }
            return try await store.activeRuns()
        }
    }

    // MARK: Health and metrics

    /// The store answers (for `/readyz`).
    public func ping() async throws(CoreError) {
        try await stored { () async throws(StoreError) in try await store.ping() }
    }

    public func counts() async throws(CoreError) -> StoreCounts {
        try await stored { () async throws(StoreError) in try await store.counts() }
    }

    public func runsEnded(since date: Date) async throws(CoreError) -> [RunRecord] {
        try await stored { () async throws(StoreError) in try await store.runsEnded(since: date) }
    }

    // MARK: Images and galleries

    /// The image catalog: bootstrap, import, list, delete.
    public var images: ImageService { ImageService(paths: paths, database: store, logger: logger, archiveFetcher: HTTPArchiveFetcher()) }

    public func managedImages() async throws(CoreError) -> [ManagedImageRecord] {
        try await stored { () async throws(StoreError) in try await store.managedImages() }
    }

    public func managedImage(id: String) async throws(CoreError) -> ManagedImageRecord? {
        try await stored { () async throws(StoreError) in try await store.managedImage(id: id) }
    }

    public func galleryDefinitions() async throws(CoreError) -> [GalleryDefinitionRecord] {
        try await stored { () async throws(StoreError) in try await store.galleryDefinitions() }
    }

    public func galleryDefinition(id: String) async throws(CoreError) -> GalleryDefinitionRecord? {
        try await stored { () async throws(StoreError) in try await store.galleryDefinition(id: id) }
    }

    public func galleryVersions(definitionId: String) async throws(CoreError) -> [GalleryVersionRecord] {
        try await stored { () async throws(StoreError) in try await store.galleryVersions(definitionId: definitionId) }
    }

    @discardableResult
    public func removeGalleryVersion(definitionId: String, version: ImageVersion) async throws(CoreError) -> GalleryVersionRecord {
        try await stored { () async throws(StoreError) in try await store.removeGalleryVersion(definitionId: definitionId, version: version) }
    }

    /// What `source` resolves to now, or nil when it does not resolve (the run that tries it says why).
    public func currentSource(of source: ImageSource) async -> BuiltSource? {
        guard let resolved = try? await SourceResolver(database: store, paths: paths).resolve(source) else { return nil }
        return BuiltSource(reference: resolved.reference, sha256: resolved.sha256)
    }
}
