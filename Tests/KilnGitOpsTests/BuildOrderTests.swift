import Foundation
import KilnGit
@testable import KilnGitOps
import KilnStore
import KilnTemplates
import Testing

/// The order a plan's changes are applied in: a template whose source is a gallery image another template of the
/// repository publishes comes after that template, whatever order the files are in.
@Suite struct BuildOrderTests {
    static let gallery = "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Compute/galleries/g/images"

    static func desired(_ name: String, publishes: String? = nil, from source: String? = nil) -> DesiredTemplate {
        let src =
            source.map { #"{"type": "SharedImageVersion", "imageVersionId": "\#(gallery)/\#($0)/versions/latest"}"# }
            ?? #"{"type": "PlatformImage", "publisher": "Debian", "offer": "debian-12", "sku": "12-gen2", "version": "latest"}"#
        let dist =
            publishes.map {
                #"{"type": "SharedImage", "runOutputName": "\#(name)-sig", "galleryImageId": "\#(gallery)/\#($0)", "targetRegions": [{"name": "westeurope"}]}"#
            }
            ?? #"{"type": "VHD", "runOutputName": "\#(name)-vhd"}"#
        let json = """
            {"type": "Microsoft.VirtualMachineImages/imageTemplates", "apiVersion": "2025-10-01", "name": "\(name)", "location": "westeurope",
             "identity": {"type": "None"}, "properties": {"source": \(src), "distribute": [\(dist)]}}
            """
        let options = LoadOptions(scope: DeploymentScope(subscriptionId: "s", resourceGroup: "rg", location: "westeurope"))
        let t = TemplateLoader.load(text: json, path: "templates/\(name).json", format: .json, options: options).templates[0]
        return DesiredTemplate(loaded: t, file: "templates/\(name).json", referencedFiles: [:], contentHash: ContentHash.of(t.template, referencedFiles: [:]))
    }

    static let templates: [String: DesiredTemplate] = [
        "base": desired("base", publishes: "base"),
        "app": desired("app", publishes: "app", from: "base"),
        "web": desired("web", from: "app"),
        "tools": desired("tools"),
        "other": desired("other", from: "elsewhere")
    ]

    @Test(arguments: [
        (["web", "app", "base"], ["base", "app", "web"]),
        (["app", "tools", "base"], ["base", "app", "tools"]),
        (["tools", "other"], ["tools", "other"]),
        (["web", "tools"], ["web", "tools"]),
        (["base", "app", "web"], ["base", "app", "web"])
    ])
    func order(_ given: [String], _ expected: [String]) {
        let items = given.map { PlanItem(.create(Self.templates[$0]!)) }
        #expect(Reconciler.buildOrder(items).map(\.name) == expected)
    }
}
