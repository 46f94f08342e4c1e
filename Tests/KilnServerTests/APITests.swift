import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import KilnCore
import KilnServer
import KilnStore
import KilnSystem
import KilnTemplates
import Logging
import Testing

/// The REST API in process (HummingbirdTesting, no socket) over a real SQLite store: routing, the ARM error
/// envelope for every kind of bad input, tokens and scopes, PUT's idempotence and immutability, DELETE and the
/// operation-status resources. The official SDK drives a real `kiln serve` in KilnCLITests (APICLITests).
@Suite struct APITests {
    static let sub = "11111111-2222-3333-4444-555555555555"
    static let base = "/subscriptions/\(sub)/resourceGroups/rg/providers/Microsoft.VirtualMachineImages/imageTemplates"
    static let v = "api-version=2025-10-01"
    static let body = """
        {"location": "westeurope", "identity": {"type": "None"}, "tags": {"team": "platform"},
         "properties": {"source": {"type": "PlatformImage", "publisher": "Debian", "offer": "debian-12", "sku": "12", "version": "latest"},
           "customize": [{"type": "Shell", "name": "hello", "inline": ["echo hello"]}],
           "distribute": [{"type": "VHD", "runOutputName": "vhd"}]}}
        """

    static func core() throws -> KilnCore {
        let dir = NSTemporaryDirectory() + "kiln-api-tests-\(UUID().uuidString.prefix(8))"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        return KilnCore(paths: KilnPaths(dataDir: dir), store: try KilnDatabase())
    }

    static func app(_ core: KilnCore? = nil) throws -> some ApplicationProtocol {
        let core = try core ?? Self.core()
        let access = APIAccess(tokens: [
            APIToken(name: "ci", token: "contrib", role: .contributor, scopes: ["/subscriptions/\(sub)"]),
            APIToken(name: "viewer", token: "reader", role: .reader, scopes: []),
            APIToken(name: "release", token: "contrib2", role: .contributor, scopes: ["/subscriptions/\(sub)"]),
            APIToken(name: "other", token: "elsewhere", role: .contributor, scopes: ["/subscriptions/22222222-0000-0000-0000-000000000000"])
        ])
        let api = ImageTemplateAPI(core: core, logger: Logger(label: "test"), pageSize: 3)
        return try APIServer.application(listen: try ListenAddress(parsing: "127.0.0.1:0"), api: api, access: access, logger: Logger(label: "test"))
    }

    static func headers(_ token: String? = "contrib", json: Bool = true) -> HTTPFields {
        var h = HTTPFields()
        if let token { h[.authorization] = "Bearer \(token)" }
        if json { h[.contentType] = "application/json" }
        h[HTTPField.Name("x-ms-correlation-request-id")!] = "corr-1"
        return h
    }

    /// The `error` object of an answer.
    static func error(_ body: ByteBuffer) -> [String: Any] {
        ((try? JSONSerialization.jsonObject(with: Data(String(buffer: body).utf8))) as? [String: Any])?["error"] as? [String: Any] ?? [:]
    }

    @Test(arguments: [
        (
            "/subscriptions/s-1/resourceGroups/rg/providers/Microsoft.VirtualMachineImages/imageTemplates/t1",
            ARMRoute.template(.init(subscription: "s-1", resourceGroup: "rg", name: "t1"))
        ),
        (
            "/SUBSCRIPTIONS/s-1/resourcegroups/rg/PROVIDERS/microsoft.virtualmachineimages/IMAGETEMPLATES/t1/",
            .template(.init(subscription: "s-1", resourceGroup: "rg", name: "t1"))
        ),
        ("/subscriptions/s-1/providers/Microsoft.VirtualMachineImages/imageTemplates", .templates(subscription: "s-1", resourceGroup: nil)),
        (
            "/subscriptions/s-1/resourceGroups/rg/providers/Microsoft.VirtualMachineImages/imageTemplates/t1/run",
            .action(.init(subscription: "s-1", resourceGroup: "rg", name: "t1"), .run)
        ),
        (
            "/subscriptions/s-1/resourceGroups/rg/providers/Microsoft.VirtualMachineImages/imageTemplates/t1/runOutputs/vhd",
            .runOutput(.init(subscription: "s-1", resourceGroup: "rg", name: "t1"), name: "vhd")
        ),
        (
            "/subscriptions/s-1/providers/Microsoft.VirtualMachineImages/locations/westeurope/operations/AB-12",
            .operationStatus(subscription: "s-1", location: "westeurope", id: "ab-12")
        ),
        ("/providers/Microsoft.VirtualMachineImages/operations", .providerOperations)
    ])
    func routesParse(path: String, route: ARMRoute) throws {
        #expect(try ARMRoute.parse(path: path) == route)
    }

    @Test(arguments: [
        ("\(base)/..", "imageTemplateName"), ("\(base)/a%2F..%2Fb", "imageTemplateName"), ("\(base)/has%20space", "imageTemplateName"),
        ("\(base)/\(String(repeating: "a", count: 65))", "imageTemplateName"),
        ("/subscriptions/s/resourceGroups/../providers/Microsoft.VirtualMachineImages/imageTemplates/t", "resourceGroupName"),
        ("/subscriptions/a%2Fb/providers/Microsoft.VirtualMachineImages/imageTemplates", "subscriptionId"),
        ("\(base)/t/runOutputs/x..%2F", "runOutputName")
    ])
    func namesThatBreakTheirPatternAreRefused(path: String, parameter: String) {
        guard case .invalidName(let p, _, _)? = Self.routeError(path) else {
            Issue.record("\(path) is not refused as an invalid name")
            return
        }
        #expect(p == parameter)
    }

    /// The path and query of an absolute URL the API handed out, to request it from the test client.
    static func local(_ url: String) -> String? {
        guard let c = URLComponents(string: url), c.host != nil else { return nil }
        return c.percentEncodedPath + (c.percentEncodedQuery.map { "?" + $0 } ?? "")
    }

    static func routeError(_ path: String) -> ARMRouteError? {
        do {
            _ = try ARMRoute.parse(path: path)
            return nil
        } catch { return error }
    }

    @Test func badInputGetsARMErrorsAndTheServerGoesOn() async throws {
        try await Self.app().test(.router) { client in
            let t = "\(Self.base)/t1?\(Self.v)"
            func expectError(
                _ uri: String, _ status: HTTPResponse.Status, _ code: String, _ fragment: String = "", method: HTTPRequest.Method = .put,
                headers: HTTPFields = Self.headers(), body: String = Self.body
            ) async throws {
                try await client.execute(uri: uri, method: method, headers: headers, body: ByteBuffer(string: body)) { r in
                    let e = Self.error(r.body)
                    #expect(r.status == status, "\(uri): \(String(buffer: r.body))")
                    #expect(e["code"] as? String == code, "\(uri): \(String(buffer: r.body))")
                    #expect(
                        fragment.isEmpty || (e["message"] as? String ?? "").contains(fragment) || String(buffer: r.body).contains(fragment),
                        "\(String(buffer: r.body))")
                    #expect(r.headers[HTTPField.Name("x-ms-request-id")!] != nil)
                    #expect(r.headers[HTTPField.Name("x-ms-correlation-request-id")!] == "corr-1")
                    #expect(r.headers[HTTPField.Name("Retry-After")!] == nil, "no Retry-After on a client error: the SDK would retry it")
                }
            }
            try await expectError(t, .unauthorized, "AuthenticationFailed", "missing", headers: Self.headers(nil))
            try await expectError(t, .unauthorized, "AuthenticationFailed", "not valid", headers: Self.headers("nope"))
            try await expectError(t, .forbidden, "AuthorizationFailed", "imageTemplates/write", headers: Self.headers("reader"))
            try await expectError(t, .forbidden, "AuthorizationFailed", "'other'", headers: Self.headers("elsewhere"))
            try await expectError("\(Self.base)/t1", .badRequest, "MissingApiVersionParameter")
            try await expectError("\(Self.base)/t1?api-version=banana", .badRequest, "InvalidApiVersionParameter", "2025-10-01")
            try await expectError("\(Self.base)/t1?api-version=2019-05-01", .badRequest, "NoRegisteredProviderFound", "2025-10-01")
            try await expectError(t, .badRequest, "InvalidRequestContent", "line 1", body: "{\"location\": ")
            try await expectError(t, .badRequest, "InvalidRequestContent", "nesting", body: String(repeating: "[", count: 100_000))
            try await expectError(t, .unsupportedMediaType, "UnsupportedMediaType", headers: Self.headers(json: false))
            try await expectError(t, .contentTooLarge, "RequestEntityTooLarge", body: String(repeating: " ", count: 10 << 20))
            try await expectError("\(Self.base)/..?\(Self.v)", .badRequest, "InvalidParameter", "imageTemplateName")
            try await expectError("\(Self.base)/a%2F..%2Fb?\(Self.v)", .badRequest, "InvalidParameter", "imageTemplateName")
            try await expectError("/subscriptions/\(Self.sub)/nothing?\(Self.v)", .notFound, "NotFound", method: .get)
            let unknown = Self.body.replacingOccurrences(of: #""customize""#, with: #""bogus": 1, "customize""#)
            try await expectError(t, .badRequest, "ValidationFailed", "$.properties.bogus", body: unknown)
            // Under an api-version before 2024-02-01, unknown properties are ignored, as AIB did.
            try await client.execute(uri: "\(Self.base)/t1?api-version=2022-07-01", method: .put, headers: Self.headers(), body: ByteBuffer(string: unknown)) {
                r in
                #expect(r.status == .created, "\(String(buffer: r.body))")
            }
            // Still answering.
            try await client.execute(uri: t, method: .get, headers: Self.headers()) { #expect($0.status == .ok) }
        }
    }

    @Test func putIsIdempotentAndTemplatesAreImmutable() async throws {
        try await Self.app().test(.router) { client in
            let t = "\(Self.base)/t1?\(Self.v)"
            var status = ""
            try await client.execute(uri: t, method: .put, headers: Self.headers(), body: ByteBuffer(string: Self.body)) { r in
                #expect(r.status == .created, "\(String(buffer: r.body))")
                status = r.headers[HTTPField.Name("Azure-AsyncOperation")!] ?? ""
                #expect(r.headers[HTTPField.Name("Retry-After")!] == "1")
            }
            let op = try #require(Self.local(status))
            try await client.execute(uri: op, method: .get, headers: Self.headers()) { r in
                #expect(r.status == .ok)
                #expect(String(buffer: r.body).contains(#""status":"Succeeded""#), "\(String(buffer: r.body))")
            }
            try await client.execute(uri: op, method: .get, headers: Self.headers("elsewhere")) {
                #expect($0.status == .notFound, "another scope cannot poll it")
            }
            try await client.execute(uri: t, method: .put, headers: Self.headers(), body: ByteBuffer(string: Self.body)) { #expect($0.status == .ok) }
            let retagged = Self.body.replacingOccurrences(of: #""team": "platform""#, with: #""team": "images""#)
            try await client.execute(uri: t, method: .put, headers: Self.headers(), body: ByteBuffer(string: retagged)) { r in
                #expect(r.status == .ok)
                #expect(String(buffer: r.body).contains(#""team":"images""#))
            }
            let changed = Self.body.replacingOccurrences(of: "echo hello", with: "echo changed")
            try await client.execute(uri: t, method: .put, headers: Self.headers(), body: ByteBuffer(string: changed)) { r in
                #expect(r.status == .conflict)
                let message = Self.error(r.body)["message"] as? String ?? ""
                #expect(
                    message.contains("Update/Upgrade of image templates is currently not supported") && message.contains("$.properties.customize"), "\(message)"
                )
            }
            let replacing = changed.replacingOccurrences(of: #""team": "platform""#, with: #""team": "platform", "kiln.replace": "true""#)
            try await client.execute(uri: t, method: .put, headers: Self.headers(), body: ByteBuffer(string: replacing)) { r in
                #expect(r.status == .created)
                #expect(String(buffer: r.body).contains("echo changed") && !String(buffer: r.body).contains("kiln.replace"))
            }
            try await client.execute(uri: t, method: .patch, headers: Self.headers(), body: ByteBuffer(string: #"{"tags": {"k": "v"}}"#)) { r in
                #expect(r.status == .ok)
                #expect(String(buffer: r.body).contains(#""tags":{"k":"v"}"#), "\(String(buffer: r.body))")
            }
            try await client.execute(uri: t, method: .patch, headers: Self.headers(), body: ByteBuffer(string: #"{"properties": {"customize": []}}"#)) { r in
                #expect(r.status == .badRequest)
                #expect(Self.error(r.body)["target"] as? String == "$.properties.customize")
            }
        }
    }

    /// A method a path does not have is 405 with `Allow`, before the body's type or the api-version is looked at
    /// (schemathesis found PUT without a Content-Type on a GET-only path answered 415).
    @Test func anUnsupportedMethodIs405WithAllow() async throws {
        try await Self.app().test(.router) { client in
            try await client.execute(uri: "\(Self.base)/t1/runOutputs?\(Self.v)", method: .put, headers: Self.headers(json: false)) { r in
                #expect(r.status == .methodNotAllowed)
                #expect(r.headers[.allow] == "GET")
                #expect(Self.error(r.body)["code"] as? String == "MethodNotAllowed")
            }
            try await client.execute(uri: "\(Self.base)/t1?api-version=0", method: .post, headers: Self.headers()) { r in
                #expect(r.status == .methodNotAllowed)
                #expect(r.headers[.allow] == "GET, PUT, PATCH, DELETE")
            }
            try await client.execute(uri: "\(Self.base)/t1/run?\(Self.v)", method: .get, headers: Self.headers()) { r in
                #expect(r.status == .methodNotAllowed && r.headers[.allow] == "POST")
            }
        }
    }

    /// `systemData` names the token that created the template and the one that changed it last; an API client
    /// sees no host path (staging area, logs, disks) in the `kiln` object.
    @Test func systemDataNamesTheTokensAndNoHostPathShows() async throws {
        try await Self.app().test(.router) { client in
            let t = "\(Self.base)/sd1?\(Self.v)"
            try await client.execute(uri: t, method: .put, headers: Self.headers(), body: ByteBuffer(string: Self.body)) { #expect($0.status == .created) }
            try await client.execute(uri: t, method: .patch, headers: Self.headers("contrib2"), body: ByteBuffer(string: #"{"tags": {"k": "v"}}"#)) {
                #expect($0.status == .ok)
            }
            try await client.execute(uri: t, method: .get, headers: Self.headers("reader")) { r in
                let body = String(buffer: r.body)
                let doc = try #require(try JSONSerialization.jsonObject(with: Data(body.utf8)) as? [String: Any])
                let system = try #require(doc["systemData"] as? [String: Any], "\(body)")
                #expect(system["createdBy"] as? String == "ci" && system["createdByType"] as? String == "Application", "\(system)")
                #expect(system["lastModifiedBy"] as? String == "release" && system["lastModifiedByType"] as? String == "Application", "\(system)")
                #expect((system["createdAt"] as? String)?.hasSuffix("Z") == true && system["lastModifiedAt"] != nil, "\(system)")
                let kiln = try #require(doc["kiln"] as? [String: Any], "\(body)")
                #expect(kiln["contentHash"] is String && kiln["stagingDirectory"] == nil && kiln["lastRun"] == nil, "\(kiln)")
                #expect(!body.contains("/tmp/") && !body.contains("contrib"), "\(body)")
            }
        }
    }

    @Test func templatesAGitRepositoryManagesAreReadOnly() async throws {
        let core = try Self.core()
        let scope = DeploymentScope(subscriptionId: Self.sub, resourceGroup: "rg", location: "local")
        let loaded = try #require(
            TemplateLoader.loadRequestBody(Self.body, name: "managed", apiVersion: .latest, options: LoadOptions(scope: scope), path: "body").templates.first)
        _ = try await core.create(loaded, origin: TemplateOrigin(file: "templates/managed.json", managedBy: "images"))
        try await Self.app(core).test(.router) { client in
            let t = "\(Self.base)/managed?\(Self.v)"
            let changed = Self.body.replacingOccurrences(of: "echo hello", with: "echo changed")
            for (method, body) in [(HTTPRequest.Method.put, changed), (.patch, #"{"tags": {"k": "v"}}"#), (.delete, "")] {
                try await client.execute(uri: t, method: method, headers: Self.headers(json: method != .delete), body: ByteBuffer(string: body)) { r in
                    #expect(r.status == .conflict, "\(method): \(String(buffer: r.body))")
                    let message = Self.error(r.body)["message"] as? String ?? ""
                    #expect(message.contains("git repository images") && message.contains("templates/managed.json"), "\(message)")
                }
            }
            // The same content again changes nothing, and is answered as such.
            try await client.execute(uri: t, method: .put, headers: Self.headers(), body: ByteBuffer(string: Self.body)) { #expect($0.status == .ok) }
            // Run is allowed.
            try await client.execute(uri: "\(Self.base)/managed/run?\(Self.v)", method: .post, headers: Self.headers(json: false)) {
                #expect($0.status == .accepted)
            }
        }
    }

    @Test func deleteRunAndListing() async throws {
        try await Self.app().test(.router) { client in
            for i in 1...4 {
                try await client.execute(uri: "\(Self.base)/t\(i)?\(Self.v)", method: .put, headers: Self.headers(), body: ByteBuffer(string: Self.body)) {
                    #expect($0.status == .created)
                }
            }
            // Pages of 3: a nextLink to the fourth.
            var next: String?
            try await client.execute(
                uri: "/subscriptions/\(Self.sub)/providers/Microsoft.VirtualMachineImages/imageTemplates?\(Self.v)", method: .get, headers: Self.headers()
            ) { r in
                let page = (try? JSONSerialization.jsonObject(with: Data(String(buffer: r.body).utf8))) as? [String: Any]
                #expect((page?["value"] as? [Any])?.count == 3)
                next = page?["nextLink"] as? String
            }
            let second = try #require(next.flatMap(Self.local))
            try await client.execute(uri: second, method: .get, headers: Self.headers()) { r in
                let page = (try? JSONSerialization.jsonObject(with: Data(String(buffer: r.body).utf8))) as? [String: Any]
                #expect((page?["value"] as? [[String: Any]])?.map { $0["name"] as? String } == ["t4"])
                #expect(page?["nextLink"] == nil)
            }
            // run: 202 with both polling headers; without a worker the operation stays InProgress.
            try await client.execute(uri: "\(Self.base)/t1/run?\(Self.v)", method: .post, headers: Self.headers(json: false)) { r in
                #expect(r.status == .accepted)
                #expect(r.headers[HTTPField.Name("Azure-AsyncOperation")!] != nil && r.headers[HTTPField.Name("Location")!] != nil)
                let op = try #require(Self.local(r.headers[HTTPField.Name("Location")!] ?? ""))
                try await client.execute(uri: op, method: .get, headers: Self.headers("reader")) { s in
                    #expect(s.status == .ok)
                    #expect(String(buffer: s.body).contains(#""status":"InProgress""#))
                }
            }
            try await client.execute(uri: "\(Self.base)/t1?\(Self.v)", method: .delete, headers: Self.headers(json: false)) { r in
                #expect(r.status == .conflict, "a template with a run in progress is not deleted")
            }
            try await client.execute(uri: "\(Self.base)/t2?\(Self.v)", method: .delete, headers: Self.headers(json: false)) { r in
                #expect(r.status == .accepted)
                let op = try #require(Self.local(r.headers[HTTPField.Name("Location")!] ?? ""))
                try await client.execute(uri: op, method: .get, headers: Self.headers()) { #expect($0.status == .ok) }
            }
            try await client.execute(uri: "\(Self.base)/t2?\(Self.v)", method: .get, headers: Self.headers()) { r in
                #expect(r.status == .notFound)
                #expect(Self.error(r.body)["code"] as? String == "ResourceNotFound")
            }
            try await client.execute(uri: "\(Self.base)/t2?\(Self.v)", method: .delete, headers: Self.headers(json: false)) { #expect($0.status == .noContent) }
            try await client.execute(uri: "/providers/Microsoft.VirtualMachineImages/operations?\(Self.v)", method: .get, headers: Self.headers("reader")) {
                r in
                #expect(String(buffer: r.body).contains("Microsoft.VirtualMachineImages/imageTemplates/run/action"))
            }
        }
    }
}
