import Foundation
@testable import KilnCore
import KilnStore
import KilnTemplates
import Testing

/// Retention against the real store and real files: what goes, what never does, and that the dry run
/// lists exactly what is then removed.
@Suite struct RetentionTests {
    static let definition = TriggerTests.definition

    static func runImage(_ s: Scratch, template: String, n: Int) throws -> RunImageRecord {
        let id = "run-\(template)-\(n)"
        let path = s.core.paths.runImage(id)
        try FileManager.default.createDirectory(atPath: (path as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
        try Data("image \(n)".utf8).write(to: URL(fileURLWithPath: path))
        return RunImageRecord(
            runId: id, templateId: "/subscriptions/s/resourceGroups/g/providers/Microsoft.VirtualMachineImages/imageTemplates/\(template)",
            templateName: template, buildInputsKey: "k\(n)", path: path, sha256: "sha\(n)", virtualSize: 1,
            source: BuiltSource(reference: "Debian:debian-12:12:1.0.0", sha256: nil), createdAt: Date(timeIntervalSince1970: Double(1_000_000 + n)))
    }

    static func version(_ s: Scratch, _ v: String) async throws {
        let dir = "\(s.core.paths.regions)/westeurope/galleries/gal/images/base/versions/\(v)"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        try Data(v.utf8).write(to: URL(fileURLWithPath: dir + "/disk.qcow2"))
        try await s.core.store.addGalleryVersion(
            GalleryVersionRecord(
                definitionId: definition, version: ImageVersion(v)!, path: s.core.paths.relative(dir + "/disk.qcow2"), sha256: "sha-\(v)",
                virtualSize: 1, regions: ["westeurope": 1]))
    }

    @Test func oldImagesAndVersionsGoButNeverWhatIsInUse() async throws {
        let s = try await TriggerTests.setUp()  // definition base with 1.0.0; template app on base/latest
        defer { s.cleanup() }
        for n in 1...5 { try await s.core.store.addRunImage(try Self.runImage(s, template: "app", n: n)) }
        try await s.core.store.addRunImage(try Self.runImage(s, template: "other", n: 9))
        for v in ["1.0.1", "1.0.2", "1.0.3", "1.0.4"] { try await Self.version(s, v) }
        // A template pinned to 1.0.1, and a trigger whose baseline is 1.0.4's… (latest: protected anyway).
        _ = try await s.core.create(try TriggerTests.app(source: "\(Self.definition)/versions/1.0.1").renamed("pinned"))

        let settings = RetentionSettings(runImages: 2, galleryVersions: 1)
        let planned = try await s.core.retentionPlan(settings)
        #expect(planned.filter { $0.kind == .runImage }.map(\.id) == ["run-app-3", "run-app-2", "run-app-1"])
        #expect(
            planned.filter { $0.kind == .galleryImageVersion }.map(\.id) == [
                "\(Self.definition)/versions/1.0.3", "\(Self.definition)/versions/1.0.2", "\(Self.definition)/versions/1.0.0"
            ])
        let removed = try await s.core.collectGarbage(settings)
        #expect(removed == planned, "the dry run lists exactly what is removed")

        let left = try await s.core.store.runImages().map(\.runId).sorted()
        #expect(left == ["run-app-4", "run-app-5", "run-other-9"])
        for n in 1...5 { #expect(FileManager.default.fileExists(atPath: s.core.paths.runImage("run-app-\(n)")) == (n > 3)) }
        let versions = try await s.core.store.galleryVersions(definitionId: Self.definition).map(\.version.description)
        #expect(versions == ["1.0.4", "1.0.1"], "latest and the pinned source stay")
        #expect(!FileManager.default.fileExists(atPath: "\(s.core.paths.regions)/westeurope/galleries/gal/images/base/versions/1.0.2"))
        #expect(try await s.core.retentionPlan(settings).isEmpty, "a second pass removes nothing")
    }

    @Test func aDefinitionARunDistributesToIsLeftAlone() async throws {
        let s = try await TriggerTests.setUp()
        defer { s.cleanup() }
        for v in ["1.0.1", "1.0.2"] { try await Self.version(s, v) }
        let publisher = try load(
            templateJSON(
                name: "publisher",
                distribute:
                    #"[{"type": "SharedImage", "runOutputName": "sig", "galleryImageId": "\#(Self.definition)", "targetRegions": [{"name": "westeurope"}]}]"#))
        _ = try await s.core.create(publisher)
        _ = try await s.core.queueRun("publisher")
        #expect(try await s.core.retentionPlan(RetentionSettings(runImages: 1, galleryVersions: 1)).isEmpty)
    }
}

extension LoadedTemplate {
    /// The same template under another name (and id).
    func renamed(_ name: String) -> LoadedTemplate {
        var t = self
        t.template.name = name
        t.resourceId.segments[t.resourceId.segments.count - 1].name = name
        return t
    }
}
