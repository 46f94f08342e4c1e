import Foundation
import KilnGit
@testable import KilnGitOps
import KilnTemplates
import KilnTestSupport
import Testing

@Suite struct DesiredStateTests {
    static let examples = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("examples").path

    /// examples/ as a real git repository.
    func exampleRepo(_ dir: String) throws -> String {
        let work = dir + "/repo"
        try FileManager.default.copyItem(atPath: Self.examples, toPath: work)
        _ = try git("init", "-q", in: work)
        _ = try git("add", ".", in: work)
        _ = try git("commit", "-q", "-m", "examples", in: work)
        return work
    }

    @Test func theExamplesAtACommit() async throws {
        let dir = try scratch()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let work = try exampleRepo(dir)
        let repo = try GitRepository.open(work)
        let c1 = try #require(try await repo.resolve("HEAD"))
        let s1 = try await DesiredStateReader.read(repo, at: c1)
        #expect(s1.invalid.isEmpty, "\(s1.invalid.map { $0.diagnostics.map(\.description) })")
        #expect(Set(s1.templates.map(\.loaded.template.name)) == ["debian-12-base", "debian-12-app", "debian-12-web", "debian-12-tools", "windows-2022"])
        #expect(s1.galleries.count == 4)
        #expect(s1.config.resourceGroup == "kiln-images")
        let base = try #require(s1.templates.first { $0.loaded.template.name == "debian-12-base" })
        #expect(base.file == "templates/debian-12-base.json")
        #expect(Set(base.referencedFiles.keys) == ["scripts/harden.sh", "files/motd", "scripts/validate-base.sh"])
        #expect(base.id.hasPrefix("/subscriptions/11111111-2222-3333-4444-555555555555/resourceGroups/kiln-images/"))

        // Editing only a referenced script changes that template's hash and no other.
        try "#!/bin/sh\necho hardened again\n".write(toFile: work + "/scripts/harden.sh", atomically: true, encoding: .utf8)
        try "{ not json".write(toFile: work + "/templates/broken.json", atomically: true, encoding: .utf8)
        _ = try git("add", ".", in: work)
        _ = try git("commit", "-q", "-m", "edit a script, add a broken file", in: work)
        let c2 = try #require(try await repo.resolve("HEAD"))
        let s2 = try await DesiredStateReader.read(repo, at: c2)
        let hashes1 = Dictionary(uniqueKeysWithValues: s1.templates.map { ($0.id, $0.contentHash) })
        let changed = s2.templates.filter { hashes1[$0.id] != $0.contentHash }.map(\.loaded.template.name)
        #expect(changed == ["debian-12-base"])
        #expect(s2.invalid.map(\.file) == ["templates/broken.json"])
        #expect(s2.invalid.first?.diagnostics.first?.line == 1)

        // The repository's files at the commit feed the template's artifacts.
        let source = CommitArtifactSource(repo: repo, commit: c1, resolved: base.resolvedReferences)
        #expect(try await source.read("scripts/harden.sh").map { String(decoding: $0, as: UTF8.self) }?.contains("hardened again") == false)
        #expect(try await source.read("nope.sh") == nil)
    }

    /// A deployment template in a repository reads the same on every read: `newGuid()` comes from the file's content,
    /// and `utcNow()` needs a value from the parameters file (the AVM module's `baseTime`).
    @Test func deploymentTemplatesReadTheSameEveryTime() async throws {
        let dir = try scratch()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let work = dir + "/repo"
        try FileManager.default.createDirectory(atPath: work + "/templates", withIntermediateDirectories: true)
        let template = """
            {"$schema": "https://schema.management.azure.com/schemas/2019-04-01/deploymentTemplate.json#", "contentVersion": "1.0.0.0",
             "parameters": {"stamp": {"type": "string", "defaultValue": "[utcNow('yyyyMMddHHmmss')]"}, "tag": {"type": "string", "defaultValue": "[newGuid()]"}},
             "resources": [{"type": "Microsoft.VirtualMachineImages/imageTemplates", "apiVersion": "2025-10-01", "name": "[concat('img-', parameters('stamp'))]",
               "location": "westeurope", "tags": {"tag": "[parameters('tag')]"}, "identity": {"type": "None"},
               "properties": {"source": {"type": "PlatformImage", "publisher": "Debian", "offer": "debian-12", "sku": "12", "version": "latest"},
                 "distribute": [{"type": "VHD", "runOutputName": "v"}]}}]}
            """
        try template.write(toFile: work + "/templates/stamped.json", atomically: true, encoding: .utf8)
        _ = try git("init", "-q", in: work)
        _ = try git("add", ".", in: work)
        _ = try git("commit", "-q", "-m", "a stamped template", in: work)
        let repo = try GitRepository.open(work)
        let c1 = try #require(try await repo.resolve("HEAD"))
        let s1 = try await DesiredStateReader.read(repo, at: c1)
        let message = s1.invalid.first?.diagnostics.first?.message ?? ""
        #expect(s1.templates.isEmpty && message.contains("utcNow() would give a new value on every read"), "\(message)")
        #expect(s1.invalid.first?.diagnostics.first?.path.description == "$.parameters.stamp.defaultValue")

        try #"{"parameters": {"stamp": {"value": "20261203"}}}"#.write(toFile: work + "/templates/stamped.parameters.json", atomically: true, encoding: .utf8)
        _ = try git("add", ".", in: work)
        _ = try git("commit", "-q", "-m", "pin the stamp", in: work)
        let c2 = try #require(try await repo.resolve("HEAD"))
        let a = try await DesiredStateReader.read(repo, at: c2), b = try await DesiredStateReader.read(repo, at: c2)
        #expect(a.invalid.isEmpty, "\(a.invalid.map { $0.diagnostics.map(\.description) })")
        let ta = try #require(a.templates.first), tb = try #require(b.templates.first)
        #expect(ta.loaded.template.name == "img-20261203")
        #expect(ta.loaded.template.tags["tag"]?.count == 36 && ta.loaded.template.tags == tb.loaded.template.tags && ta.contentHash == tb.contentHash)
    }

    /// The examples' derived images queue after the base image they build from.
    @Test func derivedTemplatesQueueAfterTheImageTheyBuildFrom() async throws {
        let dir = try scratch()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let work = try exampleRepo(dir)
        let repo = try GitRepository.open(work)
        let state = try await DesiredStateReader.read(repo, at: try #require(try await repo.resolve("HEAD")))
        let plan = Planner.plan(desired: state, recorded: [])

        let order = plan.items.map(\.name)
        #expect(order == ["debian-12-base", "debian-12-app", "debian-12-tools", "debian-12-web", "windows-2022"], "\(order)")
    }
}
