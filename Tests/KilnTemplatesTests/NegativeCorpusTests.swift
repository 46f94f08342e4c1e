import Foundation
import Testing
@testable import KilnTemplates

/// The negative corpus under Fixtures/invalid: every file is invalid, and Kiln must report exactly the
/// errors its `.expect` file lists (code and JSON path), all of them, not just the first.
@Suite struct NegativeCorpusTests {
    static let cases: [String] = Fixtures.files(in: "invalid", extensions: ["json", "yaml"])

    @Test func corpusIsLargeEnough() {
        #expect(Self.cases.count >= 40)
    }

    @Test(arguments: cases)
    func reportsExactlyTheExpectedErrors(_ file: String) throws {
        let expectFile = (file as NSString).deletingPathExtension + ".expect"
        let expected = try String(contentsOfFile: expectFile, encoding: .utf8)
            .split(separator: "\n").map(String.init).filter { !$0.isEmpty }
        let loaded = TemplateLoader.loadFile(file)
        #expect(!loaded.isValid, "\(file) should be invalid")
        #expect(loaded.templates.isEmpty, "an invalid template must not be returned")
        #expect(loaded.errorKeys.sorted() == expected.sorted(), "\((file as NSString).lastPathComponent): got \(loaded.errors.map(\.description))")
        for e in loaded.errors {
            #expect(e.line > 0, "every error names a line: \(e)")
            #expect(!e.message.isEmpty)
        }
    }
}
