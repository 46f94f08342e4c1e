import Foundation
import Testing
@testable import KilnTemplates

/// Deployment templates written for Azure, loaded unchanged (Fixtures/arm, sources in SOURCES.md) with a
/// parameters file of Kiln's: the image templates they produce equal hand-written expected templates.
@Suite struct ARMDeploymentTests {
    static let scope = DeploymentScope(subscriptionId: "11111111-2222-3333-4444-555555555555", resourceGroup: "images-rg", location: "westeurope")

    static func fixture(_ name: String) -> String { Fixtures.path("arm/\(name)") }

    static func expected(_ name: String) throws -> LoadedTemplate {
        let path = fixture(name)
        let f = TemplateLoader.load(text: try String(contentsOfFile: path, encoding: .utf8), path: path, options: LoadOptions(scope: scope))
        #expect(f.errors.isEmpty, "\(f.errors.map(\.description))")
        return try #require(f.templates.first)
    }

    /// The Windows baseline quickstart: `deployment()`, `substring()`, `guid()`, `newGuid()`, `uri()`, an expression
    /// as an object key, `functions: []`; its role assignment's `reference(…).principalId` is skipped runtime state.
    @Test func theWindowsBaselineQuickstartLoads() throws {
        let path = Self.fixture("windowsbaseline/azuredeploy.json")
        let f = TemplateLoader.loadFile(path, options: LoadOptions(scope: Self.scope))
        #expect(f.errors.isEmpty, "\(f.errors.map(\.description))")
        let t = try #require(f.templates.first)
        let want = try Self.expected("windowsbaseline/azuredeploy.expected.json")
        #expect(t.template == want.template, "got \(t.template)")
        #expect(t.resourceId == want.resourceId && t.apiVersion == want.apiVersion)

        let assignment = try #require(f.skipped.first { $0.type == "Microsoft.Authorization/roleAssignments" })
        #expect(
            assignment.reason.contains("properties.principalId is runtime state of Azure") && assignment.reason.contains("reference("), "\(assignment.reason)")
        #expect(Set(f.skipped.map(\.type)).count == 5, "identity, role definition, role assignment, gallery, deployment script: \(f.skipped.map(\.type))")

        // The image definition the template declares becomes Kiln's own.
        let d = try #require(f.galleryDefinitions.first)
        #expect(
            d.id
                == "/subscriptions/11111111-2222-3333-4444-555555555555/resourceGroups/images-rg/providers/Microsoft.Compute/galleries/ImageGallery_6e704942/images/Win2019_AzureWindowsBaseline_Definition"
        )
        #expect(d.osType == .windows && d.hyperVGeneration == .v1 && d.publisher == "AzureWindowsBaseline" && d.sku == "2019-Datacenter")
    }

    /// Without `_artifactsLocation`, its default reads `deployment().properties.templateLink`, which a local file
    /// does not have: ARM's own error, at the parameter.
    @Test func aLocalFileHasNoTemplateLink() throws {
        let path = Self.fixture("windowsbaseline/azuredeploy.json")
        let f = TemplateLoader.load(text: try String(contentsOfFile: path, encoding: .utf8), path: path, options: LoadOptions(scope: Self.scope))
        let e = try #require(f.errors.first)
        #expect(f.templates.isEmpty)
        #expect(
            e.message.contains("property 'templateLink' doesn't exist") && e.path == JSONPath.root / "parameters" / "_artifactsLocation" / "defaultValue",
            "\(e)")
        #expect(e.line == 7)
    }
}
