import Foundation
@testable import KilnCore
import KilnStore
import KilnTemplates
import Testing

/// SourceImage triggers against the real store: a new version of the source starts exactly one run, a
/// second poll none, a deleted trigger nothing; two pollers racing start one.
@Suite struct TriggerTests {
    static let definition = "/subscriptions/s/resourceGroups/g/providers/Microsoft.Compute/galleries/gal/images/base"

    static func app(source: String = "\(definition)/versions/latest") throws -> LoadedTemplate {
        try load(
            templateJSON(name: "app").replacingOccurrences(
                of: #"{"type": "PlatformImage", "publisher": "Debian", "offer": "debian-12", "sku": "12", "version": "latest"}"#,
                with: #"{"type": "SharedImageVersion", "imageVersionId": "\#(source)"}"#))
    }

    /// Publishes a version of base as distribution would record it (the file is not read by polling).
    static func publish(_ s: Scratch, _ version: String) async throws {
        try await s.core.store.addGalleryVersion(
            GalleryVersionRecord(
                definitionId: definition, version: ImageVersion(version)!, path: "regions/x/\(version)/disk.qcow2", sha256: "sha-\(version)",
                virtualSize: 1 << 20, regions: ["westeurope": 1]))
    }

    static func setUp() async throws -> Scratch {
        let s = try Scratch()
        try await s.core.store.putGalleryDefinition(
            GalleryDefinitionRecord(
                GalleryImageDefinition(
                    id: definition, gallery: "gal", name: "base", location: nil, osType: .linux, osState: .generalized, hyperVGeneration: .v2,
                    publisher: "P", offer: "O", sku: "base", description: nil, endOfLifeDate: nil)))
        try await publish(s, "1.0.0")
        _ = try await s.core.create(try app())
        return s
    }

    /// Ends a run as a worker would, so the template can run again.
    static func finish(_ s: Scratch, _ run: RunRecord) async throws {
        try await s.core.store.updateRun(id: run.id) { r in
            try r.apply(.claim(.current))
            try r.apply(.finish(.succeeded, message: "done"))
        }
    }

    @Test func aNewSourceVersionStartsExactlyOneRun() async throws {
        let s = try await Self.setUp()
        defer { s.cleanup() }
        let t = try await s.core.createTrigger(template: "app", name: "source")
        #expect(t.statusCode == .healthy && t.baselineReference == "\(Self.definition)/versions/1.0.0", "\(t)")
        #expect(t.id.hasSuffix("/imageTemplates/app/triggers/source"))
        // Creating it fires nothing; polling without a change neither.
        #expect(await s.core.pollTriggers().isEmpty)

        try await Self.publish(s, "1.0.1")
        let fired = await s.core.pollTriggers()
        #expect(fired.count == 1)
        #expect(await s.core.pollTriggers().isEmpty, "the run is active: no second run")
        try await Self.finish(s, try #require(fired.first))
        #expect(await s.core.pollTriggers().isEmpty, "1.0.1 was seen: no second run after it ended either")
        let after = try await s.core.trigger(template: "app", name: nil)
        #expect(after.lastRunId == fired.first?.id)
        #expect(after.baselineReference == "\(Self.definition)/versions/1.0.1")
        #expect(after.statusMessage.contains("started run \(fired[0].id): source base 1.0.1 replaces base 1.0.0"), "\(after.statusMessage)")

        // A deleted trigger stops.
        try await s.core.deleteTrigger(template: "app", name: "source")
        try await Self.publish(s, "1.0.2")
        #expect(await s.core.pollTriggers().isEmpty)
        #expect(try await s.core.triggers().isEmpty)
    }

    @Test func twoPollersRacingStartOneRun() async throws {
        let s = try await Self.setUp()
        defer { s.cleanup() }
        _ = try await s.core.createTrigger(template: "app", name: "source")
        try await Self.publish(s, "1.1.0")
        // A second core on the same database: another process.
        let other = KilnCore(paths: s.core.paths, store: try KilnDatabase(path: s.core.paths.database))
        async let a = s.core.pollTriggers()
        async let b = other.pollTriggers()
        let (ra, rb) = await (a, b)
        #expect(ra.count + rb.count == 1, "\(ra.map(\.id)) \(rb.map(\.id))")
        #expect(try await s.core.runs("app").count == 1)
    }

    /// The controller's poller: a publish is seen within one interval, and reported so workers start.
    @Test func thePollerQueuesARunWithinOneInterval() async throws {
        let s = try await Self.setUp()
        defer { s.cleanup() }
        _ = try await s.core.createTrigger(template: "app", name: "source")
        let seen = Counter()
        let poller = RepeatingTask.pollingTriggers(of: s.core, every: .seconds(1)) { runs in for _ in runs { seen.increment() } }
        let task = Task { await poller.run() }
        try await Task.sleep(for: .milliseconds(1500))
        #expect(seen.value == 0)
        try await Self.publish(s, "2.0.0")
        let start = ContinuousClock.now
        while seen.value == 0, ContinuousClock.now - start < .seconds(10) { try await Task.sleep(for: .milliseconds(20)) }
        // One interval, and slack for a loaded machine (a bound, not a benchmark).
        #expect(ContinuousClock.now - start < .seconds(3), "seen after \(ContinuousClock.now - start)")
        try await Task.sleep(for: .seconds(2))
        #expect(seen.value == 1, "a second poll started another run")
        await poller.stop()
        await task.value
    }

    @Test func whatATriggerRefuses() async throws {
        let s = try await Self.setUp()
        defer { s.cleanup() }
        _ = try await s.core.createTrigger(template: "app", name: "source")
        // One per template.
        await #expect(throws: CoreError.self) { try await s.core.createTrigger(template: "app", name: "again") }
        // A source pinned to a version never moves.
        _ = try await s.core.create(
            try load(templateJSON(name: "pinned").replacingOccurrences(of: #""version": "latest""#, with: #""version": "2026.1128.0""#)))
        do {
            _ = try await s.core.createTrigger(template: "pinned", name: "source")
            Issue.record("a trigger on a pinned source was created")
        } catch {
            #expect(error.kind == .invalidParameter && error.description.contains("never changes by itself"), "\(error)")
        }
        await #expect(throws: CoreError.self) { try await s.core.createTrigger(template: "no-such-template", name: "source") }
        await #expect(throws: CoreError.self) { try await s.core.createTrigger(template: "app", name: "bad name!") }
        // The template's deletion takes its trigger (as AIB's child resources).
        try await s.core.delete("app")
        #expect(try await s.core.triggers().isEmpty)
    }
}

/// Trigger resources as files: the forms AIB's tools write, and each mistake with its path and line.
@Suite struct TriggerFileTests {
    static func load(_ text: String, path: String = "templates/app.trigger.json") -> LoadedFile {
        TemplateLoader.load(text: text, path: path)
    }

    @Test func aBareTriggerResourceLoads() throws {
        let full = Self.load(
            #"{"type": "Microsoft.VirtualMachineImages/imageTemplates/triggers", "apiVersion": "2022-07-01", "name": "app/source", "properties": {"kind": "SourceImage", "status": {"code": "Healthy"}}}"#,
            path: "templates/anything.json")
        #expect(full.kind == .trigger && full.isValid, "\(full.diagnostics)")
        #expect(full.triggers.map(\.templateName) == ["app"] && full.triggers.map(\.name) == ["source"])
        // A name without its template takes it from TEMPLATE.trigger.json.
        let short = Self.load(#"{"type": "Microsoft.VirtualMachineImages/imageTemplates/triggers", "name": "source", "properties": {"kind": "sourceimage"}}"#)
        #expect(short.triggers.first?.templateName == "app" && short.triggers.first?.kind == .sourceImage, "\(short.diagnostics)")
    }

    /// AIB's ARM forms: a child resource of the template, and a top-level resource named by expression.
    @Test func triggersInADeploymentTemplateLoad() throws {
        let text = """
            {"$schema": "https://schema.management.azure.com/schemas/2019-04-01/deploymentTemplate.json#", "contentVersion": "1.0.0.0",
             "parameters": {"imageTemplateName": {"type": "string", "defaultValue": "app"}},
             "resources": [
              {"type": "Microsoft.VirtualMachineImages/imageTemplates", "apiVersion": "2022-07-01", "name": "[parameters('imageTemplateName')]",
               "location": "westeurope", "identity": {"type": "None"},
               "properties": {"source": {"type": "PlatformImage", "publisher": "Debian", "offer": "debian-12", "sku": "12", "version": "latest"},
                              "distribute": [{"type": "VHD", "runOutputName": "vhd"}]},
               "resources": [{"type": "triggers", "apiVersion": "2022-07-01", "name": "source", "dependsOn": ["[parameters('imageTemplateName')]"],
                              "properties": {"kind": "SourceImage"}}]},
              {"type": "Microsoft.VirtualMachineImages/imageTemplates/triggers", "apiVersion": "2022-07-01",
               "name": "[concat(parameters('imageTemplateName'), '/nightly')]", "properties": {"kind": "SourceImage"}}
             ]}
            """
        let f = Self.load(text, path: "templates/app.json")
        #expect(f.isValid, "\(f.errors)")
        #expect(f.templates.map(\.template.name) == ["app"])
        #expect(f.triggers.map { "\($0.templateName)/\($0.name)" } == ["app/source", "app/nightly"])
        #expect(f.triggers.first?.resourcePath.description == "$.resources[0].resources[0]")
    }

    @Test(arguments: [
        (
            #"{"type": "Microsoft.VirtualMachineImages/imageTemplates/triggers", "name": "app/source",\#n "properties": {\#n "kind": "Schedule"}}"#,
            "$.properties.kind", 3, "kind 'Schedule' is not a trigger kind; AIB has 'SourceImage'"
        ),
        (
            #"{"type": "Microsoft.VirtualMachineImages/imageTemplates/triggers", "name": "app/source",\#n "properties": {}}"#, "$.properties.kind", 2,
            "the property 'kind' is required"
        ),
        (
            #"{"type": "Microsoft.VirtualMachineImages/imageTemplates/triggers",\#n "name": "app/source"}"#, "$.properties", 1,
            "the property 'properties' is required"
        ),
        (
            #"{"type": "Microsoft.VirtualMachineImages/imageTemplates/triggers",\#n "properties": {"kind": "SourceImage"}}"#, "$.name", 1,
            "the property 'name' is required"
        ),
        (
            #"{"type": "Microsoft.VirtualMachineImages/imageTemplates/triggers",\#n "name": "a/b/c", "properties": {"kind": "SourceImage"}}"#, "$.name", 2,
            "must name its template"
        ),
        (
            #"{"type": "Microsoft.VirtualMachineImages/imageTemplates/triggers",\#n "apiVersion": "2022-02-14", "name": "app/source", "properties": {"kind": "SourceImage"}}"#,
            "$.apiVersion", 2, "triggers need api-version 2022-07-01 or later"
        )
    ])
    func aBadTriggerSaysWhereAndWhat(_ text: String, _ path: String, _ line: Int, _ message: String) {
        let f = Self.load(text, path: "templates/other.json")
        let e = f.errors.first
        #expect(f.triggers.isEmpty)
        #expect(e?.path.description == path && e?.line == line && e?.message.contains(message) == true, "\(f.errors)")
        #expect(e?.file == "templates/other.json")
    }
}
