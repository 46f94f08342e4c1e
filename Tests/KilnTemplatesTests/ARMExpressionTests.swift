import Testing
@testable import KilnTemplates

@Suite struct ARMExpressionTests {
    static let scope = DeploymentScope(subscriptionId: "sub-1", resourceGroup: "rg-1", location: "westeurope")

    static func eval(_ text: String, parameters: [String: SourceNode] = [:], variables: [String: SourceNode] = [:]) throws -> SourceNode {
        var e = ARMEvaluator(scope: scope)
        e.parameters = parameters
        e.variableDefinitions = variables
        return try e.evaluateStrict(SourceNode(.string(text)))
    }

    static func str(_ s: String) -> SourceNode { SourceNode(.string(s)) }

    @Test(arguments: [
        ("[concat('a', 'b', 'c')]", "abc"),
        ("[format('{0}-{1}-{0}', 'x', 'y')]", "x-y-x"),
        ("[format('{{literal}} {0}', 'v')]", "{literal} v"),
        ("[toLower('MiXeD')]", "mixed"),
        ("[toUpper('MiXeD')]", "MIXED"),
        ("[resourceGroup().location]", "westeurope"),
        ("[resourceGroup().name]", "rg-1"),
        ("[resourceGroup().id]", "/subscriptions/sub-1/resourceGroups/rg-1"),
        ("[subscription().subscriptionId]", "sub-1"),
        ("[resourceId('Microsoft.Compute/images', 'img')]", "/subscriptions/sub-1/resourceGroups/rg-1/providers/Microsoft.Compute/images/img"),
        (
            "[resourceId('other-rg', 'Microsoft.Compute/galleries/images', 'g', 'd')]",
            "/subscriptions/sub-1/resourceGroups/other-rg/providers/Microsoft.Compute/galleries/g/images/d"
        ),
        (
            "[resourceId('sub-2', 'rg-2', 'Microsoft.ManagedIdentity/userAssignedIdentities', 'id')]",
            "/subscriptions/sub-2/resourceGroups/rg-2/providers/Microsoft.ManagedIdentity/userAssignedIdentities/id"
        ),
        ("[concat(toUpper(parameters('name')), '-', variables('suffix'))]", "WEB-v1"),
        ("[parameters('obj').inner.value]", "deep"),
        ("[parameters('list')[1]]", "second"),
        ("[parameters('obj')['inner'].value]", "deep"),
        ("['it''s']", "it's"),
        ("[[not an expression]", "[not an expression]"),
        ("plain text", "plain text"),
        ("[concat('n', 1)]", "n1")
    ])
    func evaluates(_ text: String, _ expected: String) throws {
        let params: [String: SourceNode] = [
            "name": Self.str("web"),
            "obj": try JSONSourceParser.parse(#"{"inner": {"value": "deep"}}"#),
            "list": try JSONSourceParser.parse(#"["first", "second"]"#)
        ]
        let v = try Self.eval(text, parameters: params, variables: ["suffix": Self.str("[concat('v', '1')]")])
        #expect(v.stringValue == expected)
    }

    @Test func concatJoinsArrays() throws {
        let v = try Self.eval(
            "[concat(parameters('a'), parameters('b'))]",
            parameters: [
                "a": try JSONSourceParser.parse(#"["x"]"#), "b": try JSONSourceParser.parse(#"["y", "z"]"#)
            ])
        #expect(v.elements?.compactMap(\.stringValue) == ["x", "y", "z"])
    }

    @Test func uniqueStringIsDeterministic() throws {
        let a = try Self.eval("[uniqueString(resourceGroup().id, 'x')]")
        let b = try Self.eval("[uniqueString(resourceGroup().id, 'x')]")
        let c = try Self.eval("[uniqueString(resourceGroup().id, 'y')]")
        #expect(a.stringValue == b.stringValue)
        #expect(a.stringValue != c.stringValue)
        #expect(a.stringValue?.count == 13)
    }

    @Test(arguments: [
        ("[reference('x').location]", "reference('x') names a resource outside this template"),
        ("[listKeys('x', '2020-01-01')]", "listKeys() reads live Azure state"),
        ("[utcNow()]", "utcNow() can only be used in a parameter's defaultValue"),
        ("[newGuid()]", "newGuid() can only be used in a parameter's defaultValue"),
        ("[noSuchFunction()]", "'noSuchFunction' is not an ARM template function"),
        ("[parameters('missing')]", "parameter 'missing' is not defined"),
        ("[variables('loop')]", "refers to itself"),
        ("[concat('a']", "missing ')'"),
        ("[format('{2}', 'a')]", "has no argument"),
        ("[toLower('a', 'b')]", "takes 1 argument"),
        ("[resourceGroup().nope]", "property 'nope' doesn't exist, available properties are 'id', 'name'")
    ])
    func reportsWhatIsWrong(_ text: String, _ fragment: String) {
        do {
            let v = try Self.eval(text, variables: ["loop": Self.str("[variables('loop')]")])
            Issue.record("evaluated to \(v.jsonText())")
        } catch let e as ARMEvaluator.EvalError {
            #expect(e.message.contains(fragment), "\(e.message)")
        } catch {
            #expect("\(error)".contains(fragment), "\(error)")
        }
    }

    @Test func commandLineParametersOverrideTheFile() throws {
        let tmpl = """
            {"$schema": "https://schema.management.azure.com/schemas/2019-04-01/deploymentTemplate.json#",
             "parameters": {"n": {"type": "string"}, "timeout": {"type": "int", "defaultValue": 10}},
             "resources": [{"type": "Microsoft.VirtualMachineImages/imageTemplates", "apiVersion": "2025-10-01", "name": "[parameters('n')]",
               "location": "[resourceGroup().location]", "identity": {"type": "None"},
               "properties": {"buildTimeoutInMinutes": "[parameters('timeout')]",
                 "source": {"type": "PlatformImage", "publisher": "Debian", "offer": "debian-12", "sku": "12", "version": "latest"},
                 "distribute": [{"type": "VHD", "runOutputName": "v"}]}}]}
            """
        let params = #"{"parameters": {"n": {"value": "from-file"}}}"#
        var opts = LoadOptions(scope: Self.scope)
        opts.parameters = ["n": "from-cli", "timeout": "30"]
        let f = load(tmpl, path: "d.json", parameters: ("d.parameters.json", params), options: opts)
        #expect(f.errors.isEmpty, "\(f.errors)")
        #expect(f.templates.first?.template.name == "from-cli")
        #expect(f.templates.first?.template.properties.buildTimeoutInMinutes == 30)
        #expect(
            f.templates.first?.resourceId.description
                == "/subscriptions/sub-1/resourceGroups/rg-1/providers/Microsoft.VirtualMachineImages/imageTemplates/from-cli")
    }
}
