import Crypto
import Foundation

/// A canonical content hash of an image template.
///
/// The same meaning gives the same hash whatever the input form: key order, whitespace, JSON or YAML,
/// bare resource or deployment template, spelled-out defaults or omitted ones, deprecated
/// `replicationRegions` or `targetRegions`, "West Europe" or "westeurope". The template's *name* is not
/// part of it, so the same content under a new name is recognisably a move. Referenced files (scripts in
/// a GitOps repository) can be folded in by digest, so editing a script changes the hash.
public enum ContentHash {
    /// Bumped only when the canonical form changes meaning; a new Kiln must not make every template
    /// look changed after an upgrade.
    public static let scheme = "kiln-template-v1"

    /// The canonical JSON (sorted keys, no whitespace, defaults applied, name excluded).
    public static func canonicalJSON(_ template: ImageTemplate) -> Data {
        struct Content: Encodable {
            let t: ImageTemplate
            enum CodingKeys: String, CodingKey { case location, tags, identity, properties }
            func encode(to encoder: any Encoder) throws {
                var c = encoder.container(keyedBy: CodingKeys.self)
                try c.encode(t.location, forKey: .location)
                try c.encode(t.tags, forKey: .tags)
                try c.encode(t.identity, forKey: .identity)
                try c.encode(t.properties, forKey: .properties)
            }
        }
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        // Encoding these value types cannot fail: every value is a string, integer, boolean or container.
        return (try? encoder.encode(Content(t: template))) ?? Data()
    }

    /// `sha256:<hex>` of the scheme, the canonical JSON, and each referenced file's digest by path.
    public static func of(_ template: ImageTemplate, referencedFiles: [String: String] = [:]) -> String {
        var hasher = SHA256()
        hasher.update(data: Data(scheme.utf8))
        hasher.update(data: Data([0]))
        hasher.update(data: canonicalJSON(template))
        for (path, digest) in referencedFiles.sorted(by: { $0.key < $1.key }) {
            hasher.update(data: Data([0]))
            hasher.update(data: Data("\(path)=\(digest)".utf8))
        }
        return "sha256:" + hasher.finalize().map { String(format: "%02x", $0) }.joined()
    }

    /// `sha256:<hex>` of raw bytes (a referenced file).
    public static func digest(_ data: Data) -> String {
        "sha256:" + SHA256.hash(data: data).map { String(format: "%02x", $0) }.joined()
    }
}

extension ContentHash {
    /// What of a template decides what its build puts into the image: the customizers, validation,
    /// optimization and VM profile. Tags, identity, location, distribution targets, timeouts and error
    /// handling do not (a run that reuses an image still distributes it the template's way).
    public static func buildJSON(_ template: ImageTemplate) -> Data {
        struct Build: Encodable {
            let p: ImageTemplateProperties
            enum CodingKeys: String, CodingKey { case customize, validate, optimize, vmProfile }
            func encode(to encoder: any Encoder) throws {
                var c = encoder.container(keyedBy: CodingKeys.self)
                try c.encode(p.customize, forKey: .customize)
                try c.encode(p.validate, forKey: .validate)
                try c.encode(p.optimize, forKey: .optimize)
                try c.encode(p.vmProfile, forKey: .vmProfile)
            }
        }
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return (try? encoder.encode(Build(p: template.properties))) ?? Data()
    }
}
