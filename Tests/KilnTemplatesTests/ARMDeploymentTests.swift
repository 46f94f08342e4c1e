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

    /// The Azure Verified Module for image templates (compiled Bicep, languageVersion 2.0): definitions with
    /// `$ref` and a discriminator, nullable parameters, symbolic-name resources, a property copy loop, lambdas,
    /// a telemetry deployment switched off by its condition, a resource loop of count 0.
    @Test func theAVMImageTemplateModuleLoads() throws {
        let f = TemplateLoader.loadFile(Self.fixture("avm-image-template/main.json"), options: LoadOptions(scope: Self.scope))
        #expect(f.errors.isEmpty, "\(f.errors.map(\.description))")
        let t = try #require(f.templates.first)
        let want = try Self.expected("avm-image-template/main.expected.json")
        #expect(t.template == want.template, "got \(t.template)")
        #expect(t.resourceId == want.resourceId && t.apiVersion == want.apiVersion)
        #expect(t.resourcePath.description == "$.resources.imageTemplate")
        #expect(f.skipped.isEmpty, "the telemetry deployment and the lock are off by their conditions: \(f.skipped)")
    }

    /// A parameters-file value that breaks the module's types is named with the place inside it.
    @Test(arguments: [
        (#"{"type": "Disk", "imageName": "x"}"#, "'Disk' at [0].type is not one of 'SharedImage', 'ManagedImage', 'VHD'"),
        (#"{"type": "VHD"}"#, "the required property 'imageName' at [0] is missing"),
        (
            #"{"type": "SharedImage", "sharedImageGalleryImageDefinitionResourceId": "/x", "storageAccountType": "Premium_LRS"}"#,
            "\"Premium_LRS\" at [0].storageAccountType is not one of the allowed values"
        ),
        (#"{"imageName": "x"}"#, "the discriminator property 'type' at [0] is missing")
    ])
    func theAVMModulesTypesAreChecked(_ distribution: String, _ message: String) throws {
        let path = Self.fixture("avm-image-template/main.json")
        var params = try String(contentsOfFile: Self.fixture("avm-image-template/main.parameters.json"), encoding: .utf8)
        let start = try #require(params.range(of: #""distributions": {"#))
        let end = try #require(params.range(of: #""managedIdentities""#))
        params.replaceSubrange(start.lowerBound..<end.lowerBound, with: #""distributions": {"value": [\#(distribution)]}, "#)
        let f = load(
            try String(contentsOfFile: path, encoding: .utf8), path: path, parameters: ("main.parameters.json", params), options: LoadOptions(scope: Self.scope)
        )
        #expect(f.templates.isEmpty)
        #expect(
            f.errors.count == 1 && f.errors[0].message.contains("the value of parameter 'distributions' from the parameters file is not valid: \(message)"),
            "\(f.errors.map(\.description))")
        #expect(f.errors.first?.path.description == "$.parameters.distributions")
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

    /// A deployment around one image template resource; `resource` replaces the marker inside `resources`.
    static func deployment(parameters: String = "{}", variables: String = "{}", resources: String) -> String {
        """
        {"$schema": "https://schema.management.azure.com/schemas/2019-04-01/deploymentTemplate.json#", "contentVersion": "1.0.0.0",
         "parameters": \(parameters), "variables": \(variables), "resources": [\(resources)]}
        """
    }

    static func template(name: String, copy: String = "", customize: String = "[]") -> String {
        """
        {"type": "Microsoft.VirtualMachineImages/imageTemplates", "apiVersion": "2025-10-01", "name": "\(name)", \(copy)
         "location": "westeurope", "identity": {"type": "None"},
         "properties": {"source": {"type": "PlatformImage", "publisher": "Debian", "offer": "debian-12", "sku": "12", "version": "latest"},
           "customize": \(customize), "distribute": [{"type": "VHD", "runOutputName": "v"}]}}
        """
    }

    /// Resource, property and variable copy loops, with copyIndex() and its offset; a count of 0 makes nothing.
    @Test func copyLoopsExpand() throws {
        let vars = #"{"copy": [{"name": "steps", "count": 2, "input": {"type": "Shell", "name": "[concat('v', copyIndex('steps'))]", "inline": ["true"]}}]}"#
        let customize = #"[{"type": "Shell", "name": "first", "inline": ["true"]}]"#
        let resources =
            Self.template(
                name: "[format('img-{0}', copyIndex(1))]", copy: #""copy": {"name": "imgs", "count": "[parameters('n')]"},"#,
                customize: #""[variables('steps')]""#) + ", "
            + Self.template(name: "none", copy: #""copy": {"name": "zero", "count": 0},"#, customize: customize)
        let text = Self.deployment(parameters: #"{"n": {"type": "int", "defaultValue": 3}}"#, variables: vars, resources: resources)
        let f = load(text, path: "loops.json", options: LoadOptions(scope: Self.scope))
        #expect(f.errors.isEmpty, "\(f.errors.map(\.description))")
        #expect(f.templates.map(\.template.name) == ["img-1", "img-2", "img-3"])
        #expect(f.templates.first?.template.properties.customize.map(\.name) == ["v0", "v1"])

        // A property loop inside the resource: `copy` under properties makes the array it names.
        let propertyLoop =
            #"{"copy": [{"name": "customize", "count": 2, "input": {"type": "Shell", "name": "[concat('p', copyIndex('customize'))]", "inline": ["true"]}}]}"#
        let withProperties = Self.deployment(
            resources: """
                {"type": "Microsoft.VirtualMachineImages/imageTemplates", "apiVersion": "2025-10-01", "name": "props", "location": "westeurope",
                 "identity": {"type": "None"}, "properties": {"source": {"type": "PlatformImage", "publisher": "Debian", "offer": "debian-12", "sku": "12",
                 "version": "latest"}, "distribute": [{"type": "VHD", "runOutputName": "v"}], "customizeHolder": 1}}
                """.replacingOccurrences(of: #""customizeHolder": 1"#, with: String(propertyLoop.dropFirst().dropLast())))
        let g = load(withProperties, path: "props.json", options: LoadOptions(scope: Self.scope))
        #expect(g.errors.isEmpty, "\(g.errors.map(\.description))")
        #expect(g.templates.first?.template.properties.customize.map(\.name) == ["p0", "p1"])
    }

    /// Bad deployment templates: one diagnostic each, naming the JSON path and line.
    @Test(arguments: [
        (Self.deployment(resources: Self.template(name: "[noSuch('x')]")), "'noSuch' is not an ARM template function", "$.resources[0].name", 2),
        (Self.deployment(resources: Self.template(name: "[substring(1, 0)]")), "substring(): argument 1 must be a string", "$.resources[0].name", 2),
        (
            Self.deployment(resources: Self.template(name: "[concat('x', copyIndex())]", copy: #""copy": {"name": "many", "count": 801},"#)),
            "must be between 0 and 800", "$.resources[0].copy.count", 2
        ),
        (
            Self.deployment(
                parameters: #"{"a": {"type": "string", "defaultValue": "[parameters('b')]"}, "b": {"type": "string", "defaultValue": "[parameters('a')]"}}"#,
                resources: Self.template(name: "[parameters('a')]")),
            "'a' → 'b' → 'a' refer to each other in a cycle", "$.parameters.a.defaultValue", 2
        )
    ])
    func badDeploymentsGetOneDiagnostic(_ text: String, _ message: String, _ path: String, _ line: Int) {
        let f = load(text, path: "bad.json", options: LoadOptions(scope: Self.scope))
        #expect(f.templates.isEmpty)
        #expect(f.errors.count == 1, "\(f.errors.map(\.description))")
        let e = f.errors.first
        #expect(e?.message.contains(message) == true && e?.path.description == path && e?.line == line, "\(f.errors.map(\.description))")
    }

    /// copyIndex() in a variable is refused where the variable is used: a variable is the same for every instance.
    @Test func aVariableCannotReadTheLoopThatUsesIt() {
        let text = Self.deployment(
            variables: #"{"n": "[concat('img-', copyIndex())]"}"#,
            resources: Self.template(name: "[variables('n')]", copy: #""copy": {"name": "imgs", "count": 2},"#))
        let f = load(text, path: "v.json", options: LoadOptions(scope: Self.scope))
        #expect(f.templates.isEmpty)
        #expect(f.errors.first?.message.contains("copyIndex() is used outside a copy loop") == true, "\(f.errors.map(\.description))")
    }

    /// A value in the parameters file of the wrong type is named with the parameter.
    @Test func aParametersFileTypeViolationIsNamed() {
        let text = Self.deployment(
            parameters: #"{"n": {"type": "int", "defaultValue": 1}}"#, resources: Self.template(name: "[format('x{0}', parameters('n'))]"))
        let f = load(
            text, path: "typed.json", parameters: ("typed.parameters.json", #"{"parameters": {"n": {"value": "three"}}}"#),
            options: LoadOptions(scope: Self.scope))
        #expect(f.templates.isEmpty)
        #expect(
            f.errors.count == 1 && f.errors[0].message.contains("parameter 'n' is declared int but the parameters file gives a string"),
            "\(f.errors.map(\.description))")
    }

    /// Nested deployments with an inline template: `outer` reads the parent's parameters; `inner` is its own
    /// deployment with the values it is given, in the resource group it names.
    @Test func nestedDeploymentsInnerAndOuter() throws {
        let outer = """
            {"type": "Microsoft.Resources/deployments", "apiVersion": "2022-09-01", "name": "outer-dep",
             "properties": {"mode": "Incremental", "template": {"$schema": "https://schema.management.azure.com/schemas/2019-04-01/deploymentTemplate.json#",
               "contentVersion": "1.0.0.0", "resources": [\(Self.template(name: "[concat(parameters('prefix'), '-outer')]"))]}}}
            """
        let inner = """
            {"type": "Microsoft.Resources/deployments", "apiVersion": "2022-09-01", "name": "inner-dep", "resourceGroup": "other-rg",
             "properties": {"mode": "Incremental", "expressionEvaluationOptions": {"scope": "inner"},
               "parameters": {"prefix": {"value": "[toUpper(parameters('prefix'))]"}},
               "template": {"$schema": "https://schema.management.azure.com/schemas/2019-04-01/deploymentTemplate.json#", "contentVersion": "1.0.0.0",
                 "parameters": {"prefix": {"type": "string"}},
                 "resources": [\(Self.template(name: "[concat(parameters('prefix'), '-inner-', deployment().name, '-', resourceGroup().name)]"))]}}}
            """
        let text = Self.deployment(parameters: #"{"prefix": {"type": "string", "defaultValue": "img"}}"#, resources: outer + ", " + inner)
        let f = load(text, path: "nested.json", options: LoadOptions(scope: Self.scope))
        #expect(f.errors.isEmpty, "\(f.errors.map(\.description))")
        #expect(f.templates.map(\.template.name) == ["img-outer", "IMG-inner-inner-dep-other-rg"])
        #expect(
            f.templates.map(\.resourcePath.description) == [
                "$.resources[0].properties.template.resources[0]", "$.resources[1].properties.template.resources[0]"
            ])

        // A problem inside the nested template is reported at its path in this file.
        let broken = Self.deployment(
            resources: inner.replacingOccurrences(of: "[toUpper(parameters('prefix'))]", with: "x").replacingOccurrences(
                of: "deployment().name", with: "nope()"))
        let g = load(broken, path: "nested.json", options: LoadOptions(scope: Self.scope))
        #expect(g.errors.count == 1 && g.errors[0].path.description == "$.resources[0].properties.template.resources[0].name", "\(g.errors.map(\.description))")
        #expect(g.templates.isEmpty)
    }

    /// `reference()` of a resource the template declares reads what the template says about it, by id or (2.0)
    /// by symbolic name; anything else is live Azure state and an error that says so.
    @Test func referenceReadsResourcesOfTheSameTemplate() throws {
        let definition = """
            {"type": "Microsoft.Compute/galleries/images", "apiVersion": "2022-03-03", "name": "gal/def", "location": "westeurope",
             "properties": {"osType": "Linux", "osState": "Generalized", "hyperVGeneration": "V2",
               "identifier": {"publisher": "Kiln", "offer": "debian", "sku": "[concat('12-', 'ref')]"}}}
            """
        let byId = Self.template(name: "[concat('by-id-', reference(resourceId('Microsoft.Compute/galleries/images', 'gal', 'def')).identifier.sku)]")
        let f = load(Self.deployment(resources: definition + ", " + byId), path: "ref.json", options: LoadOptions(scope: Self.scope))
        #expect(f.errors.isEmpty, "\(f.errors.map(\.description))")
        #expect(f.templates.first?.template.name == "by-id-12-ref")

        let v2 = """
            {"$schema": "https://schema.management.azure.com/schemas/2019-04-01/deploymentTemplate.json#", "languageVersion": "2.0",
             "contentVersion": "1.0.0.0", "resources": {"def": \(definition),
               "img": \(Self.template(name: "[format('{0}-{1}', reference('def', '2022-03-03', 'full').location, reference('def').identifier.offer)]"))}}
            """
        let g = load(v2, path: "ref2.json", options: LoadOptions(scope: Self.scope))
        #expect(g.errors.isEmpty, "\(g.errors.map(\.description))")
        #expect(g.templates.first?.template.name == "westeurope-debian")

        let outside = Self.deployment(
            resources: Self.template(
                name: "[reference('/subscriptions/s/resourceGroups/g/providers/Microsoft.ManagedIdentity/userAssignedIdentities/x').principalId]"))
        let h = load(outside, path: "ref3.json", options: LoadOptions(scope: Self.scope))
        #expect(
            h.errors.count == 1 && h.errors[0].message.contains("names a resource outside this template: its state lives in Azure"),
            "\(h.errors.map(\.description))")
    }
}
