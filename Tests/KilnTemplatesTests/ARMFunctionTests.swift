import Foundation
import Testing
@testable import KilnTemplates

/// ARM's function catalogue, each function against the values Microsoft's documentation gives (or, for
/// `guid()` and `uniqueString()`, vectors computed with ARM's own algorithms), plus the laziness and scoping
/// rules templates depend on.
@Suite struct ARMFunctionTests {
    static let scope = DeploymentScope(
        subscriptionId: "00000000-0000-0000-0000-000000000000", resourceGroup: "my-rg", location: "westeurope", deploymentName: "deploy-1",
        now: Date(timeIntervalSince1970: 1_738_332_309))  // 2025-01-31T14:05:09Z

    static func eval(_ text: String, parameters: [String: String] = [:], inDefault: Bool = false) throws -> SourceNode {
        var e = ARMEvaluator(scope: scope)
        for (k, v) in parameters { e.parameters[k] = try JSONSourceParser.parse(v) }
        e.inParameterDefault = inDefault
        return try e.evaluateStrict(SourceNode(.string(text)))
    }

    /// Each expression with the JSON of its value.
    @Test(arguments: [
        // strings
        ("[substring('hello world', 6)]", #""world""#),
        ("[substring('hello world', 0, 5)]", #""hello""#),
        ("[equals(substring(format('ImageGallery_{0}', guid('rg-id')), 0, 21), concat('ImageGallery_', take(guid('rg-id'), 8)))]", "true"),
        ("[format('{0}', guid('test'))]", #""d6a5baf1-8b9b-542a-8525-2982f1f98a0c""#),
        ("[replace('123-123-1234', '-', '')]", #""1231231234""#),
        ("[replace('-..--..-', '.', '-')]", #""--------""#),
        ("[split('one,two;three', createArray(',', ';'))]", #"["one","two","three"]"#),
        ("[split('a,,b', ',')]", #"["a","","b"]"#),
        ("[join(createArray('a', 'b', 'c'), '-')]", #""a-b-c""#),
        ("[startsWith('abcdef', 'AB')]", "true"),
        ("[endsWith('abcdef', 'EF')]", "true"),
        ("[indexOf('test', 'T')]", "0"),
        ("[lastIndexOf('abcdef', 'cd')]", "2"),
        ("[indexOf('abcdef', 'z')]", "-1"),
        ("[padLeft('123', 10, '0')]", #""0000000123""#),
        ("[padLeft(7, 3)]", #""  7""#),
        ("[trim('    one two three   ')]", #""one two three""#),
        ("[string(createObject('a', 1))]", #""{\"a\":1}""#),
        ("[string(true())]", #""True""#),
        ("[format('{0}, {1}. Formatted number: {2:N0}', 'Hello', 'User', 8175133)]", #""Hello, User. Formatted number: 8,175,133""#),
        ("[format('{0:D3}', 7)]", #""007""#),
        ("[toLower('ABC')]", #""abc""#),
        ("[first('One Two')]", #""O""#),
        ("[last('One Two')]", #""o""#),
        ("[take('One Two', 2)]", #""On""#),
        ("[skip('One Two', 4)]", #""Two""#),
        // .NET strings: UTF-16 units, so a CRLF is two and an emoji is two.
        ("[split(format('a{0}b', json('\"\\r\\n\"')), json('\"\\n\"'))]", #"["a\r","b"]"#),
        ("[length('👍')]", "2"),
        ("[indexOf(format('a{0}b', json('\"\\r\\n\"')), 'b')]", "3"),
        // encodings and URIs
        ("[base64('one, two, three')]", #""b25lLCB0d28sIHRocmVl""#),
        ("[base64ToString('b25lLCB0d28sIHRocmVl')]", #""one, two, three""#),
        ("[base64ToJson(base64('{\"one\": \"a\"}')).one]", #""a""#),
        ("[dataUri('Hello')]", #""data:text/plain;charset=utf8;base64,SGVsbG8=""#),
        ("[dataUriToString('data:;base64,SGVsbG8sIFdvcmxkIQ==')]", #""Hello, World!""#),
        ("[uri('http://contoso.org/firstpath', 'myscript.sh')]", #""http://contoso.org/myscript.sh""#),
        ("[uri('http://contoso.org/firstpath/', 'myscript.sh')]", #""http://contoso.org/firstpath/myscript.sh""#),
        (
            "[uriComponent('http://contoso.com/resources/nested/azuredeploy.json')]",
            #""http%3A%2F%2Fcontoso.com%2Fresources%2Fnested%2Fazuredeploy.json""#
        ),
        ("[uriComponentToString('http%3A%2F%2Fcontoso.com')]", #""http://contoso.com""#),
        ("[json('{\"a\": [1, true, null]}')]", #"{"a":[1,true,null]}"#),
        ("[json('null')]", "null"),
        // arrays
        ("[length(createArray(1, 2, 3))]", "3"),
        ("[length('abc')]", "3"),
        ("[empty(createArray())]", "true"),
        ("[empty(null())]", "true"),
        ("[contains(createArray('a', 'b'), 'b')]", "true"),
        ("[contains('OneTwoThree', 'e')]", "true"),
        ("[contains(createObject('One', 1), 'one')]", "true"),
        ("[first(createArray())]", "null"),
        ("[flatten(createArray(createArray(1, 2), createArray(3)))]", "[1,2,3]"),
        ("[range(5, 3)]", "[5,6,7]"),
        ("[min(createArray(0, 3, 2, 5, 4))]", "0"),
        ("[max(0, 3, 2, 5, 4)]", "5"),
        ("[union(createArray('one', 'two'), createArray('two', 'three'))]", #"["one","two","three"]"#),
        ("[intersection(createArray('one', 'two', 'three'), createArray('two', 'three'))]", #"["two","three"]"#),
        ("[array('x')]", #"["x"]"#),
        ("[concat(createArray(1), createArray(2, 3))]", "[1,2,3]"),
        ("[indexOf(createArray('a', 'b'), 'b')]", "1"),
        // objects
        ("[createObject('a', 1, 'b', 'x')]", #"{"a":1,"b":"x"}"#),
        ("[union(createObject('a', 'b', 'c', 'd'), createObject('c', 'x', 'e', 'f'))]", #"{"a":"b","c":"x","e":"f"}"#),
        (
            "[union(json('{\"p\": {\"one\": \"a\", \"three\": \"c1\"}, \"n\": [1, 2]}'), json('{\"p\": {\"three\": \"c2\", \"four\": \"d\"}, \"n\": [3]}'))]",
            #"{"p":{"one":"a","three":"c2","four":"d"},"n":[3]}"#
        ),
        ("[shallowMerge(createArray(json('{\"a\": {\"x\": 1}}'), json('{\"a\": {\"y\": 2}, \"b\": 3}')))]", #"{"a":{"y":2},"b":3}"#),
        ("[intersection(createObject('a', 1, 'b', 2), createObject('a', 1, 'b', 3))]", #"{"a":1}"#),
        ("[items(createObject('b', 2, 'a', 1))]", #"[{"key":"a","value":1},{"key":"b","value":2}]"#),
        ("[objectKeys(createObject('b', 2, 'a', 1))]", #"["b","a"]"#),
        ("[tryGet(createObject('a', createObject('b', 'deep')), 'a', 'b')]", #""deep""#),
        ("[tryGet(createObject('a', 1), 'missing')]", "null"),
        ("[tryGet(null(), 'a')]", "null"),
        ("[tryGet('abc', 'x')]", "null"),
        ("[cidrSubnet('::/0', 128, 0)]", #""::/128""#),
        ("[format('{0:D}', -9223372036854775808)]", #""-9223372036854775808""#),
        // comparison and logic
        ("[coalesce(null(), null(), 'third')]", #""third""#),
        ("[equals(createArray(1, 'a'), createArray(1, 'a'))]", "true"),
        ("[equals('a', 'A')]", "false"),
        ("[equals(createObject('A', 1), createObject('a', 1))]", "true"),
        ("[greater(10, 5)]", "true"),
        ("[less('A', 'a')]", "true"),
        ("[greaterOrEquals(5, 5)]", "true"),
        ("[lessOrEquals(6, 5)]", "false"),
        ("[and(true(), false())]", "false"),
        ("[or(false(), true())]", "true"),
        ("[not(true())]", "false"),
        ("[bool('TRUE')]", "true"),
        ("[bool(0)]", "false"),
        ("[if(equals(1, 1), 'yes', 'no')]", #""yes""#),
        // numbers
        ("[add(5, 3)]", "8"),
        ("[sub(5, 7)]", "-2"),
        ("[mul(4, 3)]", "12"),
        ("[div(8, 3)]", "2"),
        ("[mod(7, 3)]", "1"),
        ("[int('4')]", "4"),
        // dates
        ("[dateTimeAdd('2020-04-07 14:53:14Z', 'P3Y')]", #""4/7/2023 2:53:14 PM""#),
        ("[dateTimeAdd('2020-04-07 14:53:14Z', '-PT9H', 'u')]", #""2020-04-07 05:53:14Z""#),
        ("[dateTimeAdd('2020-01-31T00:00:00Z', 'P1M', 'yyyy-MM-dd')]", #""2020-02-29""#),
        ("[dateTimeFromEpoch(1683040573)]", #""2023-05-02T15:16:13Z""#),
        ("[dateTimeToEpoch('2023-05-02T15:16:13Z')]", "1683040573"),
        // lambdas
        ("[map(createArray(1, 2, 3), lambda('x', mul(lambdaVariables('x'), 10)))]", "[10,20,30]"),
        ("[map(createArray('a', 'b'), lambda('x', 'i', format('{0}{1}', lambdaVariables('x'), lambdaVariables('i'))))]", #"["a0","b1"]"#),
        ("[filter(createArray(1, 2, 3, 4), lambda('x', equals(mod(lambdaVariables('x'), 2), 0)))]", "[2,4]"),
        ("[reduce(createArray(1, 2, 3), 0, lambda('cur', 'next', add(lambdaVariables('cur'), lambdaVariables('next'))))]", "6"),
        ("[sort(createArray(3, 1, 2), lambda('a', 'b', less(lambdaVariables('a'), lambdaVariables('b'))))]", "[1,2,3]"),
        (
            "[toObject(createArray(createObject('n', 'a', 'v', 1)), lambda('e', lambdaVariables('e').n), lambda('e', lambdaVariables('e').v))]",
            #"{"a":1}"#
        ),
        ("[mapValues(createObject('a', 1, 'b', 2), lambda('v', add(lambdaVariables('v'), 1)))]", #"{"a":2,"b":3}"#),
        ("[groupBy(createArray('foo', 'bar', 'baz'), lambda('x', substring(lambdaVariables('x'), 0, 1)))]", #"{"f":["foo"],"b":["bar","baz"]}"#),
        (
            "[reduce(map(createArray('x', 'y'), lambda('id', createObject(lambdaVariables('id'), true()))), createObject(), lambda('cur', 'next', union(lambdaVariables('cur'), lambdaVariables('next'))))]",
            #"{"x":true,"y":true}"#
        ),
        // CIDR
        (
            "[parseCidr('10.144.0.0/20')]",
            #"{"network":"10.144.0.0","netmask":"255.255.240.0","broadcast":"10.144.15.255","firstUsable":"10.144.0.1","lastUsable":"10.144.15.254","cidr":20}"#
        ),
        ("[cidrSubnet('10.144.0.0/20', 24, 3)]", #""10.144.3.0/24""#),
        ("[cidrHost('10.144.3.0/24', 0)]", #""10.144.3.1""#),
        (
            "[parseCidr('2001:db8::/64')]",
            #"{"network":"2001:db8::","netmask":"ffff:ffff:ffff:ffff::","firstUsable":"2001:db8::","lastUsable":"2001:db8::ffff:ffff:ffff:ffff","cidr":64}"#
        ),
        ("[cidrSubnet('2001:db8::/32', 48, 5)]", #""2001:db8:5::/48""#),
        // resource ids and context
        (
            "[subscriptionResourceId('Microsoft.Authorization/roleDefinitions', 'b24988ac')]",
            #""/subscriptions/00000000-0000-0000-0000-000000000000/providers/Microsoft.Authorization/roleDefinitions/b24988ac""#
        ),
        ("[tenantResourceId('Microsoft.Authorization/policyDefinitions', 'p')]", #""/providers/Microsoft.Authorization/policyDefinitions/p""#),
        (
            "[extensionResourceId('/subscriptions/s/resourceGroups/g', 'Microsoft.Authorization/locks', 'l')]",
            #""/subscriptions/s/resourceGroups/g/providers/Microsoft.Authorization/locks/l""#
        ),
        ("[resourceGroup().properties.provisioningState]", #""Succeeded""#),
        ("[subscription().tenantId]", #""00000000-0000-0000-0000-000000000000""#),
        ("[tenant().id]", #""/tenants/00000000-0000-0000-0000-000000000000""#),
        ("[deployment().name]", #""deploy-1""#),
        ("[environment().suffixes.storage]", #""core.windows.net""#),
        ("[environment().name]", #""AzureCloud""#)
    ])
    func evaluates(_ expression: String, _ json: String) throws {
        let v = try Self.eval(expression)
        #expect(v.jsonText() == json, "\(expression)")
    }

    /// `guid()` is a version-5 UUID in ARM's namespace; `uniqueString()` ARM's MurmurHash64 in base 32.
    @Test func guidAndUniqueStringMatchARM() throws {
        #expect(ARMHash.guid(["test"]) == "d6a5baf1-8b9b-542a-8525-2982f1f98a0c")
        #expect(ARMHash.guid(["test", "test2", "test3"]) == "43ca56fb-e844-5667-aabf-b316c27c09cc")
        #expect(ARMHash.guid(["a", "b"]) != ARMHash.guid(["ab"]))
        #expect(ARMHash.uniqueString(["test"]) == "rbgf3xv4ufgzg")
        #expect(ARMHash.uniqueString(["hello", "world"]) == "a7wkljktk6wne")
        #expect(ARMHash.uniqueString(["abc"]) == "cgtzqvhu4i23s")
        #expect(ARMHash.uniqueString(["foo", "bar", "baz"]) == "xzi4ioaxtmth4")
        #expect(ARMHash.uniqueString(["/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/my-rg"]) == "bmg7c6xu4tw46")
        #expect(try Self.eval("[uniqueString(resourceGroup().id)]").stringValue == "bmg7c6xu4tw46")
    }

    /// `if()` evaluates only the branch it returns: the other may read a property that is not there.
    @Test func ifIsLazyAndAndOrShortCircuit() throws {
        let p = ["d": #"{"type": "VHD", "imageName": "x"}"#]
        #expect(
            try Self.eval("[if(equals(parameters('d').type, 'SharedImage'), parameters('d').galleryImageId, parameters('d').imageName)]", parameters: p)
                .stringValue == "x")
        #expect(try Self.eval("[and(false(), parameters('d').missing)]", parameters: p).boolValue == false)
        #expect(try Self.eval("[or(true(), parameters('d').missing)]", parameters: p).boolValue == true)
    }

    /// utcNow() and newGuid() only in parameter defaults; pinned by the scope, they give the same value every time.
    @Test func utcNowAndNewGuidArePinnable() throws {
        #expect(try Self.eval("[utcNow('yyyy-MM-dd-HH-mm-ss')]", inDefault: true).stringValue == "2025-01-31-14-05-09")
        #expect(try Self.eval("[utcNow()]", inDefault: true).stringValue == "20250131T140509Z")
        #expect(try Self.eval("[utcNow('u')]", inDefault: true).stringValue == "2025-01-31 14:05:09Z")
        var pinned = Self.scope
        pinned.newGuidSeed = "commit-abc"
        var a = ARMEvaluator(scope: pinned), b = ARMEvaluator(scope: pinned)
        a.inParameterDefault = true
        b.inParameterDefault = true
        let x = try a.evaluateStrict(SourceNode(.string("[newGuid()]"))).stringValue
        #expect(x == (try b.evaluateStrict(SourceNode(.string("[newGuid()]"))).stringValue) && x?.count == 36)
        #expect(try a.evaluateStrict(SourceNode(.string("[newGuid()]"))).stringValue != x, "each call in one deployment differs")
    }

    @Test(arguments: [
        ("[substring('abc', 2, 5)]", "the index and length parameters must refer to a location within the string"),
        ("[substring('abc', -1)]", "is negative"),
        ("[add(9223372036854775807, 1)]", "overflows"),
        ("[div(1, 0)]", "division by zero"),
        ("[range(0, 10001)]", "between 0 and 10000"),
        ("[guid(1)]", "guid(): argument 1 must be a string"),
        ("[createObject('a')]", "key, value pairs"),
        ("[lambdaVariables('x')]", "names no parameter of an enclosing lambda"),
        ("[lambda('x', 1)]", "can only be an argument"),
        ("[map(createArray(1), 'x')]", "needs a lambda"),
        ("[if('yes', 1, 2)]", "needs a boolean condition"),
        ("[copyIndex()]", "outside a copy loop"),
        ("[managementGroup()]", "management-group deployment"),
        ("[parseCidr('10.0.0.0/33')]", "between 0 and 32"),
        ("[cidrHost('10.0.0.0/30', 2)]", "outside"),
        ("[dateTimeAdd('yesterday', 'P1D')]", "not an ISO 8601 date"),
        ("[base64ToString('***')]", "not base64"),
        ("[ns.f(1)]", "not a user-defined function"),
        // Hostile inputs that once could trap (overflow, over-shift, abs(Int.min), non-finite doubles) or exhaust memory.
        ("[cidrSubnet('::/0', 128, -1)]", "negative"),
        ("[cidrHost('ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff/128', 1)]", "outside"),
        ("[range(9223372036854775807, 1)]", "must not exceed"),
        ("[substring('abc', 1, 9223372036854775807)]", "must refer to a location within the string"),
        ("[format('{0,-9223372036854775808}', 'a')]", "too large"),
        ("[format('{0:D4000000000}', 1)]", "between 0 and 99"),
        ("[int(float('1e400'))]", "cannot convert"),
        ("[dateTimeAdd('2020-01-01T00:00:00Z', 'P99999999999999999999D')]", "not an ISO 8601 duration"),
        ("[dateTimeFromEpoch(9223372036854775807)]", "outside the years 1 to 9999"),
        ("[padLeft('x', 100000)]", "too large"),
        ("[map(range(0, 2000), lambda('x', map(range(0, 2000), lambda('y', 1))))]", "more than 1000000 evaluation steps"),
        ("[reduce(range(0, 30), 'xx', lambda('s', 'i', concat(lambdaVariables('s'), lambdaVariables('s'))))]", "ARM allows a template of at most 4 MB"),
        ("[" + String(repeating: "concat(", count: 300) + "'x'" + String(repeating: ")", count: 300) + "]", "nests deeper than 200 levels"),
        ("['" + String(repeating: "x", count: 24_600) + "']", "ARM allows at most 24576")
    ])
    func reportsWhatIsWrong(_ expression: String, _ fragment: String) {
        do {
            let v = try Self.eval(expression)
            Issue.record("\(expression) evaluated to \(v.jsonText())")
        } catch let e as ARMEvaluator.EvalError {
            #expect(e.message.contains(fragment), "\(e.message)")
        } catch {
            Issue.record("\(error)")
        }
    }

    /// A deployment's user-defined functions: called as namespace.name, they see only their own parameters.
    @Test func userDefinedFunctionsAreCalledByNamespace() throws {
        let tmpl = """
            {"$schema": "https://schema.management.azure.com/schemas/2019-04-01/deploymentTemplate.json#",
             "functions": [{"namespace": "kiln", "members": {"prefixed": {"parameters": [{"name": "n", "type": "string"}],
                 "output": {"type": "string", "value": "[concat('img-', toLower(parameters('n')))]"}}}}],
             "parameters": {"n": {"type": "string", "defaultValue": "WEB"}},
             "resources": [{"type": "Microsoft.VirtualMachineImages/imageTemplates", "apiVersion": "2025-10-01", "name": "[kiln.prefixed(parameters('n'))]",
               "location": "westeurope", "identity": {"type": "None"},
               "properties": {"source": {"type": "PlatformImage", "publisher": "Debian", "offer": "debian-12", "sku": "12", "version": "latest"},
                 "distribute": [{"type": "VHD", "runOutputName": "v"}]}}]}
            """
        let f = load(tmpl, path: "d.json", options: LoadOptions(scope: Self.scope))
        #expect(f.errors.isEmpty, "\(f.errors)")
        #expect(f.templates.first?.template.name == "img-web")
    }
}
