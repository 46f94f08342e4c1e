import Foundation
import KilnTemplates

/// Everything Kiln persists, as async operations: template resources and their runs, the image catalog,
/// managed images and the Compute Gallery. `KilnDatabase` (SQLite, the embedded default) implements it; a
/// PostgreSQL store for several hosts will be the second.
///
/// Every check-then-act (create on a free id, refuse a delete while a run is active, claim a queued run under
/// the parallelism limit) is one operation here, done atomically by the implementation, so several processes
/// sharing a store cannot interleave them. Only KilnCore (and the layers below it that it hands the store to)
/// talks to a store.
public protocol ResourceStore: Sendable {
    // MARK: Templates
    /// Inserts a new template; an id that exists is a conflict (templates are immutable).
    func insertTemplate(_ record: TemplateRecord) async throws(StoreError)
    func template(id: String) async throws(StoreError) -> TemplateRecord?
    /// Templates whose name is `name` (ignoring case), in any subscription and group.
    func templates(named name: String) async throws(StoreError) -> [TemplateRecord]
    /// All templates, optionally of one subscription and resource group (compared ignoring case).
    func templates(subscription: String?, resourceGroup: String?) async throws(StoreError) -> [TemplateRecord]
    @discardableResult
    func updateTemplate(id: String, _ change: @Sendable @escaping (inout TemplateRecord) throws -> Void) async throws(StoreError) -> TemplateRecord
    /// Marks a template Deleting, refused while one of its runs is active.
    @discardableResult
    func beginDeleteTemplate(id: String) async throws(StoreError) -> TemplateRecord
    /// Removes the template and its runs.
    func removeTemplate(id: String) async throws(StoreError)
    /// Every template one GitOps source manages, with its newest run, without the template documents.
    func managedTemplates(by managedBy: String) async throws(StoreError) -> [ManagedTemplateSummary]

    // MARK: Runs
    /// Queues a run; refused while another run of the template is active or the template is not Succeeded.
    func insertRun(_ run: RunRecord) async throws(StoreError)
    func run(id: String) async throws(StoreError) -> RunRecord?
    /// A template's runs, newest first.
    func runs(templateId: String) async throws(StoreError) -> [RunRecord]
    func latestRun(templateId: String) async throws(StoreError) -> RunRecord?
    /// Every run that has not finished.
    func activeRuns() async throws(StoreError) -> [RunRecord]
    /// The unfinished runs of the templates one GitOps source manages.
    func activeRuns(managedBy: String) async throws(StoreError) -> [RunRecord]
    @discardableResult
    func updateRun(id: String, _ change: @Sendable @escaping (inout RunRecord) throws -> Void) async throws(StoreError) -> RunRecord
    /// Applies `claim` to a queued, unowned run (the oldest, or `runId`) if fewer than `parallelism` runs are
    /// being executed; nil when there is none or no slot is free.
    func claimQueuedRun(parallelism: Int, runId: String?, claim: @Sendable @escaping (inout RunRecord) throws -> Void) async throws(StoreError) -> RunRecord?
    /// Runs that ended at or after `date`, oldest first.
    func runsEnded(since date: Date) async throws(StoreError) -> [RunRecord]

    // MARK: Triggers
    /// Adds a trigger; refused when its template has one already or does not exist.
    func insertTrigger(_ trigger: TriggerRecord) async throws(StoreError)
    func trigger(id: String) async throws(StoreError) -> TriggerRecord?
    /// Every trigger, or those of one template.
    func triggers(templateId: String?) async throws(StoreError) -> [TriggerRecord]
    func removeTrigger(id: String) async throws(StoreError)
    /// Sets the status (and the baseline, when given) without firing.
    func updateTrigger(id: String, status: TriggerStatusCode, message: String, baseline: BuiltSource??) async throws(StoreError)
    /// Queues `run` and moves the baseline from `expected` to `seen` in one transaction; false when the
    /// baseline is no longer `expected` (fired elsewhere first).
    func fireTrigger(id: String, expected: BuiltSource?, seen: BuiltSource, run: RunRecord, message: String) async throws(StoreError) -> Bool

    // MARK: Run images
    func addRunImage(_ image: RunImageRecord) async throws(StoreError)
    /// Every run image, newest first.
    func runImages() async throws(StoreError) -> [RunImageRecord]
    /// Images captured with these build inputs, newest first.
    func runImages(buildInputsKey: String) async throws(StoreError) -> [RunImageRecord]
    /// A template's images, newest first.
    func runImages(templateKey: String) async throws(StoreError) -> [RunImageRecord]
    func removeRunImage(runId: String) async throws(StoreError)

    // MARK: REST API operations
    func insertOperation(_ operation: OperationRecord) async throws(StoreError)
    func operation(id: String) async throws(StoreError) -> OperationRecord?
    /// Ends an operation in progress; one already ended keeps its first answer.
    @discardableResult
    func finishOperation(id: String, status: OperationRecord.Status, errorCode: String?, errorMessage: String?) async throws(StoreError) -> OperationRecord
    /// Removes operations that ended before `date`; how many.
    @discardableResult
    func pruneOperations(endedBefore date: Date) async throws(StoreError) -> Int

    // MARK: Health
    /// A trivial read: the store answers.
    func ping() async throws(StoreError)
    /// Templates and runs by state, and the queue depth, read together.
    func counts() async throws(StoreError) -> StoreCounts

    // MARK: Catalog
    func addImage(_ image: CatalogImage) async throws(StoreError)
    /// Images, newest version first; nil filters match everything.
    func images(publisher: String?, offer: String?, sku: String?) async throws(StoreError) -> [CatalogImage]
    func image(publisher: String, offer: String, sku: String, version: ImageVersion) async throws(StoreError) -> CatalogImage?
    @discardableResult
    func removeImage(publisher: String, offer: String, sku: String, version: ImageVersion) async throws(StoreError) -> CatalogImage

    // MARK: Managed images
    func putManagedImage(_ image: ManagedImageRecord) async throws(StoreError)
    func managedImage(id: String) async throws(StoreError) -> ManagedImageRecord?
    func managedImages() async throws(StoreError) -> [ManagedImageRecord]

    // MARK: Compute Gallery
    func putGalleryDefinition(_ d: GalleryDefinitionRecord) async throws(StoreError)
    func galleryDefinition(id: String) async throws(StoreError) -> GalleryDefinitionRecord?
    func galleryDefinitions() async throws(StoreError) -> [GalleryDefinitionRecord]
    func addGalleryVersion(_ v: GalleryVersionRecord) async throws(StoreError)
    func galleryVersions(definitionId: String) async throws(StoreError) -> [GalleryVersionRecord]
    func replaceGalleryVersion(_ v: GalleryVersionRecord) async throws(StoreError)
    @discardableResult
    func removeGalleryVersion(definitionId: String, version: ImageVersion) async throws(StoreError) -> GalleryVersionRecord
}

extension ResourceStore {
    public func templates() async throws(StoreError) -> [TemplateRecord] { try await templates(subscription: nil, resourceGroup: nil) }
    public func images() async throws(StoreError) -> [CatalogImage] { try await images(publisher: nil, offer: nil, sku: nil) }
    public func claimQueuedRun(parallelism: Int, claim: @Sendable @escaping (inout RunRecord) throws -> Void) async throws(StoreError) -> RunRecord? {
        try await claimQueuedRun(parallelism: parallelism, runId: nil, claim: claim)
    }
}

extension KilnDatabase: ResourceStore {}
