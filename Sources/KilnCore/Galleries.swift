import Foundation
import KilnStore
import KilnTemplates

extension KilnCore {
    /// What `ensureGalleryDefinition` did.
    public enum DefinitionChange: String, Sendable { case created, updated, unchanged }

    /// Creates a gallery image definition, or accepts it again when it exists with the same identity (OS type,
    /// generation, publisher/offer/sku cannot change, as in Azure; description and end of life may).
    /// Used by `kiln gallery create-definition` and by the reconciler for `galleries/` files.
    @discardableResult
    public func ensureGalleryDefinition(_ d: GalleryImageDefinition) async throws(CoreError) -> (GalleryDefinitionRecord, DefinitionChange) {
        let record = GalleryDefinitionRecord(d)
        do {
            guard let existing = try await store.galleryDefinition(id: d.id) else {
                try await store.putGalleryDefinition(record)
                return (record, .created)
            }
            let same =
                existing.osType == record.osType && existing.hyperVGeneration == record.hyperVGeneration
                && existing.publisher == record.publisher && existing.offer == record.offer && existing.sku == record.sku
            guard same else {
                throw CoreError.conflict(
                    "\(d.id) exists with other properties (\(existing.osType.rawValue) \(existing.hyperVGeneration.rawValue) \(existing.publisher)/\(existing.offer)/\(existing.sku)); its OS type, generation and identifier cannot change"
                )
            }
            guard existing.description != record.description || existing.endOfLifeDate != record.endOfLifeDate else { return (existing, .unchanged) }
            var updated = existing
            updated.description = record.description
            updated.endOfLifeDate = record.endOfLifeDate
            try await store.putGalleryDefinition(updated)
            return (updated, .updated)
        } catch let e as CoreError {
            throw e
        } catch let e as StoreError {
            throw .from(e)
        } catch {
            throw .io("\(error)")
        }
    }
}
