import Testing
@testable import KilnTemplates

@Suite struct JSONParserTests {
    @Test func recordsLinesAndColumns() throws {
        let n = try JSONSourceParser.parse("{\n  \"a\": [1,\n    \"x\"],\n  \"b\": {\"c\": true}\n}")
        let a = try #require(n["a"])
        #expect(a.position == SourcePosition(line: 2, column: 8))
        #expect(a.elements?[1].position == SourcePosition(line: 3, column: 5))
        #expect(n["b"]?["c"]?.position.line == 4)
        #expect(n.members?.map(\.key) == ["a", "b"])
    }

    @Test func acceptsCommentsAndBOM() throws {
        let n = try JSONSourceParser.parse("\u{FEFF}// leading\n{ /* block\n comment */ \"a\": 1 // trailing\n}")
        #expect(n["a"]?.position.line == 3)
    }

    @Test func decodesEscapes() throws {
        let n = try JSONSourceParser.parse(#"{"s": "a\"b\\c\/d\n\u00e9\ud83d\ude00"}"#)
        #expect(n["s"]?.stringValue == "a\"b\\c/d\né😀")
    }

    @Test func keepsNumbersExact() throws {
        let n = try JSONSourceParser.parse(#"[30, 30.5, -2, 1e2]"#)
        let e = try #require(n.elements)
        #expect(e.map { if case .number(let x) = $0.value { return x.int } else { return nil } } == [30, nil, -2, 100])
    }

    @Test(arguments: [
        ("{\"a\": 1,}", "trailing comma", 1),
        ("{\"a\": 1, \"a\": 2}", "duplicate property 'a'", 1),
        ("{\n\"a\": tru}", "invalid literal", 2),
        ("{\"a\": \"x}", "unterminated string", 1),
        ("[1 2]", "expected ',' or ']'", 1),
        ("", "the file is empty", 1),
        ("{} {}", "after the end", 1),
        ("{\"a\": 01}", "after the value of 'a'", 1)
    ])
    func reportsSyntaxErrors(_ text: String, _ fragment: String, _ line: Int) {
        do {
            _ = try JSONSourceParser.parse(text)
            Issue.record("parsed invalid JSON: \(text)")
        } catch {
            #expect(error.message.contains(fragment), "\(error.message)")
            #expect(error.position.line == line)
        }
    }

    @Test func rejectsDeepNesting() {
        let deep = String(repeating: "[", count: 300) + String(repeating: "]", count: 300)
        #expect(throws: SyntaxError.self) { try JSONSourceParser.parse(deep) }
    }
}

@Suite struct YAMLParserTests {
    @Test func plainScalarsKeepTheirText() throws {
        let n = try YAMLSourceParser.parse("sku: 12\nversion: 1.10\nflag: yes\nname: \"12\"\nlist:\n  - a\n  - 2\n")
        #expect(n["sku"]?.yamlText == "12")
        if case .number = n["sku"]?.value {} else { Issue.record("12 should resolve to a number") }
        #expect(n["version"]?.yamlText == "1.10")
        #expect(n["name"]?.stringValue == "12")
        #expect(n["list"]?.elements?[1].position.line == 7)
    }

    @Test func stringFieldsAcceptYAMLNumbers() throws {
        // `sku: 12` and `version: 1.0` are strings to a YAML author.
        let text = """
            name: t
            location: westeurope
            identity: {type: None}
            properties:
              source: {type: PlatformImage, publisher: Debian, offer: debian-12, sku: 12, version: latest}
              distribute: [{type: VHD, runOutputName: 2024}]
            """
        let f = load(text, path: "t.yaml")
        #expect(f.errors.isEmpty, "\(f.errors)")
        guard case .platformImage(let s) = f.templates.first?.template.properties.source else { Issue.record("source"); return }
        #expect(s.sku == "12")
        #expect(f.templates.first?.template.properties.distribute.first?.runOutputName == "2024")
    }

    @Test func reportsSyntaxErrorsWithLines() {
        let f = load("name: t\nproperties:\n  source: [unclosed\n", path: "t.yaml")
        #expect(f.errors.count == 1)
        #expect(f.errors.first?.code == .invalidRequestContent)
        #expect((f.errors.first?.line ?? 0) >= 3)
    }

    @Test func duplicateKeysAreErrors() {
        let f = load("name: a\nname: b\n", path: "t.yaml")
        #expect(f.errors.first?.message.contains("duplicate") == true)
    }
}

@Suite struct APIVersionTests {
    @Test func parsesAndOrders() throws {
        let a = try #require(APIVersion("2022-02-14"))
        let b = try #require(APIVersion("2024-02-01"))
        #expect(a < b)
        #expect(!a.isStrict && b.isStrict)
        #expect(APIVersion("2023-07-01-preview")! < APIVersion("2023-07-01")!)
        #expect(APIVersion("latest") == nil)
        #expect(APIVersion("2024-13-01") == nil)
    }

    static let base = """
        {"apiVersion": "VERSION", "name": "t", "location": "westeurope", "identity": {"type": "None"},
         "properties": {"Source": {"type": "PlatformImage", "publisher": "Debian", "offer": "debian-12", "sku": "12", "version": "latest"},
                        "distribute": [{"type": "VHD", "runOutputName": "v"}], "extra": 1}}
        """

    @Test func oldVersionsMatchNamesCaseInsensitivelyAndWarnOnUnknown() {
        let f = load(Self.base.replacingOccurrences(of: "VERSION", with: "2023-07-01"))
        #expect(f.isValid, "\(f.errors)")
        #expect(f.diagnostics.map { "\($0.severity) \($0.path)" } == ["warning $.properties.extra"])
    }

    @Test func newVersionsAreCaseSensitiveAndRejectUnknown() {
        let f = load(Self.base.replacingOccurrences(of: "VERSION", with: "2024-02-01"))
        #expect(
            f.errorKeys.sorted() == [
                "BadSourceType $.properties.source", "InvalidRequestContent $.properties.Source", "InvalidRequestContent $.properties.extra"
            ])
        #expect(f.errors.first { $0.path.description == "$.properties.Source" }?.message.contains("did you mean 'source'") == true)
    }

    @Test func missingVersionMeansTheNewest() {
        let f = load(Self.base.replacingOccurrences(of: "\"apiVersion\": \"VERSION\", ", with: ""))
        #expect(!f.isValid)
        #expect(f.errorKeys.contains("InvalidRequestContent $.properties.extra"))
    }

    @Test func unpublishedVersionInRangeIsAWarning() {
        let text = Self.base.replacingOccurrences(of: "VERSION", with: "2021-06-01").replacingOccurrences(of: ", \"extra\": 1", with: "")
        let f = load(text)
        #expect(f.isValid)
        #expect(f.diagnostics.first?.code == .noRegisteredProviderFound)
    }
}
