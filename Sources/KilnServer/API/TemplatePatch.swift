import Foundation
import KilnCore
import KilnTemplates

/// AIB's PATCH body (`ImageTemplateUpdateParameters`) applied to a template: `tags`, `identity`,
/// `properties.distribute` and `properties.vmProfile` replace the template's own; nothing else may be named.
enum TemplatePatch {
    static let topLevel: Set<String> = ["tags", "identity", "properties"]
    static let properties: Set<String> = ["distribute", "vmProfile"]

    /// The merged template as JSON text, ready to be validated as a whole. `strict` (api-version 2024-02-01 on)
    /// rejects other properties; older versions ignore them, as AIB did.
    static func apply(_ body: String, to template: ImageTemplate, strict: Bool) throws(ARMError) -> String {
        let patch: [String: Any]
        do {
            guard let object = try JSONSerialization.jsonObject(with: Data(body.utf8)) as? [String: Any] else {
                throw ARMError.notJSON("a PATCH body is a JSON object")
            }
            patch = object
        } catch let e as ARMError {
            throw e
        } catch {
            throw .notJSON("\(error.localizedDescription)")
        }
        guard var merged = (try? JSONSerialization.jsonObject(with: JSONEncoder().encode(template))) as? [String: Any] else {
            throw ARMError(.internalServerError, "InternalServerError", "the stored template could not be read back")
        }
        for (key, value) in patch {
            guard let known = topLevel.first(where: { $0.caseInsensitiveCompare(key) == .orderedSame }) else {
                if strict { throw unknown("$.\(key)") }
                continue
            }
            if known == "properties" {
                guard let props = value as? [String: Any] else { throw invalid("$.properties", "must be an object") }
                var target = merged["properties"] as? [String: Any] ?? [:]
                for (pk, pv) in props {
                    guard let p = properties.first(where: { $0.caseInsensitiveCompare(pk) == .orderedSame }) else {
                        if strict { throw unknown("$.properties.\(pk)") }
                        continue
                    }
                    target[p] = pv
                }
                merged["properties"] = target
            } else {
                merged[known] = value
            }
        }
        merged["name"] = nil
        guard let data = try? JSONSerialization.data(withJSONObject: merged), let text = String(data: data, encoding: .utf8) else {
            throw ARMError(.internalServerError, "InternalServerError", "the patched template could not be written")
        }
        return text
    }

    static func unknown(_ path: String) -> ARMError {
        ARMError(
            .badRequest, "InvalidParameter",
            "\(path) cannot be patched: only tags, identity, properties.distribute and properties.vmProfile can. \(KilnCore.conflictMessage): delete and create the template to change anything else.",
            target: path)
    }

    static func invalid(_ path: String, _ why: String) -> ARMError { ARMError(.badRequest, "InvalidParameter", "\(path) \(why)", target: path) }
}
