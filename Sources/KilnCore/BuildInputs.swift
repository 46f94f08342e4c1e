// What decides the content of a run's image, as one key: equal keys, equal images (so one can be reused).
import Crypto
import Foundation
import KilnBuild
import KilnStore
import KilnTemplates

/// The inputs of a build: the source disk (by digest), the parts of the template that act inside the VM
/// (`ContentHash.buildJSON`), every staged artifact by digest, and the version of Kiln's own build steps.
/// A run whose key equals an earlier successful run's distributes that run's image instead of building.
/// Customizers that download at build time (`apt-get install`) are not pinned by this: a rerun with the same
/// inputs reuses the image unless `kiln template run --force` or the tag `kiln.rebuild: always` says to build.
enum BuildInputs {
    /// Bumped when the build steps change what an image contains (deprovisioning, capture, …), so images
    /// made by an older Kiln are not reused.
    static let recipe = "kiln-build-r1"

    static func key(_ template: ImageTemplate, artifacts: [StagedArtifact], source: ResolvedSource) -> String {
        var h = SHA256()
        for part in [recipe, source.sha256, source.generation.rawValue] {
            h.update(data: Data(part.utf8))
            h.update(data: Data([0]))
        }
        h.update(data: ContentHash.buildJSON(template))
        for a in artifacts.sorted(by: { $0.reference < $1.reference }) {
            h.update(data: Data([0]))
            h.update(data: Data("\(a.reference)=\(a.sha256)".utf8))
        }
        return "sha256:" + h.finalize().map { String(format: "%02x", $0) }.joined()
    }

    /// The template asks never to reuse (`kiln.rebuild: always`).
    static func alwaysBuilds(_ t: ImageTemplate) -> Bool {
        t.tags.first { $0.key.lowercased() == "kiln.rebuild" }?.value.lowercased() == "always"
    }
}

extension KilnCore {
    /// The newest image captured with `key` that is still on disk.
    func reusableImage(_ key: String) async -> RunImageRecord? {
        guard let images = try? await store.runImages(buildInputsKey: key) else { return nil }
        return images.first { FileManager.default.fileExists(atPath: $0.path) }
    }
}
