import Foundation
import Testing
@testable import KilnTemplates

/// One template written as bare JSON, as YAML and as an ARM deployment template with a parameters
/// file has one content hash; changing any meaningful field changes it.
@Suite struct ContentHashTests {
    static let scope = DeploymentScope(subscriptionId: "11111111-2222-3333-4444-555555555555", resourceGroup: "kiln-images", location: "westeurope")
    static let options = LoadOptions(scope: scope)

    static func single(_ rel: String) throws -> LoadedTemplate {
        let f = TemplateLoader.loadFile(Fixtures.path(rel), options: options)
        #expect(f.errors.isEmpty, "\(rel): \(f.errors.map(\.description))")
        return try #require(f.templates.first)
    }

    @Test func sameMeaningSameHashAcrossForms() throws {
        let json = try Self.single("equivalent/same.json")
        let yaml = try Self.single("equivalent/same.yaml")
        let deploy = try Self.single("equivalent/same-deploy.json")
        #expect(ContentHash.canonicalJSON(json.template) == ContentHash.canonicalJSON(yaml.template))
        #expect(ContentHash.canonicalJSON(json.template) == ContentHash.canonicalJSON(deploy.template))
        #expect(yaml.template == deploy.template)
        #expect(json.contentHash == yaml.contentHash)
        #expect(json.contentHash == deploy.contentHash)
        #expect(json.contentHash.hasPrefix("sha256:") && json.contentHash.count == 71)
    }

    @Test func deploymentSkipsOtherResourceTypes() {
        let f = TemplateLoader.loadFile(Fixtures.path("equivalent/same-deploy.json"), options: Self.options)
        #expect(f.templates.count == 1)
        #expect(f.skipped.map(\.type) == ["Microsoft.ManagedIdentity/userAssignedIdentities"])
        #expect(f.skipped.first?.name == "aib")
        #expect(f.parametersFile?.hasSuffix("same-deploy.parameters.json") == true)
    }

    @Test func keyOrderAndWhitespaceDoNotMatter() throws {
        let a = try Self.single("equivalent/same.json")
        let text = try String(contentsOfFile: Fixtures.path("equivalent/same.json"), encoding: .utf8)
        // Re-serialise through Foundation: different key order and no whitespace.
        let obj = try JSONSerialization.jsonObject(with: Data(text.utf8))
        let compact = String(decoding: try JSONSerialization.data(withJSONObject: obj, options: [.sortedKeys]), as: UTF8.self)
        let b = load(compact, path: "golden.json", options: Self.options)
        #expect(b.templates.first?.contentHash == a.contentHash)
    }

    @Test func nameIsNotPartOfTheHash() throws {
        let a = try Self.single("equivalent/same.json")
        let text = try String(contentsOfFile: Fixtures.path("equivalent/same.json"), encoding: .utf8)
            .replacingOccurrences(of: "\"name\": \"golden\"", with: "\"name\": \"golden-renamed\"")
        let b = try #require(load(text, path: "x.json", options: Self.options).templates.first)
        #expect(b.template.name == "golden-renamed")
        #expect(b.contentHash == a.contentHash)
    }

    /// Each mutation changes something a build would do differently.
    static let mutations: [(String, @Sendable (inout [String: Any]) -> Void)] = [
        ("location", { $0["location"] = "northeurope" }),
        ("tag value", { $0["tags"] = ["team": "platform", "tier": "app"] }),
        ("identity", { $0["identity"] = ["type": "None"] }),
        ("source sku", { t in edit(&t, "source") { $0["sku"] = "12" } }),
        ("source version", { t in edit(&t, "source") { $0["version"] = "1.2.3" } }),
        ("inline command", { t in editCustomizer(&t, 0) { $0["inline"] = ["echo one", "echo 2"] } }),
        (
            "customizer order",
            { t in
                var p = t["properties"] as! [String: Any]
                var c = p["customize"] as! [Any]
                c.swapAt(0, 2)
                p["customize"] = c
                t["properties"] = p
            }
        ),
        ("script checksum", { t in editCustomizer(&t, 1) { $0["sha256Checksum"] = String(repeating: "0", count: 64) } }),
        ("file destination", { t in editCustomizer(&t, 2) { $0["destination"] = "/etc/app2.conf" } }),
        ("restart timeout", { t in editCustomizer(&t, 3) { $0["restartTimeout"] = "10m" } }),
        ("build timeout", { t in editProps(&t) { $0["buildTimeoutInMinutes"] = 60 } }),
        ("vm size", { t in editProps(&t) { $0["vmProfile"] = ["vmSize": "Standard_D4ds_v4", "osDiskSizeGB": 30] } }),
        ("os disk", { t in editProps(&t) { $0["vmProfile"] = ["vmSize": "Standard_D2ds_v4", "osDiskSizeGB": 64] } }),
        ("error handling", { t in editProps(&t) { $0["errorHandling"] = ["onCustomizerError": "abort"] } }),
        ("auto run", { t in editProps(&t) { $0["autoRun"] = ["state": "Enabled"] } }),
        ("optimize", { t in editProps(&t) { $0["optimize"] = ["vmBoot": ["state": "Enabled"]] } }),
        (
            "validation",
            { t in
                editProps(&t) {
                    $0["validate"] = [
                        "continueDistributeOnFailure": true, "inVMValidations": [["type": "Shell", "name": "v", "inline": ["test -f /etc/app.conf"]]]
                    ]
                }
            }
        ),
        ("staging group", { t in editProps(&t) { $0["stagingResourceGroup"] = "/subscriptions/s/resourceGroups/staging" } }),
        ("managed tags", { t in editProps(&t) { $0["managedResourceTags"] = ["cost": "x"] } }),
        ("region", { t in editDistributor(&t, 0) { $0["replicationRegions"] = ["westeurope", "eastus"] } }),
        ("storage type", { t in editDistributor(&t, 0) { $0["storageAccountType"] = "Premium_LRS" } }),
        ("versioning major", { t in editDistributor(&t, 0) { $0["versioning"] = ["scheme": "Latest", "major": 3] } }),
        ("exclude from latest", { t in editDistributor(&t, 0) { $0["excludeFromLatest"] = true } }),
        ("replication mode", { t in editDistributor(&t, 0) { $0["replicationMode"] = "Shallow" } }),
        ("artifact tags", { t in editDistributor(&t, 0) { $0["artifactTags"] = ["channel": "beta"] } }),
        ("run output name", { t in editDistributor(&t, 1) { $0["runOutputName"] = "vhd2" } }),
        ("vhd uri", { t in editDistributor(&t, 1) { $0["uri"] = "/srv/images/golden.vhd" } })
    ]

    static func editProps(_ t: inout [String: Any], _ f: (inout [String: Any]) -> Void) {
        var p = t["properties"] as! [String: Any]
        f(&p)
        t["properties"] = p
    }
    static func edit(_ t: inout [String: Any], _ key: String, _ f: (inout [String: Any]) -> Void) {
        editProps(&t) { p in
            var o = p[key] as! [String: Any]
            f(&o)
            p[key] = o
        }
    }
    static func editList(_ t: inout [String: Any], _ key: String, _ i: Int, _ f: (inout [String: Any]) -> Void) {
        editProps(&t) { p in
            var list = p[key] as! [Any]
            var o = list[i] as! [String: Any]
            f(&o)
            list[i] = o
            p[key] = list
        }
    }
    static func editCustomizer(_ t: inout [String: Any], _ i: Int, _ f: (inout [String: Any]) -> Void) { editList(&t, "customize", i, f) }
    static func editDistributor(_ t: inout [String: Any], _ i: Int, _ f: (inout [String: Any]) -> Void) { editList(&t, "distribute", i, f) }

    @Test func everyMeaningfulChangeChangesTheHash() throws {
        let base = try Self.single("equivalent/same.json")
        let text = try String(contentsOfFile: Fixtures.path("equivalent/same.json"), encoding: .utf8)
        var seen: [String: String] = [base.contentHash: "base"]
        for (what, mutate) in Self.mutations {
            var obj = try JSONSerialization.jsonObject(with: Data(text.utf8)) as! [String: Any]
            mutate(&obj)
            let mutated = String(decoding: try JSONSerialization.data(withJSONObject: obj), as: UTF8.self)
            let f = load(mutated, path: "golden.json", options: Self.options)
            #expect(f.errors.isEmpty, "\(what): \(f.errors.map(\.description))")
            guard let t = f.templates.first else { continue }
            #expect(seen[t.contentHash] == nil, "changing \(what) gave the same hash as \(seen[t.contentHash] ?? "")")
            seen[t.contentHash] = what
        }
        #expect(seen.count == Self.mutations.count + 1)
    }

    @Test func referencedFilesChangeTheHash() throws {
        let t = try Self.single("equivalent/same.json").template
        let a = ContentHash.of(t, referencedFiles: ["scripts/setup.sh": ContentHash.digest(Data("echo 1".utf8))])
        let b = ContentHash.of(t, referencedFiles: ["scripts/setup.sh": ContentHash.digest(Data("echo 2".utf8))])
        #expect(a != b)
        #expect(a != ContentHash.of(t))
    }

    @Test func canonicalJSONUsesAIBShapes() throws {
        let t = try Self.single("equivalent/same.json").template
        let json = String(decoding: ContentHash.canonicalJSON(t), as: UTF8.self)
        // The discriminator and the payload share one object.
        #expect(json.contains(#"{"inline":["echo one","echo two"],"name":"one","type":"Shell"}"#))
        // The deprecated form is folded into targetRegions with defaults and normalised names.
        #expect(
            json.contains(
                #""targetRegions":[{"name":"westeurope","replicaCount":1,"storageAccountType":"Standard_LRS"},{"name":"northeurope","replicaCount":1,"storageAccountType":"Standard_LRS"}]"#
            ))
        #expect(json.contains(#""buildTimeoutInMinutes":240"#))
        #expect(json.contains(#""sha256Checksum":"abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789""#))
        #expect(!json.contains(#""name":"golden""#), "the name is not part of the canonical content")
    }
}
