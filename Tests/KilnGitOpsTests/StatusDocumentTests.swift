import Foundation
import KilnCore
@testable import KilnGitOps
import KilnStore
import KilnTemplates
import KilnTestSupport
import Testing

/// The status file on `kiln/status`: files written before it became a Codable type still read the same, and the
/// wording of a state is one function.
@Suite struct StatusDocumentTests {
    /// A status file exactly as the StatusWriter wrote it before `TemplateStatusDocument` (JSONSerialization,
    /// `null` for a missing source file, phases by sub-state name).
    static let legacy = """
        {
          "contentHash" : "sha256:abc",
          "lastRunStatus" : {
            "endTime" : "2026-11-30T10:00:00.000Z",
            "message" : "",
            "runState" : "Succeeded",
            "runSubState" : "Distributing",
            "startTime" : "2026-11-30T09:50:00.000Z"
          },
          "logs" : "/var/lib/kiln/staging/IT_rg_web_x/packerlogs/r1",
          "name" : "web",
          "phases" : {
            "Building" : 33.1,
            "Customizing" : 12.5,
            "Distributing" : 0.8,
            "Queued" : 0.1
          },
          "provisioningState" : "Succeeded",
          "resourceGroup" : "rg",
          "runId" : "r1",
          "runOutputs" : [
            {
              "artifactUri" : "file:///var/lib/kiln/regions/westeurope/vhds/web.vhd",
              "name" : "web-vhd",
              "provisioningState" : "Succeeded"
            }
          ],
          "sourceCommit" : "0123456789abcdef0123456789abcdef01234567",
          "sourceFile" : null,
          "templateId" : "/subscriptions/s/resourceGroups/rg/providers/Microsoft.VirtualMachineImages/imageTemplates/web"
        }

        """

    @Test func aStatusFileWrittenBeforeReadsTheSame() throws {
        let d = try TemplateStatusDocument.decode(Data(Self.legacy.utf8))
        #expect(d.name == "web" && d.resourceGroup == "rg" && d.runId == "r1" && d.sourceFile == nil)
        #expect(d.provisioningState == .succeeded)
        #expect(d.lastRunStatus?.runState == .succeeded && d.lastRunStatus?.runSubState == .distributing)
        #expect(d.phases?[.building] == 33.1 && d.phases?[.queued] == 0.1)
        #expect(d.runOutputs?.first?.provisioningState == .succeeded)
        #expect(d.label.text == "Succeeded")
        // The writer's key for it equals the key of the same state read from the store: no spurious commit.
        let summary = ManagedTemplateSummary(
            id: d.templateId!, name: "web", resourceGroup: "rg", sourceFile: nil,
            sourceCommit: d.sourceCommit, contentHash: "sha256:abc", provisioningState: .succeeded,
            lastRunState: .succeeded, lastRunSubState: .distributing, lastRunId: "r1")
        #expect(StatusKey(document: d) == StatusKey(summary, sourceError: false))
        // Written again, it decodes to the same document, and keeps `sourceFile: null`.
        let again = try d.fileData()
        #expect(try TemplateStatusDocument.decode(again) == d)
        let object = try #require(try JSONSerialization.jsonObject(with: again) as? [String: Any])
        #expect(object["sourceFile"] is NSNull)
        #expect(Set(object.keys) == Set((try JSONSerialization.jsonObject(with: Data(Self.legacy.utf8)) as! [String: Any]).keys))
    }

    @Test func anInvalidFileDocument() throws {
        let legacy =
            #"{"file": "templates/bad.json", "provisioningState": "Failed", "sourceError": [{"code": "InvalidJSON", "file": "templates/bad.json", "line": 3, "message": "m", "path": "$"}]}"#
        let d = try TemplateStatusDocument.decode(Data(legacy.utf8))
        #expect(d.file == "templates/bad.json" && d.sourceError?.first?.line == 3)
        #expect(StatusKey(document: d)?.provisioningState == .failed)
        let object = try #require(try JSONSerialization.jsonObject(with: d.fileData()) as? [String: Any])
        #expect(object["sourceFile"] == nil, "an invalid file's document has no template fields")
    }

    @Test(arguments: [
        (ProvisioningState.succeeded, RunState?.none, RunSubState?.none, false, "Accepted"),
        (.succeeded, nil, nil, true, "Source invalid"),
        (.failed, nil, nil, false, "Failed to create"),
        (.creating, nil, nil, false, "Creating"),
        (.deleting, .succeeded, nil, false, "Deleting"),
        (.succeeded, .running, .customizing, false, "Running/Customizing"),
        (.succeeded, .running, nil, false, "Running"),
        (.succeeded, .canceling, .customizing, false, "Canceling"),
        (.succeeded, .partiallySucceeded, .distributing, true, "PartiallySucceeded, source invalid")
    ])
    func labels(_ p: ProvisioningState, _ r: RunState?, _ s: RunSubState?, _ invalid: Bool, _ text: String) {
        #expect(TemplateStatusLabel(provisioningState: p, runState: r, runSubState: s, sourceInvalid: invalid).text == text)
    }

    @Test func aStateKilnDidNotWriteIsAnErrorNotAFailedTemplate() throws {
        let bad = #"{"provisioningState": "Exploded"}"#
        #expect(throws: DecodingError.self) { try TemplateStatusDocument.decode(Data(bad.utf8)) }
    }
}
